"""Failure identification and the curricula of FA-IRL (Sec. 4.3, Algorithm 1 lines 3-10 and 13).

All functions take tensors whose last axis is the minibatch (``(B,)`` or ``(E, B)`` for a stacked
ensemble) and return boolean masks of the same shape.

Failure sets (Alg. 1):

- margin failures (line 4): ``F_margin = {i : Delta_i <= gamma_t}``, gamma_t annealed.
- bottom-k failures (Sec. 4.3 "or using bottom-k_t sampling"; Sec. 5: "progressively reducing the
  fraction of pairs considered failures from 20% down to 0%" over 100 rounds): the
  ``k_t = round(frac_t * B)`` pairs with the smallest Delta.
- supervised failures (lines 5-9): outputs the reward misclassifies w.r.t. labels y(o) in {-1, +1}.
- the union (line 10) and the sampled subset S_t (each failure kept with probability p_t).

:func:`failure_set` puts lines 3-10 together for a method; both trainers (``fairl.train_one`` and the
batched ``grid.train_grid``) call it. :func:`round_schedule` gives the schedule values of a round
(line 13). Schedules step once per *round*; in this library a round is one epoch over the training
pairs (``t`` = 0-based epoch index), so "100 rounds" = the first 100 epochs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # config.py imports this module (SUP_RULES), so the type is for annotations only
    from fairl_lib.irl.config import IRLConfig

SUP_RULES = ("text", "alg1")
SUP_REFERENCES = ("zero", "batch_mean")


def margin_failures(delta: Tensor, gamma_t: float) -> Tensor:
    """Alg. 1 line 4: F_margin = {i : Delta_i <= gamma_t}."""
    return delta <= gamma_t


def bottomk_count(batch_size: int, frac_t: float) -> int:
    """k_t = round(frac_t * B): how many pairs of a minibatch the bottom-k curriculum flags."""
    return int(min(batch_size, max(0, math.floor(frac_t * batch_size + 0.5))))


def bottomk_failures(delta: Tensor, frac_t: float) -> Tensor:
    """The k_t = round(frac_t * B) pairs with the smallest margin Delta, per row (last axis).

    Ties are broken by position (stable sort), so a stacked ensemble and a single model flag the same
    pairs. ``frac_t = 0`` gives the empty set.
    """
    k = bottomk_count(delta.shape[-1], frac_t)
    mask = torch.zeros_like(delta, dtype=torch.bool)
    if k == 0:
        return mask
    order = torch.sort(delta, dim=-1, stable=True).indices[..., :k]
    return mask.scatter(-1, order, True)


def _reference(r: Tensor, reference: str) -> Tensor:
    """The value R(o) is compared with when it is not zero (``reference="batch_mean"``)."""
    if reference == "batch_mean":
        return r.mean(-1, keepdim=True)
    raise ValueError(f"Unknown supervised reference {reference!r}; valid: {', '.join(SUP_REFERENCES)}")


def supervised_failures(r_plus: Tensor, r_minus: Tensor, y_plus: Tensor, y_minus: Tensor,
                        rule: str = "text", reference: str = "zero") -> Tensor:
    """Alg. 1 line 6: pairs where the reward misclassifies a labelled output, y(o) in {-1, +1}.

    The paper contradicts itself here. The text (Sec. 4.3) flags "any output o for which
    y(o) R(o) <= 0", i.e. for both outputs ``y(o+) R(o+) <= 0 or y(o-) R(o-) <= 0``
    (``rule="text"``, the default). Algorithm 1 line 6 writes ``y(o+) R(o+) <= 0 or
    y(o-) R(o-) >= 0`` (``rule="alg1"``), which flags a *correctly* classified o- (e.g. a toxic
    o-, y=-1, with R(o-) < 0 gives y R = + > 0) and so disagrees with "misclassifies the label";
    we read it as a typo but keep it selectable.

    A second ambiguity: Eq. 1-2 only constrain reward *differences*, so the zero point of R is not
    learned and "R(o) <= 0" compares with an arbitrary offset. ``reference="zero"`` is the literal
    reading; ``reference="batch_mean"`` compares R(o) with the minibatch mean reward over the same
    side instead.
    """
    if reference != "zero":
        r_plus, r_minus = r_plus - _reference(r_plus, reference), r_minus - _reference(r_minus, reference)
    wrong_plus = y_plus * r_plus <= 0
    if rule == "text":
        wrong_minus = y_minus * r_minus <= 0
    elif rule == "alg1":
        wrong_minus = y_minus * r_minus >= 0
    else:
        raise ValueError(f"Unknown supervised-failure rule {rule!r}; valid: {', '.join(SUP_RULES)}")
    return wrong_plus | wrong_minus


def union_failures(*masks: Tensor) -> Tensor:
    """Alg. 1 line 10: F_t = F_margin U F_sup (any number of masks)."""
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out


def sample_failures(failures: Tensor, uniforms: Tensor, p_t: float) -> Tensor:
    """Alg. 1 line 10: S_t subset of F_t, each failure kept independently with probability p_t.

    ``uniforms`` are U[0, 1) draws of the same shape (drawn by the caller from the member's own seed,
    so the batched ensemble and a single run sample the same S_t).
    """
    if p_t >= 1.0:
        return failures
    return failures & (uniforms < p_t)


# --- schedules (Alg. 1 line 13), t = round index (epoch) ---------------------------------------

def linear_schedule(start: float, end: float, rounds: int, t: int) -> float:
    """Linear anneal from ``start`` (t=0) to ``end`` (t >= rounds), then held at ``end``."""
    if rounds <= 0:
        return end
    frac = min(max(t, 0), rounds) / rounds
    return start + (end - start) * frac


def lambda_schedule(lambda0: float, decay: float, t: int) -> float:
    """lambda_t = lambda0 * decay^t: exponential decay of the failure weight (Sec. 5: 10.0, decayed)."""
    return lambda0 * decay ** t


def gamma_schedule(start: float, end: float, rounds: int, t: int) -> float:
    """gamma_t of Alg. 1 line 4, linearly annealed from ``start`` to ``end`` over ``rounds``.

    The paper only says gamma_t is annealed "so that the model initially corrects obvious errors
    before gradually addressing subtler ambiguities": a low start (Delta <= 0, clear errors) rising
    towards the margin (near-ties) is that reading.
    """
    return linear_schedule(start, end, rounds, t)


def bottomk_schedule(start: float, end: float, rounds: int, t: int) -> float:
    """Fraction of a minibatch flagged by bottom-k: 20% -> 0% over 100 rounds (Sec. 5), linear."""
    return linear_schedule(start, end, rounds, t)


def sampling_schedule(start: float, end: float, rounds: int, t: int) -> float:
    """p_t of Alg. 1 line 10 ("optionally adjust p_t", line 13), linear; clipped to [0, 1]."""
    return min(1.0, max(0.0, linear_schedule(start, end, rounds, t)))


@dataclass(frozen=True)
class RoundSchedule:
    """Schedule values of one round t (= epoch), Alg. 1 line 13."""

    t: int
    lambda_t: float
    gamma_t: float
    bottomk_frac: float
    p_t: float


def round_schedule(cfg: IRLConfig, t: int) -> RoundSchedule:
    """Alg. 1 line 13 at round t: lambda_t (exponential decay), gamma_t, bottom-k fraction and p_t (linear)."""
    return RoundSchedule(t, lambda_schedule(cfg.lambda0, cfg.lambda_decay, t),
                         gamma_schedule(cfg.gamma_start, cfg.gamma_end, cfg.gamma_rounds, t),
                         bottomk_schedule(cfg.bottomk_start, cfg.bottomk_end, cfg.bottomk_rounds, t),
                         sampling_schedule(cfg.p_start, cfg.p_end, cfg.p_rounds, t))


# --- the failure set of a method (Alg. 1 lines 3-10) ---------------------------------------------

def failure_set(cfg: IRLConfig, supervised: bool | Tensor, delta: Tensor, r_plus: Tensor, r_minus: Tensor,
                y_plus: Tensor | None, y_minus: Tensor | None, uniforms: Tensor,
                sched: RoundSchedule) -> tuple[Tensor, Tensor]:
    """Alg. 1 lines 3-10: the failure set F_t of a minibatch and its sampled subset S_t.

    ``supervised=True`` (the ``*_fa_gt`` methods): F_sup of line 6 (rule ``cfg.sup_rule``, see
    :func:`supervised_failures`), united with F_margin of line 4 (line 10) only when
    ``cfg.gt_include_margin``. ``supervised=False`` (the ``*_fa_margin`` methods): F_margin, either
    ``Delta <= gamma_t`` (line 4, ``cfg.margin_rule="gamma"``) or the bottom-k_t pairs (Sec. 4.3, 5).
    A boolean tensor (one row per run of a stacked ensemble) picks per row. The labels may be None
    when no row is supervised. Line 10: S_t keeps each failure with probability p_t (``uniforms``).
    """
    def margin() -> Tensor:
        if cfg.margin_rule == "bottomk":
            return bottomk_failures(delta, sched.bottomk_frac)
        return margin_failures(delta, sched.gamma_t)

    def sup() -> Tensor:
        found = supervised_failures(r_plus, r_minus, y_plus, y_minus, cfg.sup_rule, cfg.sup_reference)
        return union_failures(found, margin_failures(delta, sched.gamma_t)) if cfg.gt_include_margin else found

    if isinstance(supervised, Tensor):
        f_t = torch.where(supervised, sup(), margin())
    else:
        f_t = sup() if supervised else margin()
    return f_t, sample_failures(f_t, uniforms, sched.p_t)
