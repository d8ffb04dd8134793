"""Failure-Aware IRL for one run: Algorithm 1 of the paper, top to bottom (Sec. 4, Eq. 1-3).

A run (method, seed) of Table 1 learns a reward R(o) = R_D(o) + R_F(o) on frozen embeddings h(o)
(Sec. 4.1) from preference pairs o+ > o-. For every minibatch of B pairs:

    Delta_i = R(o_i+) - R(o_i-)                                    Alg. 1 line 2
    F_t = the minibatch's failures, S_t = a sample of F_t          lines 3-10  (failures.py)
    L_t = L_base + lambda_t L_fail(S_t) + lambda_t/2 ||w_F||^2     lines 11-12 (Eq. 1-3, losses.py)
    one Adam step on L_t

and the schedules (gamma_t or the bottom-k fraction, lambda_t, p_t) move once per round = one epoch
over the training pairs (line 13). The baselines mm_irl / me_irl run the same loop with the base
path and L_base alone. Choices the paper leaves open (fields of :class:`IRLConfig`):

- ``route_gradients`` (default True): both losses see the full margin Delta = Delta_D + Delta_F, but
  L_base trains only R_D and L_fail (with the penalty) only R_F: "a base path, trained on all pairs,
  and a failure path, trained only on the identified failure set" (Sec. 4.1).
- Early stopping ("up to 800 epochs ... and early stopping", Sec. 5): after every epoch, L_base of the
  full reward on a fixed validation split (no failure term, so the decaying lambda_t does not move
  it); keep the best parameters, stop after ``patience`` epochs without improvement.
- Randomness: the path inits come from (seed, path), the minibatch order and the uniforms that sample
  S_t from (seed, epoch), so the methods of one seed share them (common random numbers).

:func:`fairl_lib.irl.grid.train_grid` trains every run of Table 1 at once and gives the same results
(tests/test_irl_grid_vs_fairl.py); this file is the definition it is checked against.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from fairl_lib.irl import failures, losses
from fairl_lib.irl.common import (
    TrainedRun,
    finish_run,
    new_history,
    nonfinite_error,
    record_epoch,
    torch_threads,
)
from fairl_lib.irl.config import IRLConfig
from fairl_lib.irl.data import PreferenceData, epoch_streams, pair_tensors, split_indices
from fairl_lib.irl.methods import MethodSpec, check_methods
from fairl_lib.irl.reward import init_path, path_forward, path_generator, weight_names


class RewardPath(nn.Module):
    """One path of Sec. 4.1: theta^T h(o) + b (linear head) or the two-layer MLP of Sec. 5; the head of
    the failure path is ``cfg.fail_head`` (default: ``cfg.head``)."""

    def __init__(self, dim: int, cfg: IRLConfig, seed: int, role: str, dtype: torch.dtype) -> None:
        super().__init__()
        head = cfg.path_head(role)
        # Kaiming-uniform init (Sec. 4.1), drawn from (seed, role): every trainer starts from it
        init = init_path(dim, head, cfg.hidden, path_generator(seed, role), dtype)
        self.theta = nn.ParameterDict({name: nn.Parameter(value) for name, value in init.items()})
        self.weight_names = weight_names(head)          # the weight matrices (no biases)

    def forward(self, h: Tensor) -> Tensor:
        return path_forward(self.theta, h)

    def penalty(self) -> Tensor:
        """||w||_2^2 of Eq. 3 (for the failure path: ||w_F||^2)."""
        return losses.failure_weight_penalty([self.theta[name] for name in self.weight_names])


class DualPathReward(nn.Module):
    """R(o) = R_D(o) + R_F(o) (Sec. 4.1); the baselines have no failure path (R_F = 0)."""

    def __init__(self, dim: int, cfg: IRLConfig, seed: int, spec: MethodSpec, dtype: torch.dtype) -> None:
        super().__init__()
        self.base = RewardPath(dim, cfg, seed, "base", dtype)
        self.failure = RewardPath(dim, cfg, seed, "failure", dtype) if spec.failures else None

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(R_D(o), R_F(o)) for embeddings ``h (..., d)``."""
        r_d = self.base(h)
        return r_d, (self.failure(h) if self.failure is not None else torch.zeros_like(r_d))


def fa_loss(model: DualPathReward, spec: MethodSpec, cfg: IRLConfig, xb: Tensor, yb: Tensor, ub: Tensor,
            sched: failures.RoundSchedule, sets: tuple[Tensor, Tensor] | None) -> tuple[Tensor, np.ndarray]:
    """Alg. 1 lines 2-12 on one minibatch: L_t of Eq. 3 and, for the log, (L_base + lambda_t L_fail, |F_t|, |S_t|).

    ``xb (b, 2, d)`` holds [h(o+), h(o-)] per pair, ``yb (b, 2)`` their labels y(o), ``ub (b,)`` the
    uniforms that sample S_t; ``sets`` = (F_t, S_t) when they were mined over the epoch, else None.
    """
    r_d, r_f = model(xb)                                             # (b, 2) each: o+ and o-
    d_d = losses.reward_margin(r_d[:, 0], r_d[:, 1])                     # line 2: Delta = Delta_D + Delta_F
    d_f = losses.reward_margin(r_f[:, 0], r_f[:, 1])
    # Sec. 4.1: L_base trains the base path (R_F enters as a constant) ...
    d_base = d_d + d_f.detach() if cfg.route_gradients else d_d + d_f
    l_base = losses.base_loss(spec.base, d_base, cfg.margin, cfg.tau)    # line 11: Eq. 1 or Eq. 2
    if spec.failures is None:                                        # baselines: L_t = L_base
        return l_base, np.array([l_base.item(), 0.0, 0.0])
    if sets is None:                                                 # lines 3-10, without gradient
        r = (r_d + r_f).detach()
        sets = failures.failure_set(cfg, spec.failures == "gt", losses.reward_margin(r[:, 0], r[:, 1]), r[:, 0], r[:, 1],
                              yb[:, 0], yb[:, 1], ub, sched)
    f_t, s_t = sets
    # ... and L_fail trains the failure path (R_D enters as a constant)
    d_fail = d_d.detach() + d_f if cfg.route_gradients else d_d + d_f
    l_fail = losses.failure_loss(spec.base, d_fail, s_t, cfg.margin_fail, cfg.tau_fail, cfg.w_fail,
                             cfg.fail_reduction)                     # line 11: M_fail > M or tau_fail < tau
    l_t = losses.fa_objective(l_base, l_fail, model.failure.penalty(), sched.lambda_t, cfg.penalty_scale)  # Eq. 3
    logged = [(l_base + sched.lambda_t * l_fail).item(), f_t.sum().item(), s_t.sum().item()]
    return l_t, np.array(logged)


@torch.no_grad()
def mine_epoch(model: DualPathReward, spec: MethodSpec, cfg: IRLConfig, x: Tensor, y: Tensor, u: Tensor,
               sched: failures.RoundSchedule) -> tuple[Tensor, Tensor]:
    """``cfg.mining="epoch"``: lines 3-10 once per epoch on all training pairs (bottom-k then ranks
    the whole training set), from the reward at the start of the epoch."""
    r_d, r_f = model(x)
    r = r_d + r_f
    return failures.failure_set(cfg, spec.failures == "gt", losses.reward_margin(r[:, 0], r[:, 1]), r[:, 0], r[:, 1],
                          y[:, 0], y[:, 1], u, sched)


@torch.no_grad()
def validation_loss(model: DualPathReward, spec: MethodSpec, cfg: IRLConfig, x_va: Tensor) -> float:
    """Early stopping's criterion: L_base (Eq. 1 or 2) of the full reward R on the validation pairs."""
    if len(x_va) == 0:
        return math.nan
    r_d, r_f = model(x_va)
    r = r_d + r_f
    return losses.base_loss(spec.base, losses.reward_margin(r[:, 0], r[:, 1]), cfg.margin, cfg.tau).item()


def train_one(data: PreferenceData, method: str, seed: int, cfg: IRLConfig = IRLConfig(),  # noqa: B008 (frozen)
              dtype: torch.dtype = torch.float32, threads: int | None = None) -> TrainedRun:
    """Algorithm 1 for one Table 1 ``method`` and ``seed``: the best-validation reward and its history.

    ``threads``: torch threads for this call only (None = leave the current setting).
    """
    spec = check_methods([method], data.has_labels)[0]
    tr_idx, va_idx = split_indices(data.n, cfg.val_fraction, cfg.split_seed)
    x_tr, y_tr = pair_tensors(data, tr_idx, dtype)                   # (N, 2, d) [h(o+), h(o-)]; y(o) (N, 2)
    x_va, _ = pair_tensors(data, va_idx, dtype)
    n_tr, n_steps = len(tr_idx), math.ceil(len(tr_idx) / cfg.batch_size)
    with torch_threads(threads):
        model = DualPathReward(data.dim, cfg, seed, spec, dtype)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                               eps=cfg.adam_eps)
        hist = new_history()
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best_val, best_epoch, bad_epochs = math.inf, 0, 0
        for epoch in range(cfg.max_epochs):                          # line 1: round t = one epoch
            sched = failures.round_schedule(cfg, epoch)                    # line 13: gamma_t, lambda_t, p_t of round t
            perm, u = epoch_streams(seed, epoch, n_tr)               # minibatch order, uniforms for S_t
            perm, u = torch.as_tensor(perm), torch.as_tensor(u, dtype=dtype)
            mined = None
            if cfg.mining == "epoch" and spec.failures is not None:
                mined = mine_epoch(model, spec, cfg, x_tr, y_tr, u, sched)
            sums = np.zeros(3)                                       # L_base + lambda_t L_fail, |F_t|, |S_t|
            for start in range(0, n_tr, cfg.batch_size):
                idx = perm[start:start + cfg.batch_size]             # line 2: sample a minibatch
                sets = None if mined is None else (mined[0][idx], mined[1][idx])
                l_t, logged = fa_loss(model, spec, cfg, x_tr[idx], y_tr[idx], u[idx], sched, sets)
                opt.zero_grad()
                l_t.backward()                                       # line 12: minimise L_t
                opt.step()
                sums += logged
            val = validation_loss(model, spec, cfg, x_va)
            w_sq = model.failure.penalty().item() if model.failure is not None else 0.0
            if not math.isfinite(sums[0]) or not (math.isfinite(val) or len(va_idx) == 0):
                raise nonfinite_error(method, seed, epoch, cfg)
            record_epoch(hist, epoch, sums[0] / n_steps, val, sums[1], sums[2], n_tr, w_sq, sched,
                         spec.failures is not None)
            # early stopping; without a validation split every epoch counts as an improvement
            if math.isnan(val) or val < best_val - cfg.min_delta:
                best_val, best_epoch, bad_epochs = (math.inf if math.isnan(val) else val), epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
                if bad_epochs >= cfg.patience:
                    break
    model.load_state_dict(best_state)                                # line 15: return R_theta
    fail = dict(model.failure.theta) if model.failure is not None else None
    return finish_run(method, seed, dict(model.base.theta), fail, hist, best_epoch, best_val, cfg)
