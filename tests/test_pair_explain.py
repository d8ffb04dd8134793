"""The pair-based explanation of notebook 10 (analysis.pair_explain): known geometry, the controls, retraining."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from fairl_lib.analysis import pair_explain as PE
from fairl_lib.irl import IRLConfig, PreferenceData


def test_midpoint_of_two_pair_deltas_gets_both_with_weight_half():
    post = np.array([[1.0, 0, 0], [0, 1.0, 0], [5.0, 5.0, 5.0], [-3.0, 0, 2.0]])
    pre = np.array([[0.0, 0, 0], [0, 0, 0], [5.0, 5.0, 3.0], [0, 0, 0]])
    D = PE.pair_deltas(post, pre)  # rows: e1, e2, 2 e3, (-3, 0, 2)
    x = (D[0] + D[1]) / 2
    members, per = PE.explain_targets(x[None], D, tol=1e-9, max_size=4)
    assert sorted(members["pair"]) == [0, 1]
    np.testing.assert_allclose(members.sort_values("pair")["weight"], [0.5, 0.5], atol=1e-9)
    assert per.loc[0, "residual"] == pytest.approx(0.0, abs=1e-9)
    assert per.loc[0, "within_tol"]


def test_point_outside_the_hull_gets_its_distance_to_the_hull():
    D = np.array([[1.0, 0.0], [0.0, 1.0]])           # hull: the segment from e1 to e2
    x = np.array([1.0, 1.0])                          # its projection is (1/2, 1/2), at distance sqrt(1/2)
    members, per = PE.explain_targets(x[None], D, tol=0.1, max_size=2, relative=False)
    assert per.loc[0, "residual"] == pytest.approx(np.sqrt(0.5), abs=1e-9)
    assert per.loc[0, "relative_residual"] == pytest.approx(np.sqrt(0.5) / 1.0, abs=1e-9)   # nearest row at 1
    assert not per.loc[0, "within_tol"] and per.loc[0, "k"] == 2
    np.testing.assert_allclose(members["weight"], [0.5, 0.5], atol=1e-9)


def test_target_delta_is_the_response_minus_its_prompts_base_mean():
    base = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    ref = PE.reference_means(base, ["a", "a", "b"], ["b", "a"])
    np.testing.assert_allclose(ref, [[0.0, 2.0], [2.0, 0.0]])
    x = PE.target_deltas(np.array([[1.0, 1.0], [1.0, 1.0]]), ref)
    np.testing.assert_allclose(x, [[1.0, -1.0], [-1.0, 1.0]])
    with pytest.raises(KeyError):
        PE.reference_means(base, ["a", "a", "b"], ["c"])


def test_matched_control_draws_the_removed_pairs_ground_truth_distribution():
    rng = np.random.default_rng(0)
    score = rng.normal(size=4000)
    removed = np.flatnonzero(score > 0.8)[:150]        # a skewed set: high margins only
    draw = PE.matched_pairs(score, removed, seed=3, n_bins=20)
    assert len(draw) == len(removed) and not set(draw) & set(removed) and len(set(draw)) == len(draw)
    assert stats.ks_2samp(score[draw], score[removed]).pvalue > 0.05
    plain = PE.random_pairs(len(score), len(removed), seed=3, exclude=removed)
    assert stats.ks_2samp(score[plain], score[removed]).pvalue < 1e-6   # an unmatched draw is far off
    np.testing.assert_array_equal(draw, PE.matched_pairs(score, removed, seed=3, n_bins=20))   # seeded


def test_nearest_control_stays_outside_the_explanation_sets():
    D = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0], [5.0, 5.0], [0.3, 0.0]])
    near = PE.nearest_outside(np.zeros((1, 2)), D, sizes=[2], total=2, exclude=[0, 1])
    np.testing.assert_array_equal(near, [2, 4])


def test_without_pairs_removes_exactly_those_rows():
    n = 10
    hp = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    data = PreferenceData(hp, -hp, np.ones(n, np.int8), -np.ones(n, np.int8))
    kept = PE.without_pairs(data, [2, 7, 3])
    np.testing.assert_array_equal(kept.h_plus[:, 0], [0, 1, 4, 5, 6, 8, 9])
    np.testing.assert_array_equal(kept.h_minus[:, 0], -kept.h_plus[:, 0])
    assert kept.n == n - 3 and kept.y_plus.shape == (7,)
    assert PE.without_pairs(data, []).n == n
    with pytest.raises(IndexError):
        PE.without_pairs(data, [n])


def test_retraining_without_pairs_trains_on_the_rest():
    from fairl_lib.irl import make_synthetic, train_grid

    sp = make_synthetic(60, 4, seed=0, nonlinearity=0.0)
    irl = dataclasses.replace(IRLConfig(head="linear", max_epochs=2, n_seeds=1, patience=1), val_fraction=0.2)
    got = PE.retrain_without(sp.data, [0, 5, 9], irl, "me_irl", [0])[0]
    ref = train_grid(sp.data.subset(np.setdiff1d(np.arange(60), [0, 5, 9])), irl, methods=["me_irl"], seeds=[0]).runs[0]
    np.testing.assert_allclose(got(sp.data.h_plus), ref.reward(sp.data.h_plus), rtol=1e-6, atol=1e-7)


def test_standardized_margin_is_invariant_to_a_positive_affine_map_of_the_reward():
    rng = np.random.default_rng(1)
    w = rng.normal(size=3)
    r = lambda e: np.asarray(e) @ w
    et, eb, norm = rng.normal(size=(4, 3)), rng.normal(size=(6, 3)), rng.normal(size=(50, 3))
    keys, at = ["p", "p", "q", "q", "r", "r"], ["p", "q", "r", "p"]
    a = PE.standardized_margin(r, et, eb, keys, at, norm)
    b = PE.standardized_margin(lambda e: 3.0 * r(e) - 7.0, et, eb, keys, at, norm)
    np.testing.assert_allclose(a, b, atol=1e-12)
    base_mean = np.array([eb[0:2].mean(0), eb[2:4].mean(0), eb[4:6].mean(0), eb[0:2].mean(0)])
    np.testing.assert_allclose(a, (et - base_mean) @ w / r(norm).std(), atol=1e-12)


def test_paired_compare_matches_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=30), rng.normal(size=30) + 0.3
    out = PE.paired_compare(a, b, n_boot=500, seed=0)
    assert out["n"] == 30 and out["mean"] == pytest.approx(float((a - b).mean()))
    assert out["wilcoxon_p"] == pytest.approx(float(stats.wilcoxon(a - b).pvalue))
    assert out["ci95"][0] < out["ci90"][0] < out["mean"] < out["ci90"][1] < out["ci95"][1]
    # the detectable difference is 2.8 standard errors; the bootstrap's SE is near the textbook sd / sqrt(n)
    assert out["mde"] == pytest.approx(2.8 * (a - b).std(ddof=1) / np.sqrt(30), rel=0.15)
