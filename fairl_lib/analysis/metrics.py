"""Evaluation metrics of the paper (Sec. 5 "Evaluation metrics", App. C; Tables 1-3).

- Classification (Table 1): a reward is a binary classifier of single outputs; its threshold is
  chosen on *training* data to maximise accuracy and then held fixed (Sec. 5); accuracy, F1, ROC-AUC.
- Reward fidelity: STARC. Two definitions appear in the paper:
  * Eq. 4 (main text): canonicalise s = (r - mean r) / ||r - mean r||_1, distance ||s_hat - s_gt||_1.
    Invariant to positive scaling and shifts of *either* reward, bounded in [0, 2].
  * Eq. 10 (App. C): min_{a > 0, b} 1/N sum (r_hat - (a r_gt + b))^2, an affine-fit MSE. It rescales
    only the ground truth, so it is NOT invariant to the scale of r_hat (doubling r_hat quadruples it)
    and is unbounded; :func:`starc_affine_mse_normalized` divides by Var(r_hat) to fix that.
  Table 1's headline "STARC" here is Eq. 4 (:func:`starc_distance`): it is the definition in the
  main text, it is bounded, and it is invariant to the arbitrary scale and offset of a learned reward
  (IRL rewards are only identified up to these), which Eq. 10 is not.
- Seed dispersion (Sec. 6, Corollary 1): std over seeds and mean pairwise STARC between seeds.
- Disagreement (Tables 2-3): both correct / only A / only B / neither.
- Failure slices (Sec. 5, App. C): pairs the baseline misclassifies or nearly ties.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score


def _vec(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


# --- labels ----------------------------------------------------------------------------------

def pair_labels(r_plus, r_minus) -> tuple[np.ndarray, np.ndarray]:
    """In-domain binary task from preference pairs: scores [R(o+); R(o-)], labels [1...; 0...].

    The preferred (post-RLHF, detoxified) output is the positive class (Sec. 5: "treating recovered
    rewards as binary classifiers on preference pairs").
    """
    rp, rm = _vec(r_plus), _vec(r_minus)
    return np.concatenate([rp, rm]), np.concatenate([np.ones(len(rp), int), np.zeros(len(rm), int)])


def heldout_labels(toxic, threshold: float = 0.5) -> np.ndarray:
    """Held-out (Jigsaw) labels: 1 = non-toxic, 0 = toxic; ``toxic`` is 0/1 or a score in [0, 1].

    An output is toxic when ``toxic >= threshold`` (a human-label fraction or classifier probability).
    """
    return (_vec(toxic) < threshold).astype(int)


# --- classification with a train-chosen threshold ---------------------------------------------

def choose_threshold(scores, labels) -> float:
    """The threshold t maximising training accuracy of ``predict(score) = score > t`` (Sec. 5).

    Candidates are -inf and the midpoints between consecutive distinct sorted scores (and +inf);
    ties in accuracy go to the smallest candidate.
    """
    s, y = _vec(scores), np.asarray(labels).reshape(-1).astype(int)
    if len(s) == 0:
        raise ValueError("choose_threshold needs at least one score")
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    uniq_last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])    # last index of each distinct value
    neg_below = np.cumsum(1 - y)[uniq_last]                      # negatives with score <= value
    pos_below = np.cumsum(y)[uniq_last]
    n_pos = int(y.sum())
    correct = np.r_[n_pos, neg_below + (n_pos - pos_below)]      # t = -inf, then t between values
    best = int(np.argmax(correct))
    if best == 0:
        return float("-inf")
    vals = s[uniq_last]
    return float((vals[best - 1] + vals[best]) / 2) if best < len(vals) else float("inf")


def roc_auc(scores, labels) -> float:
    """ROC-AUC of ``scores`` for ``labels`` (1 = positive); NaN when only one class is present."""
    s, y = _vec(scores), np.asarray(labels).reshape(-1).astype(int)
    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")


def classification_metrics(scores, labels, threshold: float) -> dict[str, float]:
    """Accuracy, F1 (positive class 1) and ROC-AUC of ``score > threshold`` against ``labels``."""
    s, y = _vec(scores), np.asarray(labels).reshape(-1).astype(int)
    pred = (s > threshold).astype(int)
    auc = float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")
    return {"accuracy": float(accuracy_score(y, pred)), "f1": float(f1_score(y, pred, zero_division=0.0)),
            "roc_auc": auc, "threshold": float(threshold), "n": len(y)}


def evaluate_classifier(train_scores, train_labels, test_scores, test_labels) -> dict[str, float]:
    """Table 1 protocol: threshold fitted on the training scores, then test accuracy / F1 / AUC."""
    t = choose_threshold(train_scores, train_labels)
    return classification_metrics(test_scores, test_labels, t)


def classifier_correct(scores, labels, threshold: float) -> np.ndarray:
    """Per-example correctness of ``score > threshold`` (input to :func:`disagreement_counts`)."""
    return (_vec(scores) > threshold).astype(int) == np.asarray(labels).reshape(-1).astype(int)


def pairwise_accuracy(r_plus, r_minus) -> float:
    """Share of pairs ranked correctly, R(o+) > R(o-)."""
    return float(np.mean(_vec(r_plus) > _vec(r_minus))) if len(_vec(r_plus)) else float("nan")


# --- STARC -----------------------------------------------------------------------------------

def starc_canonicalize(r) -> np.ndarray:
    """Eq. 4: s = (r - mean r) / ||r - mean r||_1. A constant reward canonicalises to 0 (its
    direction is undefined), so its distance to any non-constant reward is 1."""
    c = _vec(r) - _vec(r).mean()
    norm = np.abs(c).sum()
    return c / norm if norm > 0 else np.zeros_like(c)


def starc_distance(r_hat, r_gt) -> float:
    """STARC_{l1/l1} of Eq. 4: ||s_hat - s_gt||_1 in [0, 2]; 0 = same reward up to a positive affine
    map, 2 = opposite rewards. The headline "STARC" of Table 1 in this repo (lower is better)."""
    a, b = _vec(r_hat), _vec(r_gt)
    if a.shape != b.shape:
        raise ValueError(f"r_hat and r_gt must have the same length; got {a.shape} and {b.shape}")
    return float(np.abs(starc_canonicalize(a) - starc_canonicalize(b)).sum())


def starc_affine_mse(r_hat, r_gt) -> float:
    """Eq. 10: min_{a > 0, b} 1/N sum_i (r_hat_i - (a r_gt_i + b))^2, in closed form.

    The unconstrained least-squares slope is a* = Cov(r_hat, r_gt) / Var(r_gt). If a* > 0 the value
    is Var(r_hat) (1 - rho^2). If a* <= 0 (or r_gt is constant), the infimum over a > 0 is the limit
    a -> 0+, b = mean(r_hat): the value is Var(r_hat) (population variances, 1/N).
    Not invariant to the scale of r_hat (see :func:`starc_affine_mse_normalized`).
    """
    a, b = _vec(r_hat), _vec(r_gt)
    var_hat, var_gt = a.var(), b.var()
    cov = float(np.mean((a - a.mean()) * (b - b.mean())))
    if var_gt <= 0 or cov <= 0:
        return float(var_hat)
    return float(max(var_hat - cov ** 2 / var_gt, 0.0))


def starc_affine_mse_normalized(r_hat, r_gt) -> float:
    """Eq. 10 divided by Var(r_hat): 1 - rho^2 if the correlation rho > 0 else 1; in [0, 1] and
    invariant to positive scaling and shifts of both rewards (0 for a constant r_hat by convention)."""
    var_hat = _vec(r_hat).var()
    return float(starc_affine_mse(r_hat, r_gt) / var_hat) if var_hat > 0 else 0.0


# --- seeds -----------------------------------------------------------------------------------

def mean_std(values) -> tuple[float, float]:
    """Mean and (population) std over seeds of a metric, as in Table 1's "mean +- std"."""
    v = _vec(values)
    return float(v.mean()), float(v.std())


def seed_std_verdict(diff: float, sd: float, direction: int) -> str:
    """``"better"`` / ``"worse"`` when ``|diff|`` exceeds ``sd`` (the larger of two methods' seed-stds),
    else ``"within one seed-std"``; ``direction`` +1 when higher is better, -1 when lower is better.
    The rule notebook 05 uses to word Table 1 and the penalty sweep (a point comparison, not a test)."""
    if not (math.isfinite(diff) and math.isfinite(sd)):
        return "not comparable"
    if abs(diff) <= sd:
        return "within one seed-std"
    return "better" if diff * direction > 0 else "worse"


def pairwise_starc(rewards) -> float:
    """Mean STARC (Eq. 4) over all pairs of seeds; ``rewards (n_seeds, n_outputs)``. 0 = all seeds
    recovered the same reward up to positive affine maps (lower = less non-identifiability)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2:
        raise ValueError("pairwise_starc needs rewards of shape (n_seeds >= 2, n_outputs)")
    return float(np.mean([starc_distance(r[i], r[j]) for i, j in combinations(range(r.shape[0]), 2)]))


def seed_dispersion(rewards) -> dict[str, float]:
    """How much seeds disagree (Corollary 1): mean pairwise STARC, and the per-output std over
    seeds of the canonicalised rewards (Eq. 4, so arbitrary scale/offset per seed does not count),
    averaged over outputs and multiplied by N so it is comparable across dataset sizes."""
    r = np.asarray(rewards, dtype=np.float64)
    s = np.stack([starc_canonicalize(x) for x in r])
    return {"pairwise_starc": pairwise_starc(r), "canonical_std": float(s.std(0).mean() * r.shape[1])}


# --- disagreement and failure slices ---------------------------------------------------------

def disagreement_counts(correct_a, correct_b) -> dict[str, int]:
    """Table 2: counts of examples both methods get right, only A, only B, neither."""
    a, b = np.asarray(correct_a, bool).reshape(-1), np.asarray(correct_b, bool).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"correct_a and correct_b must have the same length; got {a.shape} and {b.shape}")
    return {"both": int((a & b).sum()), "only_a": int((a & ~b).sum()), "only_b": int((~a & b).sum()),
            "neither": int((~a & ~b).sum())}


def failure_slice_mask(r_plus_base, r_minus_base, eps: float = 0.1) -> np.ndarray:
    """Failure slice (Sec. 5, App. C): pairs the baseline misclassifies (Delta <= 0) or nearly ties
    (|Delta| <= eps). ``eps`` is in the baseline's reward units (rewards are scale-free; canonicalise
    or pick eps relative to the spread of Delta when comparing models)."""
    delta = _vec(r_plus_base) - _vec(r_minus_base)
    return (delta <= 0) | (np.abs(delta) <= eps)


def slice_metrics(r_plus, r_minus, mask, threshold: float | None = None) -> dict[str, float]:
    """Metrics of one reward restricted to the pairs in ``mask``: pairwise accuracy, mean margin and,
    given a fixed (train-chosen) ``threshold``, classification accuracy of the slice's outputs."""
    m = np.asarray(mask, bool).reshape(-1)
    rp, rm = _vec(r_plus)[m], _vec(r_minus)[m]
    out = {"n_pairs": int(m.sum()), "pairwise_accuracy": pairwise_accuracy(rp, rm),
           "mean_margin": float(np.mean(rp - rm)) if m.any() else float("nan")}
    if threshold is not None and m.any():
        scores, labels = pair_labels(rp, rm)
        out["accuracy"] = float(np.mean(classifier_correct(scores, labels, threshold)))
    return out
