"""Algorithm 1 for many (method, seed) runs at once: the batched grid behind the pipeline's Table 1.

Every run is the run :func:`fairl_lib.irl.fairl.train_one` trains alone (same init, minibatch order,
failure sampling, Eq. 3 and early stopping; tests/test_irl_grid_vs_fairl.py checks them equal in float64). What
differs is only how the arithmetic is organised:

- Runs of one seed share their minibatches, so the paths of a seed go through batched GEMMs
  ``(2B, d) @ (d, K*H)``, K paths per group (:func:`group_width` balances padding against how the
  groups split over the threads, again whenever runs finish); finished runs leave the stack with
  their best-validation state. Paths of one head share this storage (:class:`_Store`); a failure head
  other than the base head (``IRLConfig.fail_head``) puts the failure paths in a second store with
  GEMMs of their own, and R = R_D + R_F adds the two stores' outputs.
- The gradient is worked out by hand instead of by autograd: dL/dDelta of Eq. 1-2 and of L_fail in
  closed form (:func:`hinge_grad`, :func:`maxent_grad`, :func:`masked_mean_weights`), routed to the
  paths, then backpropagated through the heads (:func:`grouped_backward`); lambda_t/2 ||w_F||^2
  (all weight matrices of the failure path, biases excluded) adds lambda_t w_F.
- Adam is torch's fused CPU kernel called directly (:class:`_FusedAdam`).

The paper's definitions stay in reward.py (paths), losses.py (Eq. 1-3) and failures.py (Alg. 1
lines 3-10, 13); this module only batches them.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fairl_lib.irl import failures, losses
from fairl_lib.irl.common import (
    GridResult,
    TrainedRun,
    finish_run,
    new_history,
    nonfinite_error,
    record_epoch,
    torch_threads,
)
from fairl_lib.irl.config import IRLConfig
from fairl_lib.irl.data import PreferenceData, epoch_streams, pair_tensors, split_indices
from fairl_lib.irl.failures import RoundSchedule, round_schedule
from fairl_lib.irl.methods import METHOD_NAMES, MethodSpec, check_methods
from fairl_lib.irl.reward import init_path, path_generator, weight_names

# --- the gradients of Eq. 1-2 and of the mean over S_t, in closed form ---------------------------

@functools.lru_cache(maxsize=256)
def _scalar(value: float, dtype: torch.dtype) -> Tensor:
    """A 0-dim constant, made once per (value, dtype) (read-only: never written to)."""
    return torch.tensor(value, dtype=dtype)


def hinge_grad(delta: Tensor, margin: float, grad_scale: float = 1.0) -> Tensor:
    """``grad_scale`` times d/dDelta of ``ls.hinge_terms`` (Eq. 1): -1 where M - Delta > 0, else 0 (relu's
    gradient, 0 at the kink, as autograd gives), in one op (autograd's ``threshold_backward``).

    For the batched trainer, which needs no graph; ``grad_scale`` folds a constant factor of the
    caller (the 1/B of the mean, lambda_t) into the same op.
    """
    return torch.ops.aten.threshold_backward(_scalar(-grad_scale, delta.dtype), margin - delta, 0.0)


def maxent_grad(delta: Tensor, tau: float, grad_scale: float = 1.0) -> Tensor:
    """``grad_scale`` times d/dDelta of ``ls.maxent_terms`` (Eq. 2): -sigma(-Delta/tau) / tau.

    Computed by autograd's own softplus backward (``aten.softplus_backward``), so it matches
    ``ls.maxent_terms`` under autograd including softplus's linear region: softplus(x) = x for
    x > 20 (torch's default threshold), where the slope is 1 instead of sigma(x).
    """
    return torch.ops.aten.softplus_backward(_scalar(-grad_scale / tau, delta.dtype), delta / -tau, 1.0, 20.0)


def masked_mean_weights(mask: Tensor, reduction: str = "subset", dtype: torch.dtype = torch.float32) -> Tensor:
    """Per-entry weights of ``ls.masked_mean`` (the mean over S_t in Eq. 3; = its derivative w.r.t. ``values``): ``mask / |S_t|``
    (``"subset"``, 0 everywhere for an empty mask) or ``mask / B`` (``"batch"``)."""
    if reduction not in losses.FAIL_REDUCTIONS:
        raise ValueError(f"Unknown failure-loss reduction {reduction!r}; valid: {', '.join(losses.FAIL_REDUCTIONS)}")
    if reduction == "batch":
        return mask.to(dtype).div_(mask.shape[-1])
    return torch.div(mask, mask.sum(-1, keepdim=True, dtype=dtype).clamp_min_(1.0))


# --- many paths in grouped storage: forward and backward by hand ---------------------------------

def to_slots(name: str, t: Tensor) -> Tensor:
    """Grouped storage -> ``(G, K, *path_shape)``: the path in group g, slot k is ``[g, k]``."""
    if name == "w1":
        return t.permute(0, 2, 1, 3)
    if name == "w":
        return t.permute(0, 2, 1)
    return t


def from_slots(name: str, t: Tensor) -> Tensor:
    """``(G, K, *path_shape)`` -> grouped storage (contiguous), the inverse of :func:`to_slots`."""
    return to_slots(name, t).contiguous()


def grouped_forward(params: Mapping[str, Tensor], h: Tensor,
                    return_hidden: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
    """R(o) of G groups of K paths each, every group on its own inputs; one batched GEMM.

    Grouped storage (leading group axis G, slot axis K): linear ``w (G, d, K)``, ``b (G, K)``;
    mlp ``w1 (G, d, K, H)``, ``b1 (G, K, H)``, ``w2 (G, K, H)``, ``b2 (G, K)``. The K paths of a
    group share the inputs ``h (G, n, d)`` (in training: the runs of one seed share a minibatch), so
    the first layer is ``(n, d) @ (d, K*H)`` per group. ``h (n, d)`` feeds the same inputs to every
    group. Returns ``(G, n, K)``; with ``return_hidden`` (3-d ``h`` only) also the hidden activations
    ``relu(z) (G, n, K*H)`` of the mlp (None for linear) that :func:`grouped_backward` needs.
    """
    if "w" in params:
        w, b = params["w"], params["b"]
        if h.dim() == 2:
            g, d, k = w.shape
            return (h @ w.permute(1, 0, 2).reshape(d, g * k)).view(-1, g, k).transpose(0, 1) + b[:, None, :]
        r = torch.baddbmm(b[:, None, :], h, w)
        return (r, None) if return_hidden else r
    w1, b1, w2, b2 = params["w1"], params["b1"], params["w2"], params["b2"]
    g, d, k, hid = w1.shape
    if h.dim() == 2:  # shared rows (evaluation): two plain GEMMs over all G*K paths
        a = torch.addmm(b1.reshape(1, -1), h, w1.permute(1, 0, 2, 3).reshape(d, g * k * hid)).relu_()
        return torch.addmm(b2.reshape(1, -1), a, _block_diagonal(w2)).view(-1, g, k).transpose(0, 1)
    a = torch.baddbmm(b1.view(g, 1, k * hid), h, w1.view(g, d, k * hid)).relu_()
    r = (a.view(g, -1, k, hid) * w2[:, None]).sum(-1) + b2[:, None, :]
    return (r, a) if return_hidden else r


def _block_diagonal(w2: Tensor) -> Tensor:
    """``(G*K*H, G*K)`` matrix with path p's output weights ``w2[p] (H,)`` in rows p*H..p*H+H-1 of
    column p: the second layer of every path as one GEMM (the zeros cost less than a (n, G, K, H)
    elementwise product and sum)."""
    g, k, hid = w2.shape
    out = w2.new_zeros(g * k, hid, g * k)
    torch.diagonal(out, dim1=0, dim2=2).copy_(w2.reshape(g * k, hid).T)
    return out.view(g * k * hid, g * k)


def grouped_backward(params: Mapping[str, Tensor], h: Tensor, hidden: Tensor | None, d_r: Tensor,
                     grads: Mapping[str, Tensor]) -> None:
    """Gradients of a scalar loss w.r.t. the grouped parameters, given ``d_r = dLoss/dR (G, n, K)``.

    Backpropagation through :func:`grouped_forward` (3-d ``h``) by hand, written into the buffers
    ``grads`` (same shapes as ``params``), so the batched trainer builds no autograd graph:
    linear ``dw = h^T d_r``, ``db = sum_n d_r``; mlp ``db2 = sum_n d_r``, ``dw2 = sum_n a d_r``,
    ``dz = (d_r w2) * 1[a > 0]`` (relu's gradient, 0 at 0 as in autograd), ``db1 = sum_n dz``,
    ``dW1 = h^T dz``. Tested against autograd (tests/test_irl_grid.py).
    """
    ht = h.transpose(1, 2)
    if "w" in params:
        torch.bmm(ht, d_r, out=grads["w"])
        torch.sum(d_r, 1, out=grads["b"])
        return
    g, d, k, hid = params["w1"].shape
    a, d_r = hidden.view(g, -1, k, hid), d_r.contiguous()
    torch.sum(d_r, 1, out=grads["b2"])
    torch.sum(a * d_r[..., None], 1, out=grads["w2"])
    dz = torch.ops.aten.threshold_backward(d_r[..., None] * params["w2"][:, None], a, 0.0)  # relu's own backward
    torch.sum(dz, 1, out=grads["b1"])
    torch.bmm(ht, dz.view(g, -1, k * hid), out=grads["w1"].view(g, d, k * hid))


# --- the batched ensemble ------------------------------------------------------------------------

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


def _init_run(seed: int, spec: MethodSpec, dim: int, cfg: IRLConfig, dtype: torch.dtype):
    base = init_path(dim, cfg.head, cfg.hidden, path_generator(seed, "base"), dtype)
    fail = None
    if spec.failures:
        fail = init_path(dim, cfg.path_head("failure"), cfg.hidden, path_generator(seed, "failure"), dtype)
    return base, fail


def group_width(slot_counts: Sequence[int], threads: int = 1) -> int:
    """Slots per GEMM group K for seeds holding ``slot_counts`` paths each.

    A seed's paths are cut into G_s = ceil(c_s / K) groups of K slots (the last one padded with empty
    slots). The batched GEMMs of a step split their G = sum_s G_s groups over the ``threads`` torch
    threads, so a step costs about ceil(G / threads) * K slots of GEMM time; K minimises that, ties
    going to the wider K (fewer groups). With one thread this is the least padding; with more, narrower
    groups can keep every thread busy (benchmarks/README.md has the measurements).
    """
    counts = [c for c in slot_counts if c > 0]
    if not counts:
        raise ValueError("group_width needs at least one seed with a path")
    if threads < 1:
        raise ValueError(f"group_width needs threads >= 1; got {threads}")
    cost = {k: -(-sum(-(-c // k) for c in counts) // threads) * k for k in range(1, max(counts) + 1)}
    return min(cost, key=lambda k: (cost[k], -k))


@dataclass
class _Part:
    """Where one store's paths (:class:`_Store`) sit in its grouped parameter tensors.

    Runs of one seed share their minibatches, so the paths of a seed can share one GEMM. A seed's
    paths in the store (base paths of its runs, then the failure paths of its FA runs) fill groups of
    K slots (:func:`group_width`); group g reads the minibatch of seed ``group_seed[g]`` and is padded
    with empty slots to K; slots are numbered 0..G*K-1 group by group. A run's two paths may sit in
    different groups of its seed, or in different stores: all see the same rows, so R = R_D + R_F is
    still a sum over the same outputs.
    """

    group_seed: Tensor          # (G,) position in the layout's ``seeds`` of each group's seed
    k: int                      # slots per group
    slot_path: np.ndarray       # (G*K,) global path id in each slot, -1 = empty
    assign: Tensor              # (E, G*K) 1 on each run's slots here: R = sum over stores of assign @ slot rewards
    slot_base: Tensor | None    # (G*K, E) 1 on each run's base slot (slot gradients = slot_base @ run
                                # gradients); None when the store holds no base path
    slot_fail: Tensor | None    # (G*K, E_F) 1 on each FA run's failure slot; None: no failure path here
    fail_slot: Tensor           # (E_F,) flat slot (of G*K) of each FA run's failure path (empty: none here)
    fail_block: tuple[slice, slice] | None  # (groups, slots) holding exactly the failure paths (_fail_block)

    @property
    def n_groups(self) -> int:
        return len(self.group_seed)


@dataclass
class _Layout:
    """The active runs, in the order of every per-run ``(E, ...)`` tensor, and where their paths sit
    (``parts``, one per store of the grid; None for a store none of whose paths is active)."""

    runs: np.ndarray          # (E,) run indices into the grid: baselines, then FA runs, each ascending
    seeds: list[int]          # (S,) the active seeds
    run_seed: Tensor          # (E,) position in ``seeds`` of each run's seed
    n_fa: int                 # E_F: the FA runs, which are the last E_F of the E runs
    is_mm: Tensor             # (E, 1) bool: Eq. 1 (mm) or Eq. 2 (me) base loss, per row
    is_mm_fa: Tensor          # (E_F, 1) bool
    is_gt_fa: Tensor          # (E_F, 1) bool: supervised (*_gt) or margin (*_margin) failures
    parts: list[_Part | None]  # per store of the grid

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


class _Store:
    """The paths of one head in grouped storage: their parameters, Adam state and best-state bank.

    When both paths of a run have the same head the grid has one store, holding every path (a seed's
    base paths, then its failure paths, share the GEMMs). With ``cfg.fail_head`` other than
    ``cfg.head`` the base paths fill one store and the failure paths a second, each with its own
    GEMMs. Path ids are global (run i's base path is i, the j-th FA run's failure path n + j); the
    bank row of path p is p - ``offset``. ``params``, ``opt`` and ``penalty_parts`` follow the grid's
    layout (:meth:`_Grid.compact`); they are empty when no path of the store is active.
    """

    def __init__(self, head: str, offset: int, paths: list[dict[str, Tensor]]) -> None:
        self.head, self.offset, self.n_paths = head, offset, len(paths)
        self.bank = {k: torch.stack([p[k] for p in paths]) for k in paths[0]}  # best-validation states
        self.params: dict[str, Tensor] = {}
        self.opt: _FusedAdam | None = None
        self.penalty_parts: list[tuple[Tensor, Tensor, Tensor | None]] = []

    def holds(self, path: int) -> bool:
        return self.offset <= path < self.offset + self.n_paths


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
    ``Optimizer.step``'s per-call Python (hooks, grouping by device and dtype), which is not small
    next to the kernel for the grid's small tensors. ``grads`` are buffers the caller overwrites
    before every :meth:`step` (no autograd, no zero_grad). tests/test_irl_grid_vs_fairl.py checks the grid against
    ``fairl.train_one``, which uses plain ``torch.optim.Adam``.
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
    """A batched grid: run specs, path stores (grouped parameters + Adam + best-state bank), early
    stopping, histories."""

    def __init__(self, data: PreferenceData, methods: Sequence[str], seeds: Sequence[int], cfg: IRLConfig,
                 dtype: torch.dtype) -> None:
        self.cfg, self.dtype, self.dim = cfg, dtype, data.dim
        specs = check_methods(methods, data.has_labels)
        self.pairs = [(s, int(seed)) for seed in seeds for s in specs]
        tr_idx, va_idx = split_indices(data.n, cfg.val_fraction, cfg.split_seed)
        self.n_tr, self.n_va = len(tr_idx), len(va_idx)
        x_tr, self.y_tr = pair_tensors(data, tr_idx, dtype)
        self.x_tr_flat = x_tr.reshape(self.n_tr, -1)                       # (N, 2d): one gather per pair
        self.x_tr_rows = x_tr.reshape(-1, data.dim)                        # (2N, d), +,- interleaved
        self.x_va_rows = pair_tensors(data, va_idx, dtype)[0].reshape(-1, data.dim)
        n = len(self.pairs)
        self.kind = np.array([{None: 0, "gt": 1, "margin": 2}[s.failures] for s, _ in self.pairs])
        self.base_path = np.arange(n)
        self.fail_path = np.full(n, -1)
        fa_runs = np.flatnonzero(self.kind > 0)
        self.fail_path[fa_runs] = n + np.arange(len(fa_runs))
        inits = [_init_run(seed, s, data.dim, cfg, dtype) for s, seed in self.pairs]
        base, fail = [b for b, _ in inits], [inits[i][1] for i in fa_runs]
        fail_head = cfg.path_head("failure")
        if fail_head == cfg.head or not fail:
            self.stores = [_Store(cfg.head, 0, base + fail)]
        else:
            self.stores = [_Store(cfg.head, 0, base), _Store(fail_head, n, fail)]
        self.stopper = _EarlyStopper(n, cfg.patience, cfg.min_delta)
        self.hist = [new_history() for _ in range(n)]
        self.layout = self._layout(np.arange(n))
        for st, part in self.active:
            src = torch.as_tensor(np.where(part.slot_path >= 0, part.slot_path - st.offset, -1))
            st.params = {k: self._pack(part, k, v, src) for k, v in st.bank.items()}
            st.opt = self._adam(st, part)
            st.penalty_parts = self._penalty_parts(st, part)
        self._signs = torch.tensor([1.0, -1.0], dtype=dtype)             # dDelta/dR(o+), dDelta/dR(o-)

    # -- layout, packing, compaction --
    def _layout(self, runs: np.ndarray) -> _Layout:
        runs = np.array(sorted(runs, key=lambda r: (self.kind[r] > 0, r)))     # FA runs last
        seeds = sorted({self.pairs[r][1] for r in runs})
        by_seed = [[r for r in runs if self.pairs[r][1] == sd] for sd in seeds]
        paths = [[self.base_path[r] for r in rs] + [self.fail_path[r] for r in rs if self.kind[r] > 0]
                 for rs in by_seed]
        fa = self.kind[runs] > 0
        n_fa = int(fa.sum())
        is_mm = torch.as_tensor([self.pairs[r][0].base == "mm" for r in runs])
        parts = [self._part(st, [[p for p in sl if st.holds(p)] for sl in paths], runs, fa) for st in self.stores]
        layout = _Layout(
            runs=runs, seeds=seeds, run_seed=torch.as_tensor([seeds.index(self.pairs[r][1]) for r in runs]),
            n_fa=n_fa, is_mm=is_mm[:, None], is_mm_fa=is_mm[len(runs) - n_fa:, None],
            is_gt_fa=torch.as_tensor(self.kind[runs][fa] == 1)[:, None], parts=parts)
        self.active = [(st, part) for st, part in zip(self.stores, parts) if part is not None]
        return layout

    def _part(self, st: _Store, slots: list[list[int]], runs: np.ndarray, fa: np.ndarray) -> _Part | None:
        """Where the paths ``slots`` (per active seed) of store ``st`` go; None when there are none."""
        if not any(slots):
            return None
        k = group_width([len(sl) for sl in slots], torch.get_num_threads())
        groups = [(si, sl[j:j + k]) for si, sl in enumerate(slots) for j in range(0, len(sl), k)]
        slot_path = np.full(len(groups) * k, -1)
        for g, (_, sl) in enumerate(groups):
            slot_path[g * k:g * k + len(sl)] = sl
        where = {int(p): i for i, p in enumerate(slot_path) if p >= 0}
        base_rows = [j for j, r in enumerate(runs) if st.holds(self.base_path[r])]
        fail_rows = [j for j, r in enumerate(runs[fa]) if st.holds(self.fail_path[r])]
        fail_slot = [where[int(self.fail_path[r])] for r in runs[fa][fail_rows]]
        a_base = np.zeros((len(runs), len(slot_path)))
        a_base[base_rows, [where[int(self.base_path[runs[j]])] for j in base_rows]] = 1.0
        a_fail = np.zeros((int(fa.sum()), len(slot_path)))
        a_fail[fail_rows, fail_slot] = 1.0
        a_all = a_base.copy()
        a_all[fa] += a_fail
        as_t = (lambda a: torch.as_tensor(a, dtype=self.dtype))
        return _Part(
            group_seed=torch.as_tensor([si for si, _ in groups]), k=k, slot_path=slot_path, assign=as_t(a_all),
            slot_base=as_t(a_base.T) if base_rows else None, slot_fail=as_t(a_fail.T) if fail_rows else None,
            fail_slot=torch.as_tensor(fail_slot, dtype=torch.long),
            fail_block=_fail_block(slot_path >= len(self.pairs), k))

    @staticmethod
    def _pack(part: _Part, name: str, slots_src: Tensor, src: Tensor) -> Tensor:
        """Grouped storage whose slot i holds ``slots_src[src[i]]`` (``-1`` = zeros)."""
        padded = torch.cat([slots_src, torch.zeros_like(slots_src[:1])])
        picked = padded[torch.where(src < 0, len(slots_src), src)]
        return from_slots(name, picked.view(part.n_groups, part.k, *slots_src.shape[1:]))

    @staticmethod
    def _flat_slots(name: str, t: Tensor) -> Tensor:
        """Grouped storage -> ``(G*K, *path_shape)``."""
        s = to_slots(name, t)
        return s.reshape(-1, *s.shape[2:])

    def _adam(self, st: _Store, part: _Part, old: _FusedAdam | None = None,
              src: Tensor | None = None) -> _FusedAdam:
        """Adam over a store's grouped parameters; with ``old``, its moments repacked like the parameters."""
        cfg = self.cfg
        moments = None
        if old is not None:
            moments = [{k: self._pack(part, k, self._flat_slots(k, m[k]), src) for k in st.params}
                       for m in (old.exp_avg, old.exp_avg_sq)]
        return _FusedAdam(st.params, cfg.lr, (cfg.adam_beta1, cfg.adam_beta2), cfg.adam_eps, moments,
                          None if old is None else old.t.clone())

    def compact(self, keep: np.ndarray) -> bool:
        """Drop finished runs (their best states are in the banks); False when no run is left."""
        old, runs = self.layout, self.layout.runs[keep]
        if len(runs) == 0:
            return False
        self.layout = self._layout(runs)
        for st, old_part, part in zip(self.stores, old.parts, self.layout.parts):
            if part is None:                              # no active path left in this store
                st.params, st.opt, st.penalty_parts = {}, None, []
                continue
            old_where = {int(p): i for i, p in enumerate(old_part.slot_path) if p >= 0}
            src = torch.as_tensor([old_where[int(p)] if p >= 0 else -1 for p in part.slot_path])
            st.params = {k: self._pack(part, k, self._flat_slots(k, v), src) for k, v in st.params.items()}
            st.opt = self._adam(st, part, st.opt, src)
            st.penalty_parts = self._penalty_parts(st, part)
        return True

    def save_best(self, improved: np.ndarray) -> None:
        """Copy the current parameters of improved runs into the best-state banks."""
        runs = self.layout.runs[improved]
        if len(runs) == 0:
            return
        paths = np.concatenate([self.base_path[runs], self.fail_path[runs][self.kind[runs] > 0]])
        for st, part in self.active:
            mine = paths[(paths >= st.offset) & (paths < st.offset + st.n_paths)]
            if len(mine) == 0:
                continue
            where = {int(p): i for i, p in enumerate(part.slot_path) if p >= 0}
            pos = torch.as_tensor([where[int(p)] for p in mine])
            with torch.no_grad():
                for k, v in st.params.items():
                    st.bank[k][torch.as_tensor(mine - st.offset)] = self._flat_slots(k, v)[pos]

    # -- rewards and losses --
    def run_rewards(self, r_groups: Sequence[Tensor]) -> Tensor:
        """R = R_D + R_F of each run, ``(E, n)``, from each active store's grouped path rewards ``(G, n, K)``
        (one small GEMM per store with its 0/1 assignment; exact: each output adds a run's slots and zeros)."""
        r = None
        for (_, part), rg in zip(self.active, r_groups):
            flat = rg.permute(0, 2, 1).reshape(-1, rg.shape[1])
            r = part.assign @ flat if r is None else r.addmm_(part.assign, flat)
        return r

    def failure_sets(self, delta: Tensor, r_plus: Tensor, r_minus: Tensor, y_plus: Tensor | None,
                     y_minus: Tensor | None, u: Tensor, sched: RoundSchedule) -> tuple[Tensor, Tensor]:
        """F_t and S_t of the FA runs (rows = the layout's ``fa``), Alg. 1 lines 3-10 by
        :func:`fl.failure_set`: supervised for *_gt, margin for *_margin runs (per row only when both
        are active). The labels ``y_plus``, ``y_minus`` may be None when no *_gt run is active."""
        lay = self.layout
        supervised = {"all": True, "none": False}.get(lay.gt_mode_fa, lay.is_gt_fa)
        return failures.failure_set(self.cfg, supervised, delta, r_plus, r_minus, y_plus, y_minus, u, sched)

    def _base_loss(self, delta: Tensor) -> Tensor:
        """L_base (Eq. 1 or 2) of every active run, ``(E,)``."""
        cfg, lay = self.cfg, self.layout
        return _by_mode(lay.mm_mode, lay.is_mm[:, 0], lambda: losses.margin_loss(delta, cfg.margin),
                        lambda: losses.maxent_loss(delta, cfg.tau))

    def _loss_grads(self, delta: Tensor, mode: str, is_mm: Tensor, margin: float, tau: float,
                    grad_scale: float) -> Tensor:
        """``grad_scale`` times d/dDelta of the per-pair terms of Eq. 1 (``is_mm`` rows, margin M) /
        Eq. 2 (the others, tau)."""
        return _by_mode(mode, is_mm, lambda: hinge_grad(delta, margin, grad_scale),
                        lambda: maxent_grad(delta, tau, grad_scale))

    def _loss_terms(self, delta: Tensor, mode: str, is_mm: Tensor, margin: float, tau: float) -> Tensor:
        """The per-pair terms of Eq. 1 / Eq. 2 themselves (for the log, once per epoch)."""
        return _by_mode(mode, is_mm, lambda: losses.hinge_terms(delta, margin), lambda: losses.maxent_terms(delta, tau))

    def _penalty_parts(self, st: _Store, part: _Part) -> list[tuple[Tensor, Tensor, Tensor | None]]:
        """(gradient, weight, mask) per weight tensor of store ``st`` for :meth:`add_penalty_grad`, built per
        layout; empty when the store holds no failure path.

        When the failure paths fill a regular block of groups and slots (:func:`_fail_block`; the full
        grid, whatever K) the first two are views of that block and the mask is None; otherwise they
        are the whole tensors and the mask is 1.0 on failure slots, 0.0 elsewhere.
        """
        parts = []
        if part.slot_fail is None:
            return parts
        mask = torch.zeros(part.n_groups * part.k, dtype=self.dtype)
        mask[part.fail_slot] = 1.0
        mask = mask.view(part.n_groups, part.k)
        masks = {"w1": mask[:, None, :, None], "w2": mask[:, :, None], "w": mask[:, None, :]}
        for name in weight_names(st.head):
            grad, weight = st.opt.grads[name], st.params[name]
            if part.fail_block is None:
                parts.append((grad, weight, masks[name]))
                continue
            groups, block = part.fail_block
            slots = (groups, slice(None), block) if name != "w2" else (groups, block)   # w2 (G, K, H)
            parts.append((grad[slots], weight[slots], None))
        return parts

    @torch.no_grad()
    def _penalty(self) -> Tensor:
        """||w_F||^2 of each FA run's failure path, ``(E_F,)`` (value only; the gradient is added by
        :meth:`add_penalty_grad`). All failure paths sit in one store, the last active one."""
        st, part = self.active[-1]
        p = st.params
        if st.head == "linear":
            sq = p["w"].square().sum(1)
        else:  # reduce over d first (contiguous rows), then over the hidden units
            g, d, k, hid = p["w1"].shape
            col = p["w1"].view(g, d, k * hid).square().sum(1)
            sq = col.view(g, k, hid).sum(-1) + p["w2"].square().sum(2)
        return sq.reshape(-1)[part.fail_slot]

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
        for st, _ in self.active:
            for grad, weight, mask in st.penalty_parts:
                if mask is None:
                    grad.add_(weight, alpha=lambda_t)
                else:
                    grad.addcmul_(weight, mask, value=lambda_t)

    @torch.no_grad()
    def step(self, xbs: Sequence[Tensor], y_fa: tuple[Tensor, Tensor] | None, u_fa: Tensor, sched: RoundSchedule,
             sets: tuple[Tensor, Tensor] | None) -> tuple[Tensor, ...]:
        """One Adam step of Eq. 3 for every active run, with the gradient worked out by hand.

        Eq. 1-2 and L_fail depend on the rewards only through the margins, so the step computes
        dL/dDelta per pair in closed form (:func:`hinge_grad`, :func:`maxent_grad`), routes it to the paths
        (L_base -> R_D, L_fail -> R_F with ``route_gradients``; both to both otherwise), turns it
        into dL/dR on the (o+, o-) rows and backpropagates through the grouped heads
        (:func:`grouped_backward`); lambda_t/2 ||w_F||^2 adds lambda_t w_F (:meth:`add_penalty_grad`).
        This is the gradient autograd gives ``fairl.train_one`` (tests/test_irl_grid_vs_fairl.py: equal runs in
        float64), without building an autograd graph.

        ``xbs`` are the minibatch rows of each active store's groups ``(G, 2b, d)`` (interleaved o+, o-);
        ``y_fa`` are the FA runs' labels of o+ and o- ``(E_F, b)`` each (None when no run uses them),
        ``u_fa (E_F, b)`` their failure-sampling uniforms and ``sets`` (``mining="epoch"``) their
        epoch-level F_t, S_t, all already in this minibatch's order. Returns what the epoch's log
        needs (:meth:`_epoch_log` evaluates the loss terms once per epoch): the margins ``(E, b)`` and,
        with FA runs, theirs, the weights of Eq. 3's mean over S_t, F_t and S_t ``(E_F, b)``.
        """
        lay, cfg = self.layout, self.cfg
        fwd = [grouped_forward(st.params, xb, return_hidden=True) for (st, _), xb in zip(self.active, xbs)]
        r_plus, r_minus = self.run_rewards([r for r, _ in fwd]).view(lay.n_runs, -1, 2).unbind(-1)
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
            weights = masked_mean_weights(s_t, cfg.fail_reduction, delta.dtype)
            g_fail = g_f.mul_(weights)                        # d(lambda_t L_fail)/dDelta
            if cfg.route_gradients:                           # L_base -> R_D only, L_fail -> R_F only
                d_r = self._path_grads(g_base, g_fail)
            else:                                             # both losses reach both paths
                g_both = g_base.clone()
                g_both[fa] += g_fail
                d_r = self._path_grads(g_both, g_both[fa])
            logged = (delta, d_fa, weights, f_t, s_t)
        for (st, _), xb, (_, hidden), d_r_st in zip(self.active, xbs, fwd, d_r):
            grouped_backward(st.params, xb, hidden, d_r_st, st.opt.grads)
        self.add_penalty_grad(sched.lambda_t * cfg.penalty_scale)
        for st, _ in self.active:
            st.opt.step()
        return logged

    def _path_grads(self, g_base: Tensor, g_fail: Tensor | None) -> list[Tensor]:
        """dL/dR ``(G, 2b, K)`` per active store on the interleaved (o+, o-) rows from dL/dDelta of each
        run's base path ``(E, b)`` and failure path ``(E_F, b)`` (Delta = R(o+) - R(o-): +g on o+, -g on o-)."""
        out = []
        for _, part in self.active:
            per_slot = None if part.slot_base is None else part.slot_base @ g_base     # (G*K, b), exact (0/1)
            if g_fail is not None and part.slot_fail is not None:
                per_slot = (part.slot_fail @ g_fail if per_slot is None
                            else per_slot.addmm_(part.slot_fail, g_fail))
            d_r = per_slot[..., None] * self._signs                                     # (G*K, b, 2)
            out.append(d_r.view(part.n_groups, part.k, -1).transpose(1, 2))
        return out

    @torch.no_grad()
    def full_rewards(self, rows: Tensor) -> Tensor:
        """R = R_D + R_F of every active run on shared interleaved rows ``(2n, d)`` -> ``(E, n, 2)``."""
        chunk = 2 * self.cfg.eval_chunk
        r_groups = []
        for st, _ in self.active:
            params = {k: v.detach() for k, v in st.params.items()}
            r_groups.append(torch.cat([grouped_forward(params, rows[s:s + chunk])
                                       for s in range(0, rows.shape[0], chunk)], 1))
        return self.run_rewards(r_groups).view(self.layout.n_runs, -1, 2)

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
        rows = [_minibatch_rows(perm_s[part.group_seed], bsz) for _, part in self.active]  # per store, step: (G*b,)
        n_steps = len(rows[0])
        fa_seed = lay.run_seed[lay.fa]
        perm_fa = perm_s[fa_seed]                                                                 # (E_F, N)
        u_fa = torch.as_tensor(np.stack([u for _, u in streams]), dtype=self.dtype)[fa_seed]       # (E_F, N)
        epoch_sets = self.mine_epoch(u_fa, sched) if (cfg.mining == "epoch" and lay.n_fa) else None
        u_steps = u_fa.gather(1, perm_fa).split(bsz, 1)
        y_steps = ([None] * n_steps if not (lay.n_fa and lay.gt_mode_fa != "none") else
                   list(zip(*(y.split(bsz, 1) for y in self.y_tr[perm_fa].unbind(-1)))))
        set_steps = ([None] * n_steps if epoch_sets is None else
                     list(zip(*(m.gather(1, perm_fa).split(bsz, 1) for m in epoch_sets))))
        x, d = self.x_tr_flat, self.dim
        groups = [part.n_groups for _, part in self.active]
        logged = [self.step([x.index_select(0, r[s]).view(g, -1, d) for r, g in zip(rows, groups)], y_steps[s],
                            u_steps[s], sched, set_steps[s]) for s in range(n_steps)]
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

    def best_state(self, path: int) -> dict[str, Tensor]:
        """The best-validation parameters of path ``path`` (a global path id)."""
        st = next(st for st in self.stores if st.holds(path))
        return {k: v[path - st.offset] for k, v in st.bank.items()}

    def result(self, i: int) -> TrainedRun:
        spec, seed = self.pairs[i]
        base = self.best_state(self.base_path[i])
        fail = self.best_state(self.fail_path[i]) if self.fail_path[i] >= 0 else None
        return finish_run(spec.name, seed, base, fail, self.hist[i], int(self.stopper.best_epoch[i]),
                           float(self.stopper.best[i]), self.cfg)


def train_grid(data: PreferenceData, cfg: IRLConfig = IRLConfig(),  # noqa: B008 (frozen)
               methods: Sequence[str] = METHOD_NAMES,
               seeds: Iterable[int] | None = None, dtype: torch.dtype = torch.float32,
               progress: Callable[[int, int], None] | None = None, threads: int | None = None) -> GridResult:
    """Train every (method, seed) at once as one batched ensemble (stacked parameters).

    Each run keeps its own init, minibatch order, failure sampling and early stopping; finished runs
    leave the stack with their best-validation parameters. Seeds default to ``range(cfg.n_seeds)``.
    ``progress(epoch, n_active)`` is called after every epoch. ``threads``: torch threads for this call
    only (None = unchanged). Each run equals ``fairl.train_one`` up to floating-point rounding
    (tests/test_irl_grid_vs_fairl.py compares them in float64; long float32 runs can drift apart where a pair sits
    exactly at a failure threshold, since failure selection is discrete).
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
                raise nonfinite_error(spec.name, seed, epoch, cfg)
            record_epoch(g.hist[run], epoch, train_loss[j], val[j], n_fail[j], n_samp[j], g.n_tr, w_sq[j], sched,
                         spec.failures is not None)
        improved, stop = g.stopper.update(runs, val, epoch)
        g.save_best(improved)
        if progress is not None:
            progress(epoch, len(runs))
        if stop.any() and not g.compact(~stop):
            break
    runs = [g.result(i) for i in range(len(g.pairs))]
    return GridResult(runs, cfg, time.perf_counter() - t0, g.n_tr, g.n_va)
