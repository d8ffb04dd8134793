"""Base IRL objectives (Eq. 1-2), their failure versions and the FA-IRL objective (Eq. 3).

Every loss takes reward margins ``delta`` of shape ``(..., B)`` and reduces over the last axis, so
one call serves a single model (``(B,)``) and a stacked ensemble (``(E, B)``) alike.

    Delta_i = R(o_i+) - R(o_i-)                                   (Sec. 4.2)
    L_MM = 1/B sum_i max(0, M - Delta_i)                           (Eq. 1, M = 0.8)
    L_ME = -1/B sum_i log( exp(Delta_i/tau) / (exp(Delta_i/tau) + 1) )
         =  1/B sum_i softplus(-Delta_i / tau)                     (Eq. 2, tau = 1.0)
    L_t  = L_base + lambda_t L_fail(S_t) + lambda_t/2 ||w_F||^2     (Eq. 3)

Eq. 2 is evaluated as ``softplus(-Delta/tau)`` (= ``-logsigmoid(Delta/tau)``), which never overflows.

Failure versions (Sec. 4.2, App. B): max-margin tightens the margin (``margin_fail > margin``);
max-entropy sharpens the temperature (``tau_fail < tau``) and/or up-weights (``w_fail > 1``). The
up-weight ``w_fail`` multiplies the failure loss of both families (1.0 = off).

Note on App. B: it argues that sharpening (tau_fail < tau) gives l_{tau_fail}(Delta) >= l_tau(Delta)
"for any finite Delta". That is only true for Delta <= 0. softplus(-Delta/tau) *decreases* as tau
shrinks when Delta > 0, so sharpening lowers the loss of a correctly ranked failure (a near-tie with
0 < Delta). Up-weighting (``w_fail >= 1``) and a larger margin (``margin_fail >= margin``) do
dominate pointwise (tests/test_losses.py checks all three).

The failure loss is a mean over the sampled failure subset S_t ("applies the same loss to a sampled
subset S_t", Sec. 4.3). An empty S_t contributes exactly 0 (no failures -> no correction; the paper
does not say; the alternative ``reduction="batch"`` divides by the batch size B like Eq. 1-2).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

BASE_LOSSES = ("mm", "me")
FAIL_REDUCTIONS = ("subset", "batch")


def reward_margin(r_plus: Tensor, r_minus: Tensor) -> Tensor:
    """Delta_i = R(o_i+) - R(o_i-) (Sec. 4.2)."""
    return r_plus - r_minus


def hinge_terms(delta: Tensor, margin: float) -> Tensor:
    """Per-pair max-margin terms max(0, M - Delta_i) of Eq. 1."""
    return F.relu(margin - delta)


def maxent_terms(delta: Tensor, tau: float) -> Tensor:
    """Per-pair max-entropy terms -log sigma(Delta_i / tau) of Eq. 2, as a stable softplus."""
    return F.softplus(-delta / tau)


def margin_loss(delta: Tensor, margin: float = 0.8) -> Tensor:
    """Max-margin IRL loss, Eq. 1: mean over the last axis of max(0, M - Delta)."""
    return hinge_terms(delta, margin).mean(-1)


def maxent_loss(delta: Tensor, tau: float = 1.0) -> Tensor:
    """Max-entropy IRL loss, Eq. 2: mean over the last axis of -log sigma(Delta / tau)."""
    return maxent_terms(delta, tau).mean(-1)


def masked_mean(values: Tensor, mask: Tensor, reduction: str = "subset") -> Tensor:
    """Mean of ``values`` over the entries where ``mask`` is True (last axis); 0 for an empty mask.

    ``reduction="subset"`` divides by |S_t| (mean over the failure subset), ``"batch"`` by B.
    """
    if reduction not in FAIL_REDUCTIONS:
        raise ValueError(f"Unknown failure-loss reduction {reduction!r}; valid: {', '.join(FAIL_REDUCTIONS)}")
    total = (values * mask).sum(-1)
    if reduction == "batch":
        return total / mask.shape[-1]
    return total / mask.sum(-1).clamp_min(1)


def margin_loss_fail(delta: Tensor, mask: Tensor, margin_fail: float = 1.6, w_fail: float = 1.0,
                     reduction: str = "subset") -> Tensor:
    """Failure version of Eq. 1 on S_t: w_fail * mean_{i in S_t} max(0, M_fail - Delta_i), M_fail > M."""
    return w_fail * masked_mean(hinge_terms(delta, margin_fail), mask, reduction)


def maxent_loss_fail(delta: Tensor, mask: Tensor, tau_fail: float = 0.5, w_fail: float = 1.0,
                     reduction: str = "subset") -> Tensor:
    """Failure version of Eq. 2 on S_t: w_fail * mean_{i in S_t} -log sigma(Delta_i / tau_fail)."""
    return w_fail * masked_mean(maxent_terms(delta, tau_fail), mask, reduction)


def base_loss(kind: str, delta: Tensor, margin: float = 0.8, tau: float = 1.0) -> Tensor:
    """L_base in {L_MM (Eq. 1), L_ME (Eq. 2)} selected by ``kind`` ('mm' | 'me')."""
    if kind == "mm":
        return margin_loss(delta, margin)
    if kind == "me":
        return maxent_loss(delta, tau)
    raise ValueError(f"Unknown base loss {kind!r}; valid: {', '.join(BASE_LOSSES)}")


def failure_loss(kind: str, delta: Tensor, mask: Tensor, margin_fail: float = 1.6, tau_fail: float = 0.5,
                 w_fail: float = 1.0, reduction: str = "subset") -> Tensor:
    """L_fail(S_t) of Eq. 3: the base loss family of ``kind`` with the stricter failure setting."""
    if kind == "mm":
        return margin_loss_fail(delta, mask, margin_fail, w_fail, reduction)
    if kind == "me":
        return maxent_loss_fail(delta, mask, tau_fail, w_fail, reduction)
    raise ValueError(f"Unknown base loss {kind!r}; valid: {', '.join(BASE_LOSSES)}")


def failure_weight_penalty(weights: list[Tensor]) -> Tensor:
    """||w_F||_2^2 of Eq. 3: the summed squares of the failure path's weight matrices (not biases)."""
    if not weights:
        raise ValueError("failure_weight_penalty needs at least one weight tensor")
    total = weights[0].pow(2).sum()
    for w in weights[1:]:
        total = total + w.pow(2).sum()
    return total


def fa_objective(l_base: Tensor, l_fail: Tensor, penalty: Tensor, lambda_t: float,
                 penalty_scale: float = 1.0) -> Tensor:
    """Eq. 3: L_t = L_base + lambda_t * L_fail(S_t) + c * lambda_t / 2 * ||w_F||^2 (paper: c = 1)."""
    return l_base + lambda_t * l_fail + 0.5 * penalty_scale * lambda_t * penalty
