"""What a training run returns, its per-epoch history, and small helpers both trainers share."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from fairl_lib.irl.config import IRLConfig
from fairl_lib.irl.failures import RoundSchedule
from fairl_lib.irl.reward import RewardModel

HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "fail_frac", "sampled_frac", "w_fail_sq", "lambda_t",
                "gamma_t", "bottomk_frac", "p_t")


@dataclass
class TrainedRun:
    """One trained (method, seed): its best-validation reward and per-epoch history.

    ``history[key]`` is a list with one value per epoch run, keys :data:`HISTORY_KEYS`:
    ``train_loss`` the mean over minibatches of the data terms of Eq. 3, L_base + lambda_t L_fail(S_t);
    ``val_loss`` the validation base loss (early stopping); ``fail_frac`` / ``sampled_frac`` |F_t| and
    |S_t| per training pair seen; ``w_fail_sq`` ||w_F||^2 at the end of the epoch (0 for baselines; the
    full Eq. 3 objective adds lambda_t / 2 times it); the schedule values ``lambda_t`` (0 for
    baselines), ``gamma_t``, ``bottomk_frac`` and ``p_t`` (Alg. 1 line 13).
    """

    method: str
    seed: int
    reward: RewardModel
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int
    best_val_loss: float


@dataclass
class GridResult:
    """All runs of a grid plus wall-clock seconds."""

    runs: list[TrainedRun]
    config: IRLConfig
    seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0

    def get(self, method: str, seed: int) -> TrainedRun:
        for r in self.runs:
            if r.method == method and r.seed == seed:
                return r
        have = sorted({(r.method, r.seed) for r in self.runs})
        raise KeyError(f"No run ({method!r}, seed {seed}); have {have}")

    def by_method(self, method: str) -> list[TrainedRun]:
        return [r for r in self.runs if r.method == method]


def new_history() -> dict[str, list[float]]:
    return {k: [] for k in HISTORY_KEYS}


def record_epoch(hist: dict[str, list[float]], epoch: int, train_loss: float, val_loss: float, n_fail: float,
                 n_sampled: float, n_train: int, w_fail_sq: float, sched: RoundSchedule, has_fail: bool) -> None:
    """Append one epoch to a :class:`TrainedRun` history (counts become fractions of the training pairs)."""
    for key, val in (("epoch", epoch), ("train_loss", train_loss), ("val_loss", val_loss),
                     ("fail_frac", n_fail / n_train), ("sampled_frac", n_sampled / n_train),
                     ("w_fail_sq", w_fail_sq), ("lambda_t", sched.lambda_t if has_fail else 0.0),
                     ("gamma_t", sched.gamma_t),
                     ("bottomk_frac", sched.bottomk_frac), ("p_t", sched.p_t)):
        hist[key].append(float(val))


def nonfinite_error(method: str, seed: int, epoch: int, cfg: IRLConfig) -> FloatingPointError:
    return FloatingPointError(
        f"IRL training of {method} (seed {seed}) produced a non-finite loss at epoch {epoch}. "
        f"Try a lower learning rate (IRLConfig.lr={cfg.lr:g} -> e.g. {cfg.lr / 10:g}), a smaller lambda0 "
        f"(={cfg.lambda0:g}), or check the scale of the embeddings.")


def finish_run(method: str, seed: int, base: dict[str, Tensor], fail: dict[str, Tensor] | None,
               hist: dict[str, list[float]], best_epoch: int, best_val: float, cfg: IRLConfig) -> TrainedRun:
    """A :class:`TrainedRun` around the best-validation paths (the reward's ``meta`` records the config)."""
    meta = {"method": method, "seed": int(seed), "best_epoch": best_epoch, "epochs_run": len(hist["epoch"]),
            "best_val_loss": best_val, "config": asdict(cfg)}
    return TrainedRun(method, int(seed), RewardModel(base, fail, meta), hist, best_epoch, len(hist["epoch"]),
                      best_val)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, restoring the previous setting (None = unchanged)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
