"""Explanation sets: which training rollouts a response of the expert is made of (notebook 10).

Liu et al., "Explainable reinforcement learning from human feedback to improve alignment" (abstract):
explain an unsatisfactory response by "a set of training data closest to this prompt-response pair in a
feature representation space", under the constraint that the pair "can be decomposed as a convex
combination of this set of training data in the feature space", found by "an efficient iterative data
selection algorithm". This module is that geometry, pure numpy/scipy (no LM): features in, indices and
weights out. What the features are and which training data form the pool is decided by the caller
(:mod:`fairl_lib.stages.audit`); here a target is a vector ``x`` and the pool a matrix ``T`` (one row
per training example).

**The iterative selection** (:func:`explain`): sort the pool by Euclidean distance to ``x``; for
``k = 1, 2, ...`` project ``x`` onto the convex hull of the ``k`` nearest rows (:func:`simplex_lstsq`)
and stop at the first ``k`` whose residual ``||x - sum_i w_i t_i||`` is at most ``tol``, or at
``k = max_size``. The hulls are nested, so the residual never grows with ``k`` and the first ``k`` that
meets ``tol`` is the smallest prefix that does. The **explanation set** is the rows of that prefix with
a positive weight: they alone decompose ``x`` with the same residual, so it is the smallest set the
prefix holds (the abstract's objective, closeness, picks the prefix; the constraint, decomposition,
prunes it). A target outside every hull of up to ``max_size`` nearest rows reports ``k = max_size``,
its best residual (> ``tol``) and ``within_tol = False``: it is explained only approximately, and
:class:`Explanation` says so.

**Why a residual and not exact containment.** In a ``d``-dimensional feature space the hull of ``k <=
d`` points is a ``(k - 1)``-simplex of measure zero: a target lies exactly inside it with probability
zero (384-dimensional MiniLM embeddings, a few thousand rollouts). ``tol`` states how close "contains"
must come. It is *relative* (``relative=True``, the default of :func:`explain`): the residual as a
share of the target's distance to its nearest training row, so ``tol = 0.5`` reads "the convex
combination halves the gap left by the single nearest example", the same at every scale of the
feature space. ``relative=False`` makes it an absolute distance.

**Why NNLS with a sum-to-one row** (:func:`simplex_lstsq`), not SLSQP: the projection onto a hull is
``min ||T_k^T w - x||^2`` over the simplex ``w >= 0, sum w = 1``. Appending the row ``rho * 1^T``
(target ``rho``) to the system and solving it by non-negative least squares (Lawson-Hanson,
``scipy.optimize.nnls``) enforces the sum to within ``O(1 / rho^2)``; the weights are then renormalised
and the residual recomputed exactly. Lawson-Hanson is an active-set method that terminates with the
exact optimum of the non-negative problem in finitely many steps, has no step size or tolerance to
tune and gives the same answer on every run, which matters when it runs ``max_size`` times per target;
SLSQP is a general local solver with a stopping tolerance and starting point.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

WEIGHT_EPS = 1e-6  # a weight at or below this is zero: the row is not part of the decomposition


@dataclass(frozen=True)
class Explanation:
    """The explanation set of one target.

    Attributes:
        members: pool row indices with a positive weight, nearest first (the explanation set).
        weights: their convex weights (non-negative, sum 1), in the order of ``members``.
        residual: ``||x - sum_i w_i t_i||`` (absolute, in feature units).
        relative_residual: ``residual`` / ``nearest`` (1.0 at ``k = 1``).
        k: how many nearest rows the final hull was built from (``max_size`` when ``tol`` was not met).
        nearest: distance from the target to its nearest pool row.
        within_tol: whether the residual met the tolerance.
    """

    members: np.ndarray
    weights: np.ndarray
    residual: float
    relative_residual: float
    k: int
    nearest: float
    within_tol: bool

    @property
    def size(self) -> int:
        return len(self.members)


def simplex_lstsq(points: np.ndarray, x: np.ndarray, rho: float | None = None) -> tuple[np.ndarray, float]:
    """Project ``x`` onto the convex hull of the rows of ``points``: ``(weights, residual)``.

    Solves ``min_w ||points^T w - x||`` over ``w >= 0, sum(w) = 1`` by NNLS on the system with the extra
    row ``rho * 1^T = rho`` (module docstring); ``rho`` defaults to ``1e3`` times the data's scale. The
    weights returned are renormalised to sum exactly 1 and the residual is recomputed with them.
    """
    P = np.asarray(points, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if P.ndim != 2 or P.shape[1] != x.shape[0] or len(P) == 0:
        raise ValueError(f"points must be (k >= 1, {x.shape[0]}), got {P.shape}")
    if len(P) == 1:
        return np.ones(1), float(np.linalg.norm(x - P[0]))
    scale = max(float(np.abs(P).max()), float(np.abs(x).max()), 1e-12)
    rho = 1e3 * scale if rho is None else float(rho)
    A = np.vstack([P.T, np.full((1, len(P)), rho)])
    b = np.concatenate([x, [rho]])
    w, _ = nnls(A, b, maxiter=50 * len(P))
    total = w.sum()
    w = w / total if total > 0 else np.full(len(P), 1.0 / len(P))
    return w, float(np.linalg.norm(P.T @ w - x))


def explain(x: np.ndarray, pool: np.ndarray, tol: float, max_size: int, relative: bool = True,
            candidates: np.ndarray | None = None) -> Explanation:
    """The explanation set of target ``x`` in ``pool`` by iterative selection (module docstring).

    Args:
        x: ``(d,)`` the target's feature.
        pool: ``(n, d)`` the training examples' features.
        tol: stop when the residual is at most this (relative to the nearest distance if ``relative``).
        max_size: the largest prefix of nearest rows tried.
        relative: ``tol`` as a share of the distance to the nearest row (default) or absolute.
        candidates: restrict the search to these pool rows (indices); default all rows.
    """
    pool = np.asarray(pool, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    idx = np.arange(len(pool)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if len(idx) == 0:
        raise ValueError("explain needs a non-empty pool")
    if max_size < 1:
        raise ValueError("max_size must be >= 1")
    dist = np.linalg.norm(pool[idx] - x, axis=1)
    order = idx[np.lexsort((idx, dist))]  # by distance, ties by index: deterministic
    nearest = float(dist.min())
    limit = tol * nearest if relative else tol
    best: tuple[np.ndarray, float, int] | None = None
    for k in range(1, min(max_size, len(order)) + 1):
        w, res = simplex_lstsq(pool[order[:k]], x)
        best = (w, res, k)
        if res <= limit:
            break
    w, res, k = best
    keep = w > WEIGHT_EPS
    members, weights = order[:k][keep], w[keep] / w[keep].sum()
    return Explanation(members, weights, res, res / nearest if nearest > 0 else 0.0, k, nearest, bool(res <= limit))




def nearest_rows(x: np.ndarray, pool: np.ndarray, size: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """The ``size`` pool rows nearest to ``x`` (Euclidean; ties by index), nearest first."""
    pool = np.asarray(pool, dtype=np.float64)
    idx = np.arange(len(pool)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    dist = np.linalg.norm(pool[idx] - np.asarray(x, dtype=np.float64).reshape(-1), axis=1)
    return idx[np.lexsort((idx, dist))][:size]




def nearest_control(targets: np.ndarray, pool: np.ndarray, sizes: Sequence[int], total: int,
                    candidates: np.ndarray | None = None) -> np.ndarray:
    """The "nearest rollouts without the hull constraint" control, of ``total`` rows (the method's set size).

    Round-robin over the targets: round ``r`` adds each target's nearest row not yet taken, first only
    for targets whose ``r < sizes[j]`` (each target gets as many nearest rows as its explanation set
    has members), then for every target until the set holds ``total`` rows. Sorted indices.
    """
    idx = np.arange(len(pool)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    total = min(int(total), len(idx))
    orders = [nearest_rows(t, pool, len(idx), idx) for t in np.asarray(targets, dtype=np.float64)]
    pos = [0] * len(orders)
    taken: dict[int, None] = {}
    for capped in (True, False):
        r = 0
        while len(taken) < total:
            moved = False
            for j, order in enumerate(orders):
                if len(taken) >= total or (capped and r >= sizes[j]):
                    continue
                while pos[j] < len(order) and int(order[pos[j]]) in taken:
                    pos[j] += 1
                if pos[j] < len(order):
                    taken[int(order[pos[j]])] = None
                    moved = True
            r += 1
            if not moved and (not capped or r >= max(sizes, default=0)):
                break
    return np.sort(np.fromiter(taken, dtype=np.int64, count=len(taken)))


def random_control(n_pool: int, size: int, seed: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """The "random rollouts" control: ``size`` rows drawn without replacement (``seed``), sorted."""
    idx = np.arange(n_pool) if candidates is None else np.asarray(candidates, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(idx, size=min(int(size), len(idx)), replace=False))


def matched_control(scores: np.ndarray, reference: Sequence[float], seed: int, n_bins: int = 10,
                    candidates: np.ndarray | None = None, cuts: Sequence[float] = ()) -> np.ndarray:
    """The "random rollouts matched on the ground truth" control: as many rows as ``reference`` has, drawn
    (``seed``, without replacement) so that their scores follow the distribution of ``reference``.

    Stratified sampling on score bins: the edges are the ``n_bins``-quantiles of ``reference``
    (:func:`score_edges`; ties merge bins), and each bin receives exactly as many rows, drawn at random among the candidates whose score
    falls in it, as ``reference`` has there. A bin with too few candidates takes all of them; its shortfall
    is drawn from the remaining candidates nearest in score to the bin's unmatched reference values (the
    matching then holds only approximately; :func:`bin_counts` shows how far). Sorted pool indices.

    Args:
        scores: ``(n_pool,)`` the score of every pool row (the ground-truth reward of each rollout).
        reference: the scores to match (those of the method's forgotten rollouts).
        candidates: rows allowed (default all; the stage passes the pool outside the explanation sets).
        cuts: extra edges (the stage passes the reward at the toxicity threshold, so that the toxic share
            is matched exactly, not only the quantile bins that contain it).
    """
    scores = np.asarray(scores, dtype=np.float64)
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    idx = np.arange(len(scores)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if len(ref) > len(idx):
        raise ValueError(f"matched_control: {len(ref)} rows to match but only {len(idx)} candidates")
    rng = np.random.default_rng(seed)
    edges = score_edges(ref, n_bins, cuts)
    ref_bin, cand_bin = np.digitize(ref, edges), np.digitize(scores[idx], edges)
    taken: list[int] = []
    short: list[float] = []
    for b in np.unique(ref_bin):
        want = ref[ref_bin == b]
        have = idx[cand_bin == b]
        k = min(len(want), len(have))
        taken += rng.choice(have, size=k, replace=False).tolist()
        short += want[k:].tolist() if k < len(want) else []
    if short:
        rest = np.setdiff1d(idx, taken)
        for v in short:  # nearest remaining score; ties broken at random
            gap = np.abs(scores[rest] - v) + rng.random(len(rest)) * 1e-12
            j = int(np.argmin(gap))
            taken.append(int(rest[j]))
            rest = np.delete(rest, j)
    return np.sort(np.asarray(taken, dtype=np.int64))


def score_edges(reference: Sequence[float], n_bins: int, cuts: Sequence[float] = ()) -> np.ndarray:
    """The bin edges of :func:`matched_control`: the ``n_bins``-quantiles of ``reference`` from its minimum to
    just above its maximum, unique (tied quantiles merge bins), so that every reference value falls in a
    bin between them and scores outside ``reference``'s range fall in the two outer bins, which it never
    occupies; ``cuts`` inside that range are added as edges."""
    ref = np.asarray(reference, dtype=np.float64)
    if not len(ref):
        return np.array([])
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, n_bins + 1)))
    edges[-1] = np.nextafter(edges[-1], np.inf)
    inside = [c for c in cuts if edges[0] < c < edges[-1]]
    return np.unique(np.concatenate([edges, inside]))


def bin_counts(values: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """How many ``values`` fall in each bin of ``edges`` (``np.digitize``'s bins, ``len(edges) + 1`` of them)."""
    return np.bincount(np.digitize(np.asarray(values, dtype=np.float64), edges), minlength=len(edges) + 1)


def set_overlap(a: Sequence[int], b: Sequence[int]) -> dict[str, float | int]:
    """How two sets of rows meet: ``n_both``, ``share_of_a`` (of ``a``'s rows, in ``b``) and ``jaccard``."""
    sa, sb = set(map(int, a)), set(map(int, b))
    both = len(sa & sb)
    return {"n_both": both, "share_of_a": both / len(sa) if sa else math.nan,
            "jaccard": both / len(sa | sb) if sa | sb else math.nan}
