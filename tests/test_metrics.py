"""Metrics (Sec. 5, App. C, Tables 1-3): hand-worked cases and invariances."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fairl_lib.analysis import metrics as mt

rewards = st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=30)
scale = st.floats(0.01, 100.0)
shift = st.floats(-100.0, 100.0)


def spread(xs) -> bool:
    a = np.asarray(xs)
    return float(np.abs(a - a.mean()).sum()) > 1e-3


# --- classification --------------------------------------------------------------------------

def test_choose_threshold_hand_worked():
    # sorted: 0.1(0) 0.35(1) 0.4(0) 0.8(1); accuracy at t=-inf 2/4, 0.225 3/4, 0.375 2/4, 0.6 3/4
    assert mt.choose_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.225)
    assert mt.choose_threshold([1.0, 2.0], [1, 1]) == float("-inf")
    assert mt.choose_threshold([1.0, 2.0], [0, 0]) == float("inf")
    assert mt.choose_threshold([1.0, 1.0, 3.0], [0, 0, 1]) == pytest.approx(2.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1)), min_size=1, max_size=25))
def test_choose_threshold_maximises_training_accuracy(pairs):
    s = np.array([p[0] for p in pairs], float)
    y = np.array([p[1] for p in pairs])
    t = mt.choose_threshold(s, y)
    best = max(np.mean((s > c) == y) for c in np.r_[-np.inf, s])  # every achievable split
    assert np.mean((s > t) == y) == pytest.approx(best)


def test_classification_metrics_hand_worked():
    m = mt.classification_metrics([0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1], threshold=0.5)
    # predictions 1,0,1,0: TP=1 FP=1 FN=1 TN=1
    assert m["accuracy"] == 0.5 and m["f1"] == pytest.approx(0.5)
    assert m["roc_auc"] == pytest.approx(0.75)  # positive>negative in 3 of 4 pairs
    out = mt.evaluate_classifier([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], [0.3, 0.1], [1, 0])
    assert out["threshold"] == pytest.approx(0.225) and out["accuracy"] == 1.0


def test_label_helpers():
    scores, labels = mt.pair_labels([3.0, 1.0], [2.0, 5.0])
    assert scores.tolist() == [3.0, 1.0, 2.0, 5.0] and labels.tolist() == [1, 1, 0, 0]
    assert mt.heldout_labels([0, 1, 1, 0]).tolist() == [1, 0, 0, 1]          # 1 = non-toxic
    assert mt.heldout_labels([0.1, 0.7, 0.5]).tolist() == [1, 0, 0]
    assert mt.pairwise_accuracy([1.0, 2.0, 0.0], [0.0, 3.0, -1.0]) == pytest.approx(2 / 3)


# --- STARC Eq. 4 -----------------------------------------------------------------------------

def test_starc_distance_hand_worked():
    # r_gt = [0,1,2] -> s = [-.5, 0, .5]; r_hat = [0,0,1] -> s = [-.25, -.25, .5]; L1 = 0.5
    assert mt.starc_distance([0, 0, 1], [0, 1, 2]) == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(rewards, scale, shift, scale, shift)
def test_starc_distance_is_invariant_to_positive_affine_maps(r, a, b, c, d):
    assume(spread(r))
    r = np.asarray(r)
    other = np.sin(np.arange(len(r)) * 1.7)
    base = mt.starc_distance(r, other)
    assert mt.starc_distance(a * r + b, other) == pytest.approx(base, abs=1e-6)
    assert mt.starc_distance(r, c * other + d) == pytest.approx(base, abs=1e-6)
    assert mt.starc_distance(a * r + b, r) == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(rewards, rewards)
def test_starc_distance_is_in_0_2_and_opposite_rewards_are_2(r1, r2):
    n = min(len(r1), len(r2))
    r1, r2 = np.asarray(r1[:n]), np.asarray(r2[:n])
    assert -1e-9 <= mt.starc_distance(r1, r2) <= 2 + 1e-9
    assume(spread(r1))
    assert mt.starc_distance(r1, -3.0 * r1 + 1.0) == pytest.approx(2.0)
    assert mt.starc_distance(r1, r1) == 0.0


# --- STARC Eq. 10 ----------------------------------------------------------------------------

def test_starc_affine_mse_hand_worked():
    # r_gt = [0,1,2], r_hat = [1,0,2]: Var(r_hat) = 2/3, Cov = 1/3, Var(r_gt) = 2/3 -> 2/3 - 1/6 = 1/2
    assert mt.starc_affine_mse([1, 0, 2], [0, 1, 2]) == pytest.approx(0.5)
    assert mt.starc_affine_mse([1, 3, 5], [0, 1, 2]) == pytest.approx(0.0)
    # negative slope: a > 0 forces a -> 0+, leaving Var(r_hat)
    assert mt.starc_affine_mse([2, 1, 0], [0, 1, 2]) == pytest.approx(2 / 3)


@settings(max_examples=40, deadline=None)
@given(rewards)
def test_starc_affine_mse_equals_a_brute_force_constrained_fit(r):
    r_hat = np.asarray(r)
    r_gt = np.cos(np.arange(len(r_hat)) * 0.9)
    a = np.geomspace(1e-9, 1e3, 4000)[:, None]          # a > 0; the best b is the mean residual
    resid = r_hat[None, :] - a * r_gt[None, :]
    best = float(((resid - resid.mean(1, keepdims=True)) ** 2).mean(1).min())
    assert mt.starc_affine_mse(r_hat, r_gt) == pytest.approx(best, rel=1e-3, abs=1e-6)


def test_starc_affine_mse_scale_behaviour():
    r_hat, r_gt = np.array([1.0, 0.0, 2.0, 5.0]), np.array([0.0, 1.0, 2.0, 4.0])
    v = mt.starc_affine_mse(r_hat, r_gt)
    assert mt.starc_affine_mse(r_hat, 7 * r_gt + 3) == pytest.approx(v)      # invariant in r_gt
    assert mt.starc_affine_mse(r_hat + 4, r_gt) == pytest.approx(v)          # shift of r_hat
    assert mt.starc_affine_mse(2 * r_hat, r_gt) == pytest.approx(4 * v)      # NOT scale-invariant in r_hat
    n = mt.starc_affine_mse_normalized(r_hat, r_gt)
    assert 0 <= n <= 1 and mt.starc_affine_mse_normalized(2 * r_hat + 1, r_gt) == pytest.approx(n)


# --- seeds, disagreement, slices -------------------------------------------------------------

def test_seed_dispersion():
    r = np.array([0.0, 1.0, 3.0, 2.0])
    same = np.stack([r, 2 * r + 1, 0.5 * r - 4])
    assert mt.pairwise_starc(same) == pytest.approx(0.0)
    assert mt.seed_dispersion(same)["canonical_std"] == pytest.approx(0.0, abs=1e-12)
    mixed = np.stack([r, -r])
    assert mt.pairwise_starc(mixed) == pytest.approx(2.0)
    assert mt.seed_dispersion(mixed)["canonical_std"] > 0
    assert mt.mean_std([0.7, 0.8, 0.9]) == (pytest.approx(0.8), pytest.approx(np.std([0.7, 0.8, 0.9])))
    with pytest.raises(ValueError, match="n_seeds >= 2"):
        mt.pairwise_starc([r])


def test_disagreement_counts_table_2():
    a = [True, True, False, False, True]
    b = [True, False, True, False, True]
    assert mt.disagreement_counts(a, b) == {"both": 2, "only_a": 1, "only_b": 1, "neither": 1}
    correct = mt.classifier_correct([0.9, 0.1, 0.6], [1, 1, 0], 0.5)
    assert correct.tolist() == [True, False, False]


def test_failure_slice_mask_and_metrics():
    base_plus, base_minus = np.array([1.0, 0.0, 0.5, 2.0]), np.array([0.0, 0.5, 0.45, 1.0])
    # deltas 1.0, -0.5, 0.05, 1.0 -> misclassified: pair 1; near tie (|Delta| <= 0.1): pair 2
    mask = mt.failure_slice_mask(base_plus, base_minus, eps=0.1)
    assert mask.tolist() == [False, True, True, False]
    fa_plus, fa_minus = np.array([1.0, 1.0, 0.2, 1.0]), np.array([0.0, 0.0, 0.4, 0.0])
    out = mt.slice_metrics(fa_plus, fa_minus, mask, threshold=0.5)
    assert out["n_pairs"] == 2 and out["pairwise_accuracy"] == 0.5
    assert out["mean_margin"] == pytest.approx((1.0 + (0.2 - 0.4)) / 2)
    # outputs of the slice: + [1.0, 0.2] (label 1), - [0.0, 0.4] (label 0) at t = 0.5 -> 3 of 4 right
    assert out["accuracy"] == 0.75


def test_seed_std_verdict_hand_cases():
    assert mt.seed_std_verdict(0.05, 0.01, 1) == "better"
    assert mt.seed_std_verdict(0.05, 0.01, -1) == "worse"  # higher STARC is worse
    assert mt.seed_std_verdict(-0.01, 0.01, 1) == "within one seed-std"  # |d| == sd is not beyond it
    assert mt.seed_std_verdict(float("nan"), 0.01, 1) == "not comparable"
