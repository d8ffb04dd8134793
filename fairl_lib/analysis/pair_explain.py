"""The second paper's method on the recovered reward's own training data: preference pairs (notebook 10).

Liu et al., "Explainable reinforcement learning from human feedback to improve alignment" (NeurIPS 2025;
abstract in ``shared/paper/explainable-rlhf.txt``; their code and public reviews say the data explained
with are the *reward model's preference pairs*, each a feature difference Delta phi = phi(x, y_w) -
phi(x, y_l) in the reward's feature space). An unsatisfactory response is explained by the closest pairs
whose convex hull contains its feature vector; unlearning removes those pairs. Here the reward is the
one notebook 04 recovers by (FA-)IRL and its pairs are notebook 02's (``analysis.pairset``: y_w = o_post,
the expert's output, y_l = o_pre, the base model's). This module is the geometry and the statistics,
numpy/scipy/torch only; :mod:`fairl_lib.stages.pair_audit` feeds it real data.

**Feature space: the frozen MiniLM embedding h(o)**, not the reward's hidden layer. phi(y) = h(y), so a
pair is ``Delta phi_i = h(o_post,i) - h(o_pre,i)`` (:func:`pair_deltas`). Why: (1) h is what every recovered
reward reads (Sec. 4.1: R(o) = R_D(h(o)) + R_F(h(o))), and the tuned rewards of the cpu run have *linear*
heads, for which h is the only feature space there is: R(y) - R(y') = theta^T (h(y) - h(y')), so a target
``x = sum_i w_i Delta phi_i`` gets the reward margin ``sum_i w_i theta^T Delta phi_i``, exactly the margins
the pairs were trained to make positive; (2) h is fixed, so the explanation does not move when the reward
is retrained without the pairs (a hidden layer would), and one explanation serves the FA-IRL reward and its
IRL baseline alike (an MLP reward has two hidden layers, one per path, and "the" hidden layer would be
ambiguous); (3) the retraining controls compare like with like.

**A target's features** (:func:`target_deltas`, mode ``target_features``). A pair is a *difference*, so a
target must be one too. ``"delta_base"`` (default): ``x = h(y) - mean_j h(b_j)``, the target response y minus
the mean embedding of the base (SFT) model's responses b_j to the same prompt: the paper's
"the RLHF response scores below the SFT response" made into a vector, oriented *preferred minus
dispreferred in the unsatisfactory decision* (the policy wrote y where the SFT model writes b). The pairs
that combine into x are those that taught a reward to prefer responses like y over responses like b; a
linear reward's margin on x is their weighted margin. ``"response"``: ``x = h(y)`` alone (a single
response, no reference; Delta phi and h then live in different places and residuals are large: for
comparison only). For a sentence without a prompt (the identity-bias templates), the reference is given
by the caller (:mod:`fairl_lib.stages.pair_audit`: the same template's mean over identities, oriented
reference - sentence, since there the reward scoring the sentence *below* its reference is the failure).

**Containment** (:func:`explain_targets`): :func:`fairl_lib.analysis.audit.explain` (nearest pairs grown one
at a time, each prefix's hull projection by :func:`fairl_lib.analysis.audit.simplex_lstsq`, NNLS with a
sum-to-one row), stopped at residual <= ``tol`` (relative to the nearest pair's distance when
``relative``, else absolute) or at ``max_size``; the weights are kept. A target outside every hull gets
its best residual and ``within_tol = False``.

**Unlearning controls** of the same size as the union of the explanation sets: ``random`` pairs
(:func:`random_pairs`), ``matched`` random pairs with the same distribution of ground-truth reward margin
``post_reward - pre_reward`` as the removed pairs (:func:`matched_pairs`: what a pair teaches is its margin;
rules out "the method just removes the pairs with the largest margin"), and ``nearest`` pairs outside
the explanation sets (:func:`nearest_outside`: rules out "any pairs close to the targets would do", without
the explanation pairs themselves in it). Retraining (:func:`retrain_without`) uses the tuned grid's trainer
(:func:`fairl_lib.irl.train_grid`) on the training pairs minus the removed rows (:func:`without_pairs`).

**Effects** (:func:`standardized_margin`, :func:`paired_compare`): a target's margin is
``z(R(y)) - mean_j z(R(b_j))`` with ``z`` each reward's standardisation on the training-pair outputs (both
sides): retraining changes a reward's offset and scale, which are not identified (an IRL reward is known up to
a positive affine map), so margins are compared in standard units. An arm's effect on a target is its margin
minus the full-data reward's margin, seed by seed; arms are compared per target (paired over targets) by the
Wilcoxon signed-rank test and a bootstrap over targets.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fairl_lib.analysis import audit as geo
from fairl_lib.irl import IRLConfig, PreferenceData, RewardModel, train_grid

TARGET_FEATURES = ("delta_base", "response")


# --------------------------------------------------------------------------- features


def pair_deltas(emb_post: np.ndarray, emb_pre: np.ndarray) -> np.ndarray:
    """``Delta phi_i = h(o_post,i) - h(o_pre,i)``: one row per pair (float64)."""
    post, pre = np.asarray(emb_post, np.float64), np.asarray(emb_pre, np.float64)
    if post.shape != pre.shape or post.ndim != 2:
        raise ValueError(f"emb_post and emb_pre must both be (n, d); got {post.shape} and {pre.shape}")
    return post - pre


def reference_means(emb: np.ndarray, keys: Sequence, at: Sequence) -> np.ndarray:
    """For every key in ``at``, the mean of the rows of ``emb`` whose key (``keys``) equals it:
    e.g. the mean embedding of the base model's responses to each target's prompt."""
    emb = np.asarray(emb, np.float64)
    keys = pd.Series(list(keys))
    means = pd.DataFrame(emb).groupby(keys.to_numpy()).mean()
    missing = sorted(set(at) - set(means.index))
    if missing:
        raise KeyError(f"no reference rows for {len(missing)} key(s), e.g. {missing[:3]}")
    return means.loc[list(at)].to_numpy()


def target_deltas(emb_target: np.ndarray, emb_reference: np.ndarray | None, mode: str = "delta_base") -> np.ndarray:
    """The targets' features (module docstring): ``h(y) - reference`` (``"delta_base"``) or ``h(y)``."""
    if mode not in TARGET_FEATURES:
        raise ValueError(f"target_features={mode!r}; valid: {', '.join(TARGET_FEATURES)}")
    y = np.asarray(emb_target, np.float64)
    if mode == "response":
        return y
    if emb_reference is None or np.shape(emb_reference) != y.shape:
        raise ValueError("target_features='delta_base' needs one reference row per target")
    return y - np.asarray(emb_reference, np.float64)


# --------------------------------------------------------------------------- explanation sets


def explain_targets(X: np.ndarray, D: np.ndarray, tol: float, max_size: int,
                    relative: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(members, per_target)``: for each row of ``X`` its explanation set among the pairs ``D``.

    ``members``: ``target, rank, pair, weight`` (pair = row of ``D``; the convex weights, sum 1 per target);
    ``per_target``: ``target, size, k, residual, relative_residual, nearest, within_tol``.
    """
    members, per = [], []
    for t, x in enumerate(np.asarray(X, np.float64)):
        e = geo.explain(x, D, tol, max_size, relative=relative)
        members += [{"target": t, "rank": r, "pair": int(m), "weight": float(w)}
                    for r, (m, w) in enumerate(zip(e.members, e.weights))]
        per.append({"target": t, "size": e.size, "k": e.k, "residual": e.residual,
                    "relative_residual": e.relative_residual, "nearest": e.nearest, "within_tol": e.within_tol})
    return pd.DataFrame(members, columns=["target", "rank", "pair", "weight"]), pd.DataFrame(per)


def union_of_sets(members: pd.DataFrame) -> np.ndarray:
    """The pairs of every explanation set, sorted (what the ``method`` arm removes)."""
    return np.unique(members["pair"].to_numpy(dtype=np.int64))


# --------------------------------------------------------------------------- controls


def _outside(n: int, exclude: Sequence[int]) -> np.ndarray:
    return np.setdiff1d(np.arange(n), np.asarray(exclude, dtype=np.int64))


def random_pairs(n: int, size: int, seed: int, exclude: Sequence[int] = ()) -> np.ndarray:
    """``size`` pairs drawn uniformly without replacement among the ``n`` but ``exclude`` (seeded), sorted."""
    return geo.random_control(n, size, seed, candidates=_outside(n, exclude))


def nearest_outside(X: np.ndarray, D: np.ndarray, sizes: Sequence[int], total: int,
                    exclude: Sequence[int]) -> np.ndarray:
    """Each target's nearest pairs *outside* ``exclude`` (the explanation sets), round robin as
    :func:`fairl_lib.analysis.audit.nearest_control`, ``total`` pairs in all; sorted."""
    return geo.nearest_control(X, D, sizes, total, candidates=_outside(len(D), exclude))


def matched_pairs(score: np.ndarray, removed: Sequence[int], seed: int, n_bins: int = 10,
                  exclude: Sequence[int] | None = None) -> np.ndarray:
    """Random pairs outside ``exclude`` (default ``removed``) whose ``score`` distribution matches ``removed``'s.

    Stratified draw: the bin edges are the ``n_bins``-quantiles of ``score`` over all pairs; each bin gets as
    many draws (uniform, without replacement, seeded) as ``removed`` has pairs in it. A bin with too few
    candidates takes the rest from the nearest bins (by bin distance, ties to the lower bin); the
    shortfall is the only mismatch. Sorted indices, ``len(removed)`` of them (fewer only when the
    candidates run out).
    """
    score = np.asarray(score, np.float64)
    removed = np.asarray(removed, dtype=np.int64)
    cand = _outside(len(score), removed if exclude is None else exclude)
    edges = np.unique(np.quantile(score, np.linspace(0, 1, n_bins + 1)[1:-1]))
    bin_of = np.searchsorted(edges, score, side="right")
    nb = len(edges) + 1
    want = np.bincount(bin_of[removed], minlength=nb)
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(cand[bin_of[cand] == b]) for b in range(nb)]
    used = [0] * nb
    out: list[int] = []
    for b in range(nb):
        need = int(want[b])
        for c in sorted(range(nb), key=lambda c: (abs(c - b), c)):
            take = min(need, len(pools[c]) - used[c])
            out += pools[c][used[c]:used[c] + take].tolist()
            used[c] += take
            need -= take
            if need == 0:
                break
    return np.sort(np.asarray(out, dtype=np.int64))


# --------------------------------------------------------------------------- retraining


def without_pairs(data: PreferenceData, remove: Sequence[int]) -> PreferenceData:
    """``data`` minus the pairs at ``remove`` (rows kept in their order); an index out of range is an error."""
    remove = np.asarray(remove, dtype=np.int64)
    if len(remove) and (remove.min() < 0 or remove.max() >= data.n):
        raise IndexError(f"pairs to remove must be in [0, {data.n}); got {remove.min()}..{remove.max()}")
    return data.subset(_outside(data.n, remove))


def retrain_without(data: PreferenceData, remove: Sequence[int], irl: IRLConfig, method: str,
                    seeds: Sequence[int], threads: int | None = 1) -> list[RewardModel]:
    """One reward per seed trained like the tuned grid (:func:`fairl_lib.irl.train_grid`, ``irl`` and
    ``method``) on ``data`` without ``remove``."""
    grid = train_grid(without_pairs(data, remove), irl, methods=[method], seeds=list(seeds), threads=threads)
    return [r.reward for r in grid.runs]


def standardized_margin(reward, emb_target: np.ndarray, emb_ref: np.ndarray, ref_keys: Sequence, at: Sequence,
                        norm_emb: np.ndarray) -> np.ndarray:
    """``z(R(y_t)) - mean_j z(R(b_j))`` per target (module docstring): ``b_j`` the rows of ``emb_ref`` whose
    key is the target's (``at``), ``z`` the standardisation of ``reward`` on ``norm_emb``."""
    r_norm = np.asarray(reward(norm_emb), np.float64)
    mu, sd = float(r_norm.mean()), float(r_norm.std()) or 1.0
    r_t = (np.asarray(reward(emb_target), np.float64) - mu) / sd
    r_b = pd.Series((np.asarray(reward(emb_ref), np.float64) - mu) / sd).groupby(np.asarray(list(ref_keys))).mean()
    return r_t - r_b.loc[list(at)].to_numpy()


# --------------------------------------------------------------------------- paired statistics


def paired_compare(a: np.ndarray, b: np.ndarray | None = None, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> dict[str, Any]:
    """``a - b`` paired over units (``b`` None: ``a`` against 0): mean, median, percentile bootstrap
    intervals of the mean over units at ``level`` (``ci95``) and at 90% (``ci90``, for the equivalence test;
    ``n_boot`` resamples, seeded), the smallest mean difference found with 80% power at 5% two-sided
    (``mde`` = 2.8 x the bootstrap standard error) and the two-sided Wilcoxon signed-rank test
    (``scipy.stats.wilcoxon``, zero differences dropped: the ``"wilcox"`` rule)."""
    d = np.asarray(a, np.float64) - (0.0 if b is None else np.asarray(b, np.float64))
    d = d[np.isfinite(d)]
    n = len(d)
    out: dict[str, Any] = {"n": n, "mean": float(d.mean()) if n else None,
                           "median": float(np.median(d)) if n else None, "ci95": None, "ci90": None, "mde": None,
                           "wilcoxon_p": None, "share_negative": float((d < 0).mean()) if n else None}
    if n >= 2:
        rng = np.random.default_rng(seed)
        boot = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
        lo9, hi9 = np.quantile(boot, [0.05, 0.95])
        out.update(ci95=[float(lo), float(hi)], ci90=[float(lo9), float(hi9)], mde=float(2.8 * boot.std(ddof=1)))
    if n >= 1 and np.any(d != 0):
        out["wilcoxon_p"] = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    return out
