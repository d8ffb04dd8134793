"""Training FA-IRL and the IRL baselines (Eq. 3, Algorithm 1), as one batched ensemble or one run.

Methods (Table 1):

===============  ==========  ======================================================
name             base loss   failure path / failure set
===============  ==========  ======================================================
``mm_irl``       Eq. 1       none (base path only)
``me_irl``       Eq. 2       none (base path only)
``mm_fa_gt``     Eq. 1       supervised failures y(o)R(o) <= 0 (Alg. 1 line 6)
``me_fa_gt``     Eq. 2       supervised failures y(o)R(o) <= 0 (Alg. 1 line 6)
``mm_fa_margin`` Eq. 1       IRL-margin failures, bottom-k curriculum 20% -> 0% (Sec. 5)
``me_fa_margin`` Eq. 2       IRL-margin failures, bottom-k curriculum 20% -> 0% (Sec. 5)
===============  ==========  ======================================================

One training step (Alg. 1 lines 2-12) on a minibatch of B pairs:

1. rewards R = R_D + R_F of both outputs; margins Delta_i (line 2);
2. failures F_t from the *current* margins (lines 3-10; computed without gradient), sampled S_t;
3. L_t = L_base + lambda_t L_fail(S_t) + lambda_t/2 ||w_F||^2 (Eq. 3), one Adam step.

Choices the paper leaves open (all configurable in :class:`IRLConfig`):

- *Which path each loss trains.* Sec. 4.1: the base path is "trained on all pairs", the failure path
  "only on the identified failure set". With ``route_gradients=True`` (default) both losses see the
  full margin Delta = Delta_D + Delta_F, but L_base updates only R_D and L_fail (+ the penalty) only
  R_F (the other path enters as a constant). ``False``: both losses update both paths.
- *Schedules* step once per round = one epoch (t = 0, 1, ...): lambda_t = lambda0 * decay^t,
  gamma_t / bottom-k fraction / p_t linear over their ``*_rounds``.
- *Early stopping* watches the validation base loss L_base(Delta) of the full reward (no failure
  term, so it does not move with lambda_t) on a fixed split; each run keeps its best-validation
  parameters and stops after ``patience`` epochs without improvement.
- *Randomness.* A run (method, seed) draws its path inits from (seed, path) and its minibatch order
  and failure-sampling uniforms from (seed, epoch). Runs of different methods with the same seed
  therefore share the base-path init and the minibatch order (common random numbers: method
  differences are not confounded with seed luck). The train/val split uses ``split_seed`` and is
  the same for all runs.

:func:`train_grid` trains many (method, seed) runs at once with stacked parameters and no autograd:

- Runs of one seed share their minibatches, so the paths of a seed go through batched GEMMs
  ``(2B, d) @ (d, K*H)``, K paths per group (:func:`group_width` balances padding against how the
  groups split over the threads, again whenever runs finish); finished runs leave the stack with
  their best-validation state.
- The gradient is worked out by hand: dL/dDelta of Eq. 1-2 and of L_fail in closed form
  (``losses.hinge_grad``, ``losses.maxent_grad``, ``losses.masked_mean_weights``), routed to the paths, then
  backpropagated through the heads (``reward.grouped_backward``); lambda_t/2 ||w_F||^2 (all weight
  matrices of the failure path, biases excluded) adds lambda_t w_F.
- Adam is torch's fused CPU kernel called directly (:class:`_FusedAdam`).

:func:`train_one` is the plain sequential reference (``nn.Module``, autograd, ``torch.optim.Adam``).
Both give the same result up to floating-point rounding (tests/test_train.py, float64: ~1e-12), which
also checks the hand-written gradients against autograd.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from fairl_lib.irl import failures as fl
from fairl_lib.irl import losses as ls
from fairl_lib.irl.reward import (
    RewardModel,
    check_head,
    from_slots,
    grouped_backward,
    grouped_forward,
    init_path,
    path_generator,
    to_slots,
    weight_names,
)

HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "fail_frac", "sampled_frac", "w_fail_sq", "lambda_t",
                "gamma_t", "bottomk_frac", "p_t")


@dataclass(frozen=True)
class IRLConfig:
    """Hyper-parameters of IRL / FA-IRL training. Defaults are the paper's values where it gives one.

    Attributes:
        head: reward head per path, ``"mlp"`` (two-layer MLP, Sec. 5) or ``"linear"`` (Sec. 4.1).
        hidden: hidden width of the MLP head. Not given in the paper; 32 (12k weights per path on
            384-d MiniLM embeddings) is small for 20k pairs and keeps the 30-run grid fast (cost is
            linear in it, see benchmarks/README.md).
        margin: M of Eq. 1 (paper: 0.8).
        margin_fail: M_fail > M for failure pairs (Sec. 4.2; value not given, default 2M).
        tau: temperature of Eq. 2 (paper: 1.0).
        tau_fail: tau_fail < tau for failure pairs (Sec. 4.2; value not given, default tau/2).
        w_fail: extra up-weight of the failure loss (App. B, w_fail > 1 = up-weighting; 1.0 = off).
        fail_reduction: L_fail averages over S_t (``"subset"``) or divides by B (``"batch"``).
        route_gradients: L_base trains only R_D and L_fail only R_F (Sec. 4.1), else both paths.
        lambda0: initial failure weight lambda_0 of Eq. 3 (paper: 10.0).
        lambda_decay: per-epoch factor of the exponential decay lambda_t = lambda0 * decay^t.
        penalty_scale: c in c * lambda_t/2 ||w_F||^2 (Eq. 3 as printed: c = 1). Eq. 3 ties the L2 term
            to the same lambda_t as L_fail, so with lambda0 = 10 and an MLP failure head the penalty
            can dominate and shrink R_F to almost nothing (measured in notebook 04, "failure path
            share"); c < 1 lets the failure path act. Kept at the paper's 1 in every profile.
        margin_rule: how *_margin runs pick failures: ``"bottomk"`` (Sec. 5 curriculum) or
            ``"gamma"`` (Delta <= gamma_t, Alg. 1 line 4).
        gamma_start: gamma_t at epoch 0 (0 = only pairs the reward gets wrong).
        gamma_end: gamma_t after ``gamma_rounds`` (default M: near-ties inside the margin).
        gamma_rounds: epochs of the linear gamma anneal.
        bottomk_start: fraction of a minibatch flagged by bottom-k at epoch 0 (paper: 20%).
        bottomk_end: fraction after ``bottomk_rounds`` (paper: 0%).
        bottomk_rounds: epochs of the bottom-k curriculum (paper: 100 rounds).
        p_start: sampling rate p_t of S_t from F_t at epoch 0 (paper: not given; 1 = keep all).
        p_end: p_t after ``p_rounds``.
        p_rounds: epochs of the linear p_t schedule.
        sup_rule: supervised-failure rule, ``"text"`` (y(o)R(o) <= 0 for both outputs, Sec. 4.3) or
            ``"alg1"`` (Alg. 1 line 6 as printed: y(o-)R(o-) >= 0); see failures.supervised_failures.
        sup_reference: compare R(o) with ``"zero"`` (literal) or the ``"batch_mean"`` reward.
        gt_include_margin: *_gt runs also flag Delta <= gamma_t (Alg. 1 line 10 union); default off,
            so *_gt = ground-truth failures only.
        mining: ``"batch"`` finds failures in each minibatch (Alg. 1 lines 2-4) or ``"epoch"`` once per
            epoch on all training pairs (bottom-k then ranks the whole training set).
        lr: Adam learning rate (paper: 1e-3).
        adam_beta1: Adam beta_1 (torch default).
        adam_beta2: Adam beta_2 (torch default).
        adam_eps: Adam epsilon (torch default).
        batch_size: pairs per minibatch B (paper: 32).
        max_epochs: epoch cap (paper: up to 800).
        patience: epochs without validation improvement before a run stops (paper: "early stopping").
        min_delta: a validation loss must drop by more than this to count as an improvement.
        val_fraction: share of the pairs held out for early stopping.
        split_seed: seed of the train/validation split (shared by all runs).
        n_seeds: independent runs per method (Table 1 reports mean +- std over seeds; paper: 5).
        eval_chunk: pairs per chunk in full-dataset evaluation (memory knob, no effect on results).
    """

    head: str = "mlp"
    hidden: int = 32
    margin: float = 0.8
    margin_fail: float = 1.6
    tau: float = 1.0
    tau_fail: float = 0.5
    w_fail: float = 1.0
    fail_reduction: str = "subset"
    route_gradients: bool = True
    lambda0: float = 10.0
    lambda_decay: float = 0.95
    penalty_scale: float = 1.0
    margin_rule: str = "bottomk"
    gamma_start: float = 0.0
    gamma_end: float = 0.8
    gamma_rounds: int = 100
    bottomk_start: float = 0.2
    bottomk_end: float = 0.0
    bottomk_rounds: int = 100
    p_start: float = 1.0
    p_end: float = 1.0
    p_rounds: int = 100
    sup_rule: str = "text"
    sup_reference: str = "zero"
    gt_include_margin: bool = False
    mining: str = "batch"
    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    batch_size: int = 32
    max_epochs: int = 800
    patience: int = 10
    min_delta: float = 0.0
    val_fraction: float = 0.1
    split_seed: int = 0
    n_seeds: int = 5
    eval_chunk: int = 2048

    def __post_init__(self) -> None:
        check_head(self.head)
        choices = {"margin_rule": ("bottomk", "gamma"), "sup_rule": fl.SUP_RULES,
                   "sup_reference": fl.SUP_REFERENCES, "mining": ("batch", "epoch"),
                   "fail_reduction": ls.FAIL_REDUCTIONS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"IRLConfig.{name}={getattr(self, name)!r} is not valid; "
                                 f"choose one of {valid}")
        if self.batch_size < 1 or self.max_epochs < 1 or self.hidden < 1 or self.patience < 1:
            raise ValueError("IRLConfig: batch_size, max_epochs, hidden and patience must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"IRLConfig.val_fraction must be in [0, 1); got {self.val_fraction}")


# --- methods ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MethodSpec:
    """A Table 1 method: base loss family and failure source (None = baseline, base path only)."""

    name: str
    base: str
    failures: str | None


METHODS: dict[str, MethodSpec] = {
    "mm_irl": MethodSpec("mm_irl", "mm", None),
    "me_irl": MethodSpec("me_irl", "me", None),
    "mm_fa_gt": MethodSpec("mm_fa_gt", "mm", "gt"),
    "me_fa_gt": MethodSpec("me_fa_gt", "me", "gt"),
    "mm_fa_margin": MethodSpec("mm_fa_margin", "mm", "margin"),
    "me_fa_margin": MethodSpec("me_fa_margin", "me", "margin"),
}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)


def method_spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of a Table 1 method name; unknown names list the valid ones."""
    if name not in METHODS:
        raise ValueError(f"Unknown IRL method {name!r}; valid: {', '.join(METHOD_NAMES)}")
    return METHODS[name]


# --- data ------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PreferenceData:
    """Preference pairs (o_i+ preferred over o_i-) as frozen embeddings, with optional labels.

    Attributes:
        h_plus: ``(N, d)`` embeddings h(o+) of the preferred outputs.
        h_minus: ``(N, d)`` embeddings h(o-) of the other outputs.
        y_plus: ``(N,)`` labels y(o+) in {-1, +1} (e.g. +1 = non-toxic) or None.
        y_minus: ``(N,)`` labels y(o-) in {-1, +1} or None. Needed by the *_gt methods.
    """

    h_plus: np.ndarray
    h_minus: np.ndarray
    y_plus: np.ndarray | None = None
    y_minus: np.ndarray | None = None

    def __post_init__(self) -> None:
        hp, hm = np.asarray(self.h_plus), np.asarray(self.h_minus)
        if hp.ndim != 2 or hp.shape != hm.shape:
            raise ValueError(f"h_plus and h_minus must both be (N, d); got {hp.shape} and {hm.shape}")
        bad = ~(np.isfinite(hp).all(1) & np.isfinite(hm).all(1))
        if bad.any():
            rows = np.flatnonzero(bad)
            more = " ..." if len(rows) > 10 else ""
            raise ValueError(f"{bad.sum()} of {len(bad)} preference pairs have NaN/inf embeddings (rows "
                             f"{rows[:10].tolist()}{more}); drop or re-embed them.")
        if (self.y_plus is None) != (self.y_minus is None):
            raise ValueError("Give both y_plus and y_minus, or neither.")
        for name in ("y_plus", "y_minus"):
            y = getattr(self, name)
            if y is not None and (np.shape(y) != (len(hp),) or not np.isin(y, (-1, 1)).all()):
                raise ValueError(f"{name} must be ({len(hp)},) with values in {{-1, +1}}")

    @property
    def n(self) -> int:
        return int(np.shape(self.h_plus)[0])

    @property
    def dim(self) -> int:
        return int(np.shape(self.h_plus)[1])

    @property
    def has_labels(self) -> bool:
        return self.y_plus is not None

    def subset(self, idx: np.ndarray) -> PreferenceData:
        """The pairs at ``idx``."""
        pick = (lambda a: None if a is None else np.asarray(a)[idx])
        return PreferenceData(np.asarray(self.h_plus)[idx], np.asarray(self.h_minus)[idx],
                              pick(self.y_plus), pick(self.y_minus))


def split_indices(n: int, val_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/validation split of ``n`` pairs (validation = ``round(n * val_fraction)``)."""
    perm = np.random.default_rng(np.random.SeedSequence([int(split_seed), 3000])).permutation(n)
    n_val = round(n * val_fraction)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def epoch_streams(seed: int, epoch: int, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The minibatch order and failure-sampling uniforms of run ``seed`` in ``epoch``.

    Both are functions of (seed, epoch) only, so batched and sequential training draw the same ones.
    Uniform ``u[i]`` belongs to training pair ``i``; a failure i is kept in S_t when ``u[i] < p_t``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2000, int(epoch)]))
    return rng.permutation(n_train), rng.random(n_train)


# --- schedules and failure sets shared by both trainers --------------------------------------

@dataclass(frozen=True)
class RoundSchedule:
    """Schedule values of one round t (= epoch), Alg. 1 line 13."""

    t: int
    lambda_t: float
    gamma_t: float
    bottomk_frac: float
    p_t: float


def round_schedule(cfg: IRLConfig, t: int) -> RoundSchedule:
    """lambda_t (exponential decay), gamma_t, bottom-k fraction and p_t (linear) at round t."""
    return RoundSchedule(t, fl.lambda_schedule(cfg.lambda0, cfg.lambda_decay, t),
                         fl.gamma_schedule(cfg.gamma_start, cfg.gamma_end, cfg.gamma_rounds, t),
                         fl.bottomk_schedule(cfg.bottomk_start, cfg.bottomk_end, cfg.bottomk_rounds, t),
                         fl.sampling_schedule(cfg.p_start, cfg.p_end, cfg.p_rounds, t))


def margin_failure_set(cfg: IRLConfig, delta: Tensor, sched: RoundSchedule) -> Tensor:
    """Failures of the *_margin methods: bottom-k (default) or Delta <= gamma_t (Alg. 1 line 4)."""
    if cfg.margin_rule == "bottomk":
        return fl.bottomk_failures(delta, sched.bottomk_frac)
    return fl.margin_failures(delta, sched.gamma_t)


def supervised_failure_set(cfg: IRLConfig, delta: Tensor, r_plus: Tensor, r_minus: Tensor, y_plus: Tensor,
                           y_minus: Tensor, sched: RoundSchedule) -> Tensor:
    """Failures of the *_gt methods: F_sup (Alg. 1 line 6), optionally U F_margin (line 10)."""
    sup = fl.supervised_failures(r_plus, r_minus, y_plus, y_minus, cfg.sup_rule, cfg.sup_reference)
    if cfg.gt_include_margin:
        sup = fl.union_failures(sup, fl.margin_failures(delta, sched.gamma_t))
    return sup


# --- results ---------------------------------------------------------------------------------

@dataclass
class TrainedRun:
    """One trained (method, seed): its best-validation reward and per-epoch history.

    ``history[key]`` is a list with one value per epoch run, keys :data:`HISTORY_KEYS`:
    ``train_loss`` the mean over minibatches of the data terms of Eq. 3, L_base + lambda_t L_fail(S_t);
    ``val_loss`` the validation base loss (early stopping); ``fail_frac`` / ``sampled_frac`` |F_t| and
    |S_t| per training pair seen; ``w_fail_sq`` ||w_F||^2 at the end of the epoch (0 for baselines; the
    full Eq. 3 objective adds lambda_t / 2 times it); the schedule values ``lambda_t`` (0 for
    baselines), ``gamma_t``, ``bottomk_frac`` and ``p_t``.
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


def _nonfinite_error(method: str, seed: int, epoch: int, what: str, cfg: IRLConfig) -> FloatingPointError:
    return FloatingPointError(
        f"IRL training of {method} (seed {seed}) produced a non-finite {what} at epoch {epoch}. "
        f"Try a lower learning rate (IRLConfig.lr={cfg.lr:g} -> e.g. {cfg.lr / 10:g}), a smaller lambda0 "
        f"(={cfg.lambda0:g}), or check the scale of the embeddings.")


def _history() -> dict[str, list[float]]:
    return {k: [] for k in HISTORY_KEYS}


def _record(hist: dict[str, list[float]], epoch: int, train_loss: float, val_loss: float, n_fail: float,
            n_sampled: float, n_train: int, w_fail_sq: float, sched: RoundSchedule, has_fail: bool) -> None:
    for key, val in (("epoch", epoch), ("train_loss", train_loss), ("val_loss", val_loss),
                     ("fail_frac", n_fail / n_train), ("sampled_frac", n_sampled / n_train),
                     ("w_fail_sq", w_fail_sq), ("lambda_t", sched.lambda_t if has_fail else 0.0),
                     ("gamma_t", sched.gamma_t),
                     ("bottomk_frac", sched.bottomk_frac), ("p_t", sched.p_t)):
        hist[key].append(float(val))


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, restoring the previous setting (None = unchanged).

    On a busy shared CPU one thread is often faster for these small per-step ops (OpenMP wake-ups)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_methods(methods: Sequence[str], data: PreferenceData) -> list[MethodSpec]:
    specs = [method_spec(m) for m in methods]
    if any(s.failures == "gt" for s in specs) and not data.has_labels:
        raise ValueError("The *_fa_gt methods need ground-truth labels: "
                         "give PreferenceData(y_plus=..., y_minus=...).")
    return specs


def _tensors(data: PreferenceData, idx: np.ndarray, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``X (n, 2, d)`` (row = [h(o+), h(o-)]) and labels ``Y (n, 2)`` (zeros without labels)."""
    x = np.stack([np.asarray(data.h_plus)[idx], np.asarray(data.h_minus)[idx]], axis=1)
    if data.has_labels:
        y = np.stack([np.asarray(data.y_plus)[idx], np.asarray(data.y_minus)[idx]], axis=1)
    else:
        y = np.zeros((len(idx), 2))
    return torch.as_tensor(x, dtype=dtype).contiguous(), torch.as_tensor(y, dtype=dtype)


class _EarlyStopper:
    """Per-run early stopping on the validation loss (improvement = drop by more than min_delta)."""

    def __init__(self, n: int, patience: int, min_delta: float) -> None:
        self.best = np.full(n, np.inf)
        self.best_epoch = np.zeros(n, dtype=int)
        self.bad = np.zeros(n, dtype=int)
        self.patience, self.min_delta = patience, min_delta

    def update(self, pos: np.ndarray, val: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (improved, stop) masks for runs ``pos`` with validation losses ``val``.

        Without a validation split (``val`` is NaN) every epoch counts as an improvement.
        """
        improved = np.isnan(val) | (val < self.best[pos] - self.min_delta)
        self.best[pos] = np.where(improved, np.where(np.isnan(val), np.inf, val), self.best[pos])
        self.best_epoch[pos] = np.where(improved, epoch, self.best_epoch[pos])
        self.bad[pos] = np.where(improved, 0, self.bad[pos] + 1)
        return improved, self.bad[pos] >= self.patience


# --- the sequential reference ----------------------------------------------------------------

def _make_path_module(params: dict[str, Tensor]) -> nn.Module:
    """An ``nn.Linear`` / ``nn.Sequential`` path holding the given init values."""
    with torch.no_grad():
        if "w" in params:
            lin = nn.Linear(params["w"].shape[0], 1, dtype=params["w"].dtype)
            lin.weight.copy_(params["w"][None, :])
            lin.bias.copy_(params["b"].reshape(1))
            return lin
        d, h = params["w1"].shape
        mlp = nn.Sequential(nn.Linear(d, h, dtype=params["w1"].dtype), nn.ReLU(),
                            nn.Linear(h, 1, dtype=params["w1"].dtype))
        mlp[0].weight.copy_(params["w1"].T)
        mlp[0].bias.copy_(params["b1"])
        mlp[2].weight.copy_(params["w2"][None, :])
        mlp[2].bias.copy_(params["b2"].reshape(1))
        return mlp


def _path_params(module: nn.Module) -> dict[str, Tensor]:
    if isinstance(module, nn.Linear):
        return {"w": module.weight.detach()[0].clone(), "b": module.bias.detach()[0].clone()}
    return {"w1": module[0].weight.detach().T.clone(), "b1": module[0].bias.detach().clone(),
            "w2": module[2].weight.detach()[0].clone(), "b2": module[2].bias.detach()[0].clone()}


class DualPathReward(nn.Module):
    """R(o) = R_D(o) + R_F(o) as a plain ``nn.Module`` (Sec. 4.1); ``failure`` absent for baselines."""

    def __init__(self, base: dict[str, Tensor], failure: dict[str, Tensor] | None) -> None:
        super().__init__()
        self.base = _make_path_module(base)
        self.failure = _make_path_module(failure) if failure is not None else None

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        r_d = self.base(h)[..., 0]
        r_f = self.failure(h)[..., 0] if self.failure is not None else torch.zeros_like(r_d)
        return r_d, r_f

    def failure_weights(self) -> list[Tensor]:
        assert self.failure is not None
        return [p for n, p in self.failure.named_parameters() if n.endswith("weight")]


def _init_run(seed: int, spec: MethodSpec, dim: int, cfg: IRLConfig, dtype: torch.dtype):
    base = init_path(dim, cfg.head, cfg.hidden, path_generator(seed, "base"), dtype)
    fail = None
    if spec.failures:
        fail = init_path(dim, cfg.head, cfg.hidden, path_generator(seed, "failure"), dtype)
    return base, fail


def train_one(data: PreferenceData, method: str, seed: int, cfg: IRLConfig = IRLConfig(),
              dtype: torch.dtype = torch.float32, threads: int | None = None) -> TrainedRun:
    """Train one (method, seed) with a plain PyTorch loop: the sequential reference of :func:`train_grid`.

    Implements Alg. 1 with Eq. 3 step by step for a single model (see the module docstring).
    ``threads``: torch threads for this call only (None = leave the current setting).
    """
    with torch_threads(threads):
        return _train_one(data, method, seed, cfg, dtype)


def _train_one(data: PreferenceData, method: str, seed: int, cfg: IRLConfig,
               dtype: torch.dtype) -> TrainedRun:
    spec = _check_methods([method], data)[0]
    tr_idx, va_idx = split_indices(data.n, cfg.val_fraction, cfg.split_seed)
    x_tr, y_tr = _tensors(data, tr_idx, dtype)
    x_va, _ = _tensors(data, va_idx, dtype)
    model = DualPathReward(*_init_run(seed, spec, data.dim, cfg, dtype))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                           eps=cfg.adam_eps, fused=True)
    stopper = _EarlyStopper(1, cfg.patience, cfg.min_delta)
    hist, best = _history(), {k: v.detach().clone() for k, v in model.state_dict().items()}
    n_steps = math.ceil(len(tr_idx) / cfg.batch_size)
    for epoch in range(cfg.max_epochs):
        sched = round_schedule(cfg, epoch)
        perm, u = (torch.as_tensor(a) for a in epoch_streams(seed, epoch, len(tr_idx)))
        u = u.to(dtype)
        mined = _mine_epoch_single(model, spec, cfg, x_tr, y_tr, u, sched) if cfg.mining == "epoch" else None
        tot = np.zeros(3)
        for start in range(0, len(tr_idx), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            sets = None if mined is None else (mined[0][idx], mined[1][idx])
            loss, logged = _step_single(model, spec, cfg, x_tr[idx], y_tr[idx], u[idx], sched, sets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += logged
        with torch.no_grad():
            val = _val_loss_single(model, spec, cfg, x_va)
            w_sq = 0.0 if model.failure is None else float(ls.failure_weight_penalty(model.failure_weights()))
        if not math.isfinite(tot[0]) or not (math.isfinite(val) or len(va_idx) == 0):
            raise _nonfinite_error(method, seed, epoch, "loss", cfg)
        _record(hist, epoch, tot[0] / n_steps, val, tot[1], tot[2], len(tr_idx), w_sq, sched,
                spec.failures is not None)
        improved, stop = stopper.update(np.array([0]), np.array([val]), epoch)
        if improved[0]:
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if stop[0]:
            break
    model.load_state_dict(best)
    return _finish_run(method, seed, _path_params(model.base),
                       _path_params(model.failure) if model.failure is not None else None,
                       hist, int(stopper.best_epoch[0]), float(stopper.best[0]), cfg)


def _step_single(model: DualPathReward, spec: MethodSpec, cfg: IRLConfig, xb: Tensor, yb: Tensor, ub: Tensor,
                 sched: RoundSchedule, sets: tuple[Tensor, Tensor] | None) -> tuple[Tensor, np.ndarray]:
    """Alg. 1 lines 2-12 on one minibatch: Eq. 3 to minimise, and (L_base + lambda_t L_fail, |F_t|, |S_t|)."""
    r_d, r_f = model(xb.reshape(-1, xb.shape[-1]))
    r_d, r_f = r_d.view(-1, 2), r_f.view(-1, 2)
    d_d, d_f = r_d[:, 0] - r_d[:, 1], r_f[:, 0] - r_f[:, 1]
    d_base = d_d + d_f.detach() if cfg.route_gradients else d_d + d_f
    loss = ls.base_loss(spec.base, d_base, cfg.margin, cfg.tau)
    if spec.failures is None:
        return loss, np.array([float(loss.detach()), 0.0, 0.0])
    if sets is None:
        delta, r = (d_d + d_f).detach(), (r_d + r_f).detach()
        if spec.failures == "gt":
            f_t = supervised_failure_set(cfg, delta, r[:, 0], r[:, 1], yb[:, 0], yb[:, 1], sched)
        else:
            f_t = margin_failure_set(cfg, delta, sched)
        sets = (f_t, fl.sample_failures(f_t, ub, sched.p_t))
    d_fail = d_d.detach() + d_f if cfg.route_gradients else d_d + d_f
    l_fail = ls.failure_loss(spec.base, d_fail, sets[1], cfg.margin_fail, cfg.tau_fail, cfg.w_fail,
                             cfg.fail_reduction)
    data_terms = loss + sched.lambda_t * l_fail
    full = ls.fa_objective(loss, l_fail, ls.failure_weight_penalty(model.failure_weights()), sched.lambda_t,
                           cfg.penalty_scale)
    return full, np.array([float(data_terms.detach()), float(sets[0].sum()), float(sets[1].sum())])


def _val_loss_single(model: DualPathReward, spec: MethodSpec, cfg: IRLConfig, x_va: Tensor) -> float:
    if x_va.shape[0] == 0:
        return float("nan")
    r_d, r_f = model(x_va.reshape(-1, x_va.shape[-1]))
    r = (r_d + r_f).view(-1, 2)
    return float(ls.base_loss(spec.base, r[:, 0] - r[:, 1], cfg.margin, cfg.tau))


def _mine_epoch_single(model: DualPathReward, spec: MethodSpec, cfg: IRLConfig, x_tr: Tensor, y_tr: Tensor,
                       u: Tensor, sched: RoundSchedule) -> tuple[Tensor, Tensor] | None:
    """``mining="epoch"``: F_t and S_t over all training pairs from the reward at the epoch start."""
    if spec.failures is None:
        return None
    with torch.no_grad():
        r_d, r_f = model(x_tr.reshape(-1, x_tr.shape[-1]))
        r = (r_d + r_f).view(-1, 2)
    delta = r[:, 0] - r[:, 1]
    if spec.failures == "gt":
        fail_set = supervised_failure_set(cfg, delta, r[:, 0], r[:, 1], y_tr[:, 0], y_tr[:, 1], sched)
    else:
        fail_set = margin_failure_set(cfg, delta, sched)
    return fail_set, fl.sample_failures(fail_set, u, sched.p_t)


def _finish_run(method: str, seed: int, base: dict[str, Tensor], fail: dict[str, Tensor] | None,
                hist: dict[str, list[float]], best_epoch: int, best_val: float, cfg: IRLConfig) -> TrainedRun:
    meta = {"method": method, "seed": int(seed), "best_epoch": best_epoch, "epochs_run": len(hist["epoch"]),
            "best_val_loss": best_val, "config": asdict(cfg)}
    return TrainedRun(method, int(seed), RewardModel(base, fail, meta), hist, best_epoch, len(hist["epoch"]),
                      best_val)


# --- the batched ensemble --------------------------------------------------------------------

def group_width(slot_counts: Sequence[int], threads: int = 1) -> int:
    """Slots per GEMM group K for seeds holding ``slot_counts`` paths each.

    A seed's paths are cut into G_s = ceil(c_s / K) groups of K slots (the last one padded with empty
    slots). The batched GEMMs of a step split their G = sum_s G_s groups over the ``threads`` torch
    threads, so a step costs about ceil(G / threads) * K slots of GEMM time; K minimises that, ties
    going to the wider K (fewer groups). Measured on 2 threads (benchmarks/README.md): the full grid
    (5 seeds x 10 paths) is ~10% faster as 10 groups of 5 than as 5 groups of 10 (3 groups on one
    thread, 2 on the other), and when runs finish unevenly narrow groups (K = 1-2, no padding) beat
    one group per seed by 10-40%. With one thread this is the least padding.
    """
    counts = [c for c in slot_counts if c > 0]
    if not counts:
        raise ValueError("group_width needs at least one seed with a path")
    if threads < 1:
        raise ValueError(f"group_width needs threads >= 1; got {threads}")
    cost = {k: -(-sum(-(-c // k) for c in counts) // threads) * k for k in range(1, max(counts) + 1)}
    return min(cost, key=lambda k: (cost[k], -k))


@dataclass
class _Layout:
    """Where the active runs' paths sit in the grouped parameter tensors.

    Runs of one seed share their minibatches, so the paths of a seed can share one GEMM. A seed's
    paths (base paths of its runs, then the failure paths of its FA runs) fill groups of K slots
    (:func:`group_width`); group g reads the minibatch of seed ``group_seed[g]`` and is padded with
    empty slots to K; slots are numbered 0..G*K-1 group by group. A run's two paths may sit in
    different groups of its seed: both see the same rows, so R = R_D + R_F is still a sum over the
    same outputs.
    """

    runs: np.ndarray          # (E,) run indices into the grid: baselines, then FA runs, each ascending
    seeds: list[int]          # (S,) the active seeds
    group_seed: Tensor        # (G,) position in ``seeds`` of each group's seed
    k: int                    # slots per group
    slot_path: np.ndarray     # (G*K,) global path id in each slot, -1 = empty
    fail_slot: Tensor         # (E_F,) flat slot (of G*K) of each FA run's failure path
    run_seed: Tensor          # (E,) position in ``seeds`` of each run's seed
    n_fa: int                 # E_F: the FA runs, which are the last E_F of the E runs
    assign: Tensor            # (E, G*K) 1 on each run's base and failure slot: R = assign @ slot rewards
    slot_base: Tensor         # (G*K, E) 1 on each run's base slot: slot gradients = slot_base @ run gradients
    slot_fail: Tensor         # (G*K, E_F) 1 on each FA run's failure slot
    fail_block: tuple[slice, slice] | None  # (groups, slots) holding exactly the failure paths (_fail_block)
    is_mm: Tensor             # (E, 1) bool: Eq. 1 (mm) or Eq. 2 (me) base loss, per row
    is_mm_fa: Tensor          # (E_F, 1) bool
    is_gt_fa: Tensor          # (E_F, 1) bool: supervised (*_gt) or margin (*_margin) failures

    @staticmethod
    def mode(mask: Tensor) -> str:
        """'all' / 'none' / 'mixed' True entries (decided once per layout, not per step)."""
        return "all" if bool(mask.all()) else ("none" if not bool(mask.any()) else "mixed")

    def __post_init__(self) -> None:
        self.mm_mode, self.mm_mode_fa, self.gt_mode_fa = (self.mode(m) for m in (self.is_mm, self.is_mm_fa,
                                                                                 self.is_gt_fa))

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def fa(self) -> slice:
        """The FA runs' rows of a per-run ``(E, ...)`` tensor (they come last)."""
        return slice(self.n_runs - self.n_fa, self.n_runs)

    @property
    def n_groups(self) -> int:
        return len(self.group_seed)


def _by_mode(mode: str, mask: Tensor, if_true: Callable[[], Tensor],
             if_false: Callable[[], Tensor]) -> Tensor:
    """``where(mask, if_true(), if_false())``, computing only the branch needed when the mask is uniform."""
    if mode == "all":
        return if_true()
    if mode == "none":
        return if_false()
    return torch.where(mask, if_true(), if_false())


def _fail_block(is_fail: np.ndarray, k: int) -> tuple[slice, slice] | None:
    """(groups, slots) slices whose product is exactly the failure slots, if there are such slices.

    ``is_fail (G*K,)`` flags the failure-path slots. The full grid qualifies whatever K: a seed's base
    paths come first, then its failure paths, so with K = 10 every group holds them in slots 6..9
    and with K = 5 every second group in slots 1..4. None otherwise (the penalty then uses a mask).
    """
    fail = is_fail.reshape(-1, k)
    groups = np.flatnonzero(fail.any(1))
    slots = np.flatnonzero(fail.any(0))
    if len(groups) == 0:
        return None
    g_step = int(groups[1] - groups[0]) if len(groups) > 1 else 1
    g_slice = slice(int(groups[0]), int(groups[-1]) + 1, g_step)
    k_slice = slice(int(slots[0]), int(slots[-1]) + 1)
    block = np.zeros_like(fail)
    block[g_slice, k_slice] = True
    return (g_slice, k_slice) if np.array_equal(block, fail) else None


def _minibatch_rows(perm: Tensor, bsz: int) -> list[Tensor]:
    """``[perm[:, s:s + bsz].reshape(-1) for s in range(0, N, bsz)]`` for ``perm (G, N)``, made with
    two copies per epoch instead of one per step (each entry is a contiguous ``(G*b,)`` view)."""
    g, n = perm.shape
    full = n // bsz * bsz
    rows = list(perm[:, :full].reshape(g, -1, bsz).transpose(0, 1).reshape(-1, g * bsz).unbind(0)) if full else []
    if full < n:
        rows.append(perm[:, full:].reshape(-1))
    return rows


class _FusedAdam:
    """Adam over a dict of tensors: the fused CPU kernel that ``torch.optim.Adam(fused=True)`` runs
    (``torch._fused_adam_``), called directly.

    Same update, same state (first and second moments per tensor, one step count), minus
    ``Optimizer.step``'s per-call Python (hooks, grouping by device and dtype), which costs as much as
    the kernel itself for the grid's small tensors. ``grads`` are buffers the caller overwrites before
    every :meth:`step` (no autograd, no zero_grad). tests/test_train.py checks the grid against
    :func:`train_one`, which uses ``torch.optim.Adam``.
    """

    def __init__(self, params: dict[str, Tensor], lr: float, betas: tuple[float, float], eps: float,
                 moments: list[dict[str, Tensor]] | None = None, t: Tensor | None = None) -> None:
        self.names = list(params)
        self.params = [params[k] for k in self.names]
        self.grads = {k: torch.zeros_like(v) for k, v in params.items()}
        m, v = moments or ({k: torch.zeros_like(x) for k, x in params.items()} for _ in range(2))
        self.exp_avg, self.exp_avg_sq = m, v
        self.t = torch.zeros((), dtype=torch.float32) if t is None else t     # torch's fused step dtype
        self.lr, self.betas, self.eps = lr, betas, eps

    def step(self) -> None:
        self.t.add_(1.0)
        torch._fused_adam_(self.params, [self.grads[k] for k in self.names],
                           [self.exp_avg[k] for k in self.names], [self.exp_avg_sq[k] for k in self.names],
                           [], [self.t] * len(self.names), lr=self.lr, beta1=self.betas[0],
                           beta2=self.betas[1], weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)


class _Grid:
    """A batched grid: run specs, grouped parameters + Adam, best-state bank, early stopping, histories."""

    def __init__(self, data: PreferenceData, methods: Sequence[str], seeds: Sequence[int], cfg: IRLConfig,
                 dtype: torch.dtype) -> None:
        self.cfg, self.dtype, self.dim = cfg, dtype, data.dim
        specs = _check_methods(methods, data)
        self.pairs = [(s, int(seed)) for seed in seeds for s in specs]
        tr_idx, va_idx = split_indices(data.n, cfg.val_fraction, cfg.split_seed)
        self.n_tr, self.n_va = len(tr_idx), len(va_idx)
        x_tr, self.y_tr = _tensors(data, tr_idx, dtype)
        self.x_tr_flat = x_tr.reshape(self.n_tr, -1)                       # (N, 2d): one gather per pair
        self.x_tr_rows = x_tr.reshape(-1, data.dim)                        # (2N, d), +,- interleaved
        self.x_va_rows = _tensors(data, va_idx, dtype)[0].reshape(-1, data.dim)
        n = len(self.pairs)
        self.kind = np.array([{None: 0, "gt": 1, "margin": 2}[s.failures] for s, _ in self.pairs])
        self.base_path = np.arange(n)
        self.fail_path = np.full(n, -1)
        fa_runs = np.flatnonzero(self.kind > 0)
        self.fail_path[fa_runs] = n + np.arange(len(fa_runs))
        inits = [_init_run(seed, s, data.dim, cfg, dtype) for s, seed in self.pairs]
        paths = [b for b, _ in inits] + [inits[i][1] for i in fa_runs]
        self.bank = {k: torch.stack([p[k] for p in paths]) for k in paths[0]}  # best-validation states
        self.stopper = _EarlyStopper(n, cfg.patience, cfg.min_delta)
        self.hist = [_history() for _ in range(n)]
        self.layout = self._layout(np.arange(n))
        src = torch.as_tensor(self.layout.slot_path)
        self.params = {k: self._pack(k, v, src) for k, v in self.bank.items()}
        self.opt = self._adam()
        self.penalty_parts = self._penalty_parts()
        self._signs = torch.tensor([1.0, -1.0], dtype=dtype)             # dDelta/dR(o+), dDelta/dR(o-)

    # -- layout, packing, compaction --
    def _layout(self, runs: np.ndarray) -> _Layout:
        runs = np.array(sorted(runs, key=lambda r: (self.kind[r] > 0, r)))     # FA runs last
        seeds = sorted({self.pairs[r][1] for r in runs})
        by_seed = [[r for r in runs if self.pairs[r][1] == sd] for sd in seeds]
        slots = [[self.base_path[r] for r in rs] + [self.fail_path[r] for r in rs if self.kind[r] > 0]
                 for rs in by_seed]
        k = group_width([len(sl) for sl in slots], torch.get_num_threads())
        groups = [(si, sl[j:j + k]) for si, sl in enumerate(slots) for j in range(0, len(sl), k)]
        slot_path = np.full(len(groups) * k, -1)
        for g, (_, sl) in enumerate(groups):
            slot_path[g * k:g * k + len(sl)] = sl
        where = {int(p): i for i, p in enumerate(slot_path) if p >= 0}
        fa = self.kind[runs] > 0
        n_fa = int(fa.sum())
        fail_slot = [where[int(self.fail_path[r])] for r in runs[fa]]
        is_mm = torch.as_tensor([self.pairs[r][0].base == "mm" for r in runs])
        a_base = np.zeros((len(runs), len(slot_path)))
        a_base[np.arange(len(runs)), [where[int(self.base_path[r])] for r in runs]] = 1.0
        a_fail = np.zeros((n_fa, len(slot_path)))
        a_fail[np.arange(len(a_fail)), fail_slot] = 1.0
        a_all = a_base.copy()
        a_all[fa] += a_fail
        as_t = (lambda a: torch.as_tensor(a, dtype=self.dtype))
        return _Layout(
            assign=as_t(a_all), slot_base=as_t(a_base.T), slot_fail=as_t(a_fail.T),
            fail_block=_fail_block(slot_path >= len(self.pairs), k),
            runs=runs, seeds=seeds, group_seed=torch.as_tensor([si for si, _ in groups]), k=k,
            slot_path=slot_path,
            fail_slot=torch.as_tensor(fail_slot, dtype=torch.long),
            run_seed=torch.as_tensor([seeds.index(self.pairs[r][1]) for r in runs]),
            n_fa=n_fa, is_mm=is_mm[:, None], is_mm_fa=is_mm[len(runs) - n_fa:, None],
            is_gt_fa=torch.as_tensor(self.kind[runs][fa] == 1)[:, None])

    def _pack(self, name: str, slots_src: Tensor, src: Tensor) -> Tensor:
        """Grouped storage whose slot i holds ``slots_src[src[i]]`` (``-1`` = zeros)."""
        padded = torch.cat([slots_src, torch.zeros_like(slots_src[:1])])
        picked = padded[torch.where(src < 0, len(slots_src), src)]
        lay = self.layout
        return from_slots(name, picked.view(lay.n_groups, lay.k, *slots_src.shape[1:]))

    def _flat_slots(self, name: str, t: Tensor) -> Tensor:
        """Grouped storage -> ``(G*K, *path_shape)``."""
        s = to_slots(name, t)
        return s.reshape(-1, *s.shape[2:])

    def _adam(self, old: _FusedAdam | None = None, src: Tensor | None = None) -> _FusedAdam:
        """Adam over the grouped parameters; with ``old``, its moments repacked like the parameters."""
        cfg = self.cfg
        moments = None
        if old is not None:
            moments = [{k: self._pack(k, self._flat_slots(k, m[k]), src) for k in self.params}
                       for m in (old.exp_avg, old.exp_avg_sq)]
        return _FusedAdam(self.params, cfg.lr, (cfg.adam_beta1, cfg.adam_beta2), cfg.adam_eps, moments,
                          None if old is None else old.t.clone())

    def compact(self, keep: np.ndarray) -> bool:
        """Drop finished runs (their best states are in the bank); False when no run is left."""
        old, runs = self.layout, self.layout.runs[keep]
        if len(runs) == 0:
            return False
        old_where = {int(p): i for i, p in enumerate(old.slot_path) if p >= 0}
        self.layout = self._layout(runs)
        src = torch.as_tensor([old_where[int(p)] if p >= 0 else -1 for p in self.layout.slot_path])
        self.params = {k: self._pack(k, self._flat_slots(k, v), src) for k, v in self.params.items()}
        self.opt = self._adam(self.opt, src)
        self.penalty_parts = self._penalty_parts()
        return True

    def save_best(self, improved: np.ndarray) -> None:
        """Copy the current parameters of improved runs into the best-state bank."""
        lay = self.layout
        runs = lay.runs[improved]
        if len(runs) == 0:
            return
        paths = np.concatenate([self.base_path[runs], self.fail_path[runs][self.kind[runs] > 0]])
        where = {int(p): i for i, p in enumerate(lay.slot_path) if p >= 0}
        pos = torch.as_tensor([where[int(p)] for p in paths])
        with torch.no_grad():
            for k, v in self.params.items():
                self.bank[k][torch.as_tensor(paths)] = self._flat_slots(k, v)[pos]

    # -- rewards and losses --
    def run_rewards(self, r_groups: Tensor) -> Tensor:
        """R = R_D + R_F of each run, ``(E, n)``, from grouped path rewards ``(G, n, K)`` (one small
        GEMM with the 0/1 assignment; exact: each output adds a run's two slots and zeros)."""
        return self.layout.assign @ r_groups.permute(0, 2, 1).reshape(-1, r_groups.shape[1])

    def failure_sets(self, delta: Tensor, r_plus: Tensor, r_minus: Tensor, y_plus: Tensor | None,
                     y_minus: Tensor | None, u: Tensor, sched: RoundSchedule) -> tuple[Tensor, Tensor]:
        """F_t and S_t of the FA runs (rows = the layout's ``fa``): supervised for *_gt, margin for
        *_margin runs. The labels ``y_plus``, ``y_minus`` may be None when no *_gt run is active."""
        lay, cfg = self.layout, self.cfg
        f_t = _by_mode(lay.gt_mode_fa, lay.is_gt_fa,
                       lambda: supervised_failure_set(cfg, delta, r_plus, r_minus, y_plus, y_minus, sched),
                       lambda: margin_failure_set(cfg, delta, sched))
        return f_t, fl.sample_failures(f_t, u, sched.p_t)

    def _base_loss(self, delta: Tensor) -> Tensor:
        """L_base (Eq. 1 or 2) of every active run, ``(E,)``."""
        cfg, lay = self.cfg, self.layout
        return _by_mode(lay.mm_mode, lay.is_mm[:, 0], lambda: ls.margin_loss(delta, cfg.margin),
                        lambda: ls.maxent_loss(delta, cfg.tau))

    def _loss_grads(self, delta: Tensor, mode: str, is_mm: Tensor, margin: float, tau: float,
                    grad_scale: float) -> Tensor:
        """``grad_scale`` times d/dDelta of the per-pair terms of Eq. 1 (``is_mm`` rows, margin M) /
        Eq. 2 (the others, tau)."""
        return _by_mode(mode, is_mm, lambda: ls.hinge_grad(delta, margin, grad_scale),
                        lambda: ls.maxent_grad(delta, tau, grad_scale))

    def _loss_terms(self, delta: Tensor, mode: str, is_mm: Tensor, margin: float, tau: float) -> Tensor:
        """The per-pair terms of Eq. 1 / Eq. 2 themselves (for the log, once per epoch)."""
        return _by_mode(mode, is_mm, lambda: ls.hinge_terms(delta, margin), lambda: ls.maxent_terms(delta, tau))

    def _penalty_parts(self) -> list[tuple[Tensor, Tensor, Tensor | None]]:
        """(gradient, weight, mask) per weight tensor for :meth:`add_penalty_grad`, built per layout.

        When the failure paths fill a regular block of groups and slots (:func:`_fail_block`; the full
        grid, whatever K) the first two are views of that block and the mask is None; otherwise they
        are the whole tensors and the mask is 1.0 on failure slots, 0.0 elsewhere.
        """
        lay, parts = self.layout, []
        if lay.n_fa == 0:
            return parts
        mask = torch.zeros(lay.n_groups * lay.k, dtype=self.dtype)
        mask[lay.fail_slot] = 1.0
        mask = mask.view(lay.n_groups, lay.k)
        masks = {"w1": mask[:, None, :, None], "w2": mask[:, :, None], "w": mask[:, None, :]}
        for name in weight_names(self.cfg.head):
            grad, weight = self.opt.grads[name], self.params[name]
            if lay.fail_block is None:
                parts.append((grad, weight, masks[name]))
                continue
            groups, block = lay.fail_block
            slots = (groups, slice(None), block) if name != "w2" else (groups, block)   # w2 (G, K, H)
            parts.append((grad[slots], weight[slots], None))
        return parts

    @torch.no_grad()
    def _penalty(self) -> Tensor:
        """||w_F||^2 of each FA run's failure path, ``(E_F,)`` (value only; the gradient is added by
        :meth:`add_penalty_grad`)."""
        lay, p = self.layout, self.params
        if self.cfg.head == "linear":
            sq = p["w"].square().sum(1)
        else:  # reduce over d first (contiguous rows), then over the hidden units
            g, d, k, hid = p["w1"].shape
            col = p["w1"].view(g, d, k * hid).square().sum(1)
            sq = col.view(g, k, hid).sum(-1) + p["w2"].square().sum(2)
        return sq.reshape(-1)[lay.fail_slot]

    def w_fail_sq(self) -> np.ndarray:
        """||w_F||^2 per active run (0 for baselines), for the history."""
        out = torch.zeros(self.layout.n_runs, dtype=torch.float64)
        if self.layout.n_fa:
            out[self.layout.fa] = self._penalty().to(torch.float64)
        return out.numpy()

    @torch.no_grad()
    def add_penalty_grad(self, lambda_t: float) -> None:
        """Gradient of lambda_t/2 ||w_F||^2 (Eq. 3), lambda_t * w_F on failure slots, added in closed
        form (one fused pass instead of autograd through a square of every weight), on the failure
        slots only when they form one block (:meth:`_penalty_parts`)."""
        for grad, weight, mask in self.penalty_parts:
            if mask is None:
                grad.add_(weight, alpha=lambda_t)
            else:
                grad.addcmul_(weight, mask, value=lambda_t)

    @torch.no_grad()
    def step(self, xb: Tensor, y_fa: tuple[Tensor, Tensor] | None, u_fa: Tensor, sched: RoundSchedule,
             sets: tuple[Tensor, Tensor] | None) -> tuple[Tensor, ...]:
        """One Adam step of Eq. 3 for every active run, with the gradient worked out by hand.

        Eq. 1-2 and L_fail depend on the rewards only through the margins, so the step computes
        dL/dDelta per pair in closed form (``ls.hinge_grad``, ``ls.maxent_grad``), routes it to the paths
        (L_base -> R_D, L_fail -> R_F with ``route_gradients``; both to both otherwise), turns it
        into dL/dR on the (o+, o-) rows and backpropagates through the grouped heads
        (:func:`grouped_backward`); lambda_t/2 ||w_F||^2 adds lambda_t w_F (:meth:`add_penalty_grad`).
        This is the gradient autograd gives :func:`train_one` (tests/test_train.py: equal runs in
        float64), without building a graph of ~200 small ops per step.

        ``y_fa`` are the FA runs' labels of o+ and o- ``(E_F, b)`` each (None when no run uses them),
        ``u_fa (E_F, b)`` their failure-sampling uniforms and ``sets`` (``mining="epoch"``) their
        epoch-level F_t, S_t, all already in this minibatch's order. Returns what the epoch's log
        needs (:meth:`_epoch_log` evaluates the loss terms once per epoch): the margins ``(E, b)`` and,
        with FA runs, theirs, the weights of Eq. 3's mean over S_t, F_t and S_t ``(E_F, b)``.
        """
        lay, cfg = self.layout, self.cfg
        r_groups, hidden = grouped_forward(self.params, xb, return_hidden=True)
        r_plus, r_minus = self.run_rewards(r_groups).view(lay.n_runs, -1, 2).unbind(-1)
        delta = r_plus - r_minus                              # = d_base = d_fail in value (Eq. 1-3)
        # dL_base/dDelta (the 1/B of Eq. 1-2's mean folded into the derivative)
        g_base = self._loss_grads(delta, lay.mm_mode, lay.is_mm, cfg.margin, cfg.tau, 1.0 / delta.shape[-1])
        if not lay.n_fa:
            d_r = self._path_grads(g_base, None)
            logged: tuple[Tensor, ...] = (delta,)
        else:
            fa = lay.fa
            d_fa = delta[fa]
            if sets is not None:
                f_t, s_t = sets
            else:
                f_t, s_t = self.failure_sets(d_fa, r_plus[fa], r_minus[fa], *(y_fa or (None, None)), u_fa, sched)
            g_f = self._loss_grads(d_fa, lay.mm_mode_fa, lay.is_mm_fa, cfg.margin_fail, cfg.tau_fail,
                                   sched.lambda_t * cfg.w_fail)
            weights = ls.masked_mean_weights(s_t, cfg.fail_reduction, delta.dtype)
            g_fail = g_f.mul_(weights)                        # d(lambda_t L_fail)/dDelta
            if cfg.route_gradients:                           # L_base -> R_D only, L_fail -> R_F only
                d_r = self._path_grads(g_base, g_fail)
            else:                                             # both losses reach both paths
                g_both = g_base.clone()
                g_both[fa] += g_fail
                d_r = self._path_grads(g_both, g_both[fa])
            logged = (delta, d_fa, weights, f_t, s_t)
        grouped_backward(self.params, xb, hidden, d_r, self.opt.grads)
        self.add_penalty_grad(sched.lambda_t * cfg.penalty_scale)
        self.opt.step()
        return logged

    def _path_grads(self, g_base: Tensor, g_fail: Tensor | None) -> Tensor:
        """dL/dR ``(G, 2b, K)`` on the interleaved (o+, o-) rows from dL/dDelta of each run's base path
        ``(E, b)`` and failure path ``(E_F, b)`` (Delta = R(o+) - R(o-): +g on o+, -g on o-)."""
        lay = self.layout
        per_slot = lay.slot_base @ g_base                                  # (G*K, b), exact (0/1)
        if g_fail is not None:
            per_slot.addmm_(lay.slot_fail, g_fail)
        d_r = per_slot[..., None] * self._signs                            # (G*K, b, 2)
        return d_r.view(lay.n_groups, lay.k, -1).transpose(1, 2)

    @torch.no_grad()
    def full_rewards(self, rows: Tensor) -> Tensor:
        """R = R_D + R_F of every active run on shared interleaved rows ``(2n, d)`` -> ``(E, n, 2)``."""
        params = {k: v.detach() for k, v in self.params.items()}
        chunk = 2 * self.cfg.eval_chunk
        r = torch.cat([grouped_forward(params, rows[s:s + chunk]) for s in range(0, rows.shape[0], chunk)], 1)
        return self.run_rewards(r).view(self.layout.n_runs, -1, 2)

    def val_losses(self) -> np.ndarray:
        if self.n_va == 0:
            return np.full(self.layout.n_runs, np.nan)
        r = self.full_rewards(self.x_va_rows)
        return self._base_loss(r[..., 0] - r[..., 1]).numpy().astype(np.float64)

    def mine_epoch(self, u_fa: Tensor, sched: RoundSchedule) -> tuple[Tensor, Tensor]:
        """``mining="epoch"``: F_t, S_t of the FA runs over all training pairs, ``(E_F, N)`` each."""
        r_plus, r_minus = self.full_rewards(self.x_tr_rows)[self.layout.fa].unbind(-1)
        y_plus, y_minus = (y.expand(self.layout.n_fa, -1) for y in self.y_tr.unbind(-1))
        return self.failure_sets(r_plus - r_minus, r_plus, r_minus, y_plus, y_minus, u_fa, sched)

    def train_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, RoundSchedule]:
        """One epoch of Alg. 1 for all active runs: mean data terms of Eq. 3, |F_t|, |S_t| per run.

        Everything a step reads per pair (row indices, labels, sampling uniforms, epoch-level failure
        sets) is put in minibatch order once per epoch and cut into per-step views, and the per-step
        log is reduced once at the end, so a step spends no operations on bookkeeping.
        """
        lay, cfg, bsz = self.layout, self.cfg, self.cfg.batch_size
        sched = round_schedule(cfg, epoch)
        streams = [epoch_streams(sd, epoch, self.n_tr) for sd in lay.seeds]
        perm_s = torch.as_tensor(np.stack([p for p, _ in streams]))                               # (S, N)
        rows = _minibatch_rows(perm_s[lay.group_seed], bsz)          # per step: (G*b,) pair indices
        n_steps = len(rows)
        fa_seed = lay.run_seed[lay.fa]
        perm_fa = perm_s[fa_seed]                                                                 # (E_F, N)
        u_fa = torch.as_tensor(np.stack([u for _, u in streams]), dtype=self.dtype)[fa_seed]       # (E_F, N)
        epoch_sets = self.mine_epoch(u_fa, sched) if (cfg.mining == "epoch" and lay.n_fa) else None
        u_steps = u_fa.gather(1, perm_fa).split(bsz, 1)
        y_steps = ([None] * n_steps if not (lay.n_fa and lay.gt_mode_fa != "none") else
                   list(zip(*(y.split(bsz, 1) for y in self.y_tr[perm_fa].unbind(-1)))))
        set_steps = ([None] * n_steps if epoch_sets is None else
                     list(zip(*(m.gather(1, perm_fa).split(bsz, 1) for m in epoch_sets))))
        x, g, d = self.x_tr_flat, lay.n_groups, self.dim
        logged = [self.step(x.index_select(0, rows[s]).view(g, -1, d), y_steps[s], u_steps[s], sched,
                            set_steps[s]) for s in range(n_steps)]
        return self._epoch_log(logged, sched)

    def _epoch_log(self, logged: list[tuple[Tensor, ...]],
                   sched: RoundSchedule) -> tuple[np.ndarray, np.ndarray, np.ndarray, RoundSchedule]:
        """Per-run mean over the epoch's steps of L_base + lambda_t L_fail, and |F_t|, |S_t| summed over
        the epoch, from the steps' margins (the mean of each step's mean: the last minibatch may be
        short). The terms are elementwise in Delta, so evaluating them once on all of the epoch's
        margins gives the values the steps would have."""
        lay, cfg, n_steps = self.layout, self.cfg, len(logged)
        cols = [torch.cat(col, -1) for col in zip(*logged)]
        first, last = logged[0][0].shape[-1], logged[-1][0].shape[-1]
        per_pair = torch.full((cols[0].shape[-1],), 1.0 / first, dtype=self.dtype)  # 1/b of its minibatch
        per_pair[-last:] = 1.0 / last
        train = self._loss_terms(cols[0], lay.mm_mode, lay.is_mm, cfg.margin, cfg.tau) @ per_pair
        counts = np.zeros((2, lay.n_runs))
        if lay.n_fa:
            d_fa, weights, f_t, s_t = cols[1:]
            terms_f = self._loss_terms(d_fa, lay.mm_mode_fa, lay.is_mm_fa, cfg.margin_fail, cfg.tau_fail)
            train[lay.fa] += (sched.lambda_t * cfg.w_fail) * (terms_f * weights).sum(-1)
            counts[:, lay.fa] = torch.stack([f_t.sum(-1), s_t.sum(-1)]).numpy()
        return (train / n_steps).numpy(), counts[0], counts[1], sched

    def result(self, i: int) -> TrainedRun:
        spec, seed = self.pairs[i]
        base = {k: v[self.base_path[i]] for k, v in self.bank.items()}
        fail = {k: v[self.fail_path[i]] for k, v in self.bank.items()} if self.fail_path[i] >= 0 else None
        return _finish_run(spec.name, seed, base, fail, self.hist[i], int(self.stopper.best_epoch[i]),
                           float(self.stopper.best[i]), self.cfg)


def train_grid(data: PreferenceData, cfg: IRLConfig = IRLConfig(), methods: Sequence[str] = METHOD_NAMES,
               seeds: Iterable[int] | None = None, dtype: torch.dtype = torch.float32,
               progress: Callable[[int, int], None] | None = None, threads: int | None = None) -> GridResult:
    """Train every (method, seed) at once as one batched ensemble (stacked parameters).

    Each run keeps its own init, minibatch order, failure sampling and early stopping; finished runs
    leave the stack with their best-validation parameters. Seeds default to ``range(cfg.n_seeds)``.
    ``progress(epoch, n_active)`` is called after every epoch. ``threads``: torch threads for this call
    only (None = unchanged). Results equal :func:`train_one` per run up to floating-point rounding
    (float64 agrees to ~1e-12; long float32 runs can drift apart where a pair sits exactly at a
    failure threshold, since failure selection is discrete).
    """
    with torch_threads(threads):
        return _train_grid(data, cfg, methods, seeds, dtype, progress)


def _train_grid(data: PreferenceData, cfg: IRLConfig, methods: Sequence[str], seeds: Iterable[int] | None,
                dtype: torch.dtype, progress: Callable[[int, int], None] | None) -> GridResult:
    t0 = time.perf_counter()
    g = _Grid(data, methods, list(range(cfg.n_seeds) if seeds is None else seeds), cfg, dtype)
    for epoch in range(cfg.max_epochs):
        runs = g.layout.runs
        train_loss, n_fail, n_samp, sched = g.train_epoch(epoch)
        val, w_sq = g.val_losses(), g.w_fail_sq()
        for j, run in enumerate(runs):
            spec, seed = g.pairs[run]
            if not np.isfinite(train_loss[j]) or (g.n_va and not np.isfinite(val[j])):
                raise _nonfinite_error(spec.name, seed, epoch, "loss", cfg)
            _record(g.hist[run], epoch, train_loss[j], val[j], n_fail[j], n_samp[j], g.n_tr, w_sq[j], sched,
                    spec.failures is not None)
        improved, stop = g.stopper.update(runs, val, epoch)
        g.save_best(improved)
        if progress is not None:
            progress(epoch, len(runs))
        if stop.any() and not g.compact(~stop):
            break
    runs = [g.result(i) for i in range(len(g.pairs))]
    return GridResult(runs, cfg, time.perf_counter() - t0, g.n_tr, g.n_va)
