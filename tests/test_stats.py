"""The ledger's statistics (fairl_lib.analysis.stats) and verdict rule, on hand-worked cases and against scipy."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import f1_score, roc_auc_score

from fairl_lib.analysis import report as R
from fairl_lib.analysis import stats as S
from fairl_lib.analysis.evaluate import set_metric
from fairl_lib.stages import screen


def test_mcnemar_exact_on_a_hand_worked_case():
    # 8 vs 1 discordant pairs: P(X >= 8 | n = 9, 1/2) = (9 + 1) / 512; two-sided doubles it
    assert S.mcnemar_exact_p(8, 1) == pytest.approx(2 * 10 / 512)
    assert S.mcnemar_exact_p(0, 0) == 1.0


def test_holm_adjustment_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    np.testing.assert_allclose(S.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_tost_needs_the_90_interval_strictly_inside_the_margin():
    assert S.tost_negligible(S.Estimate(0.001, -0.004, 0.006), 0.01)
    assert not S.tost_negligible(S.Estimate(0.001, -0.004, 0.012), 0.01)
    assert not S.tost_negligible(S.Estimate(0.001, None, None), 0.01)
    assert not S.tost_negligible(S.Estimate(0.0, -0.001, 0.001), 0.0)


def test_identical_means_every_paired_value_equal():
    assert S.is_identical([1.0, 2.0, math.nan], [1.0, 2.0, 5.0])
    assert not S.is_identical([1.0, 2.0], [1.0, 2.0 + 1e-9])
    assert S.is_identical([1.0, 2.0], [1.0, 2.0 + 1e-9], tol=1e-6)


def test_bootstrap_of_a_mean_matches_the_standard_error():
    """One seed, 400 independent clusters of one row: the bootstrap sd of a mean is sd / sqrt(n)."""
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, 400)
    e95, e90 = S.two_level_bootstrap(lambda s, idx: float(x[idx].mean()), 1, np.arange(400), reps=2000, seed=1)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert e95.value == pytest.approx(x.mean())
    assert (e95.hi - e95.lo) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.1)
    assert e95.lo < e90.lo < e90.hi < e95.hi


def test_bootstrap_resamples_whole_clusters():
    """Rows of one cluster share a value: resampling clusters gives the interval of the cluster means
    (10 clusters), much wider than treating the 1,000 rows as independent."""
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 1, 10)
    clusters = np.repeat(np.arange(10), 100)
    x = centres[clusters]
    e95, _ = S.two_level_bootstrap(lambda s, idx: float(x[idx].mean()), 1, clusters, reps=2000, seed=2)
    se_clusters = centres.std(ddof=1) / math.sqrt(10)
    assert (e95.hi - e95.lo) / (2 * 1.96 * se_clusters) == pytest.approx(1.0, abs=0.25)


def test_bootstrap_over_seeds_adds_the_seed_spread():
    """Per-seed offsets and no data noise: the interval is the seeds' (a constant statistic would be a point)."""
    offsets = np.array([0.0, 1.0, 2.0, 3.0])
    e95, _ = S.two_level_bootstrap(lambda s, idx: float(offsets[s].mean()), 4, np.arange(50), reps=2000, seed=0)
    assert e95.lo < 1.0 and e95.hi > 2.0
    const, _ = S.two_level_bootstrap(lambda s, idx: 0.5, 4, np.arange(50), reps=200, seed=0)
    assert const.lo == const.hi == 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    s = np.round(rng.normal(size=300), 1)  # ties on purpose
    y = (rng.random(300) < 0.4).astype(int)
    assert set_metric("auc", s, y, 0.0, s) == pytest.approx(roc_auc_score(y, s))
    assert set_metric("f1", s, y, 0.1, s) == pytest.approx(f1_score(y, (s > 0.1).astype(int)))
    assert set_metric("accuracy", s, y, 0.1, s) == pytest.approx(np.mean((s > 0.1) == (y == 1)))


def test_verdict_rule_with_an_effect_of_interest():
    v = R.verdict_from_ci
    E = S.Estimate
    # on the claimed side, but smaller than the effect of interest: not reproduced; inside +-effect: negligible
    assert v(E(0.004, 0.001, 0.007), effect=0.01) == R.NEGLIGIBLE
    assert v(E(0.02, 0.012, 0.028), effect=0.01) == R.REPRODUCED
    assert v(E(0.02, 0.012, 0.028), direction=-1, effect=0.01) == R.OPPOSITE
    # the paper's +0.028 excluded and ours at least the effect short of it, not negligible: contradicted
    assert v(E(0.0, -0.015, 0.015), paper_value=0.028, effect=0.01) == R.CONTRADICTED
    # wide interval holding both: inconclusive
    assert v(E(0.01, -0.05, 0.07), paper_value=0.028, effect=0.01) == R.INCONCLUSIVE
    # a zero-width interval carries no verdict; the same numbers are "identical"
    assert v(E(1e-6, 1e-6, 1e-6), effect=0.01) == R.INCONCLUSIVE
    assert v(E(0.0, 0.0, 0.0), identical=True) == R.IDENTICAL
    # TOST uses the 90% interval when given
    assert v(E(0.002, -0.011, 0.015), effect=0.01, est90=E(0.002, -0.008, 0.009)) == R.NEGLIGIBLE
    assert R.underpowered(E(0.0, -0.05, 0.05, mde=0.04), 0.01)


def test_combine_verdicts_all_parts_must_hold():
    c = R.combine_verdicts
    assert c([R.REPRODUCED, R.REPRODUCED]) == R.REPRODUCED
    assert c([R.REPRODUCED, R.NEGLIGIBLE]) == R.NEGLIGIBLE
    assert c([R.OPPOSITE, R.CONTRADICTED]) == R.CONTRADICTED
    assert c([R.REPRODUCED, R.INCONCLUSIVE]) == R.INCONCLUSIVE


def test_variance_ratio_interval_matches_scipy_f():
    a, b = [1.0, 2.0, 4.0, 3.0], [1.0, 1.5, 1.2, 1.1]
    est = S.variance_ratio_ci(a, b)
    r = np.var(a, ddof=1) / np.var(b, ddof=1)
    assert est.value == pytest.approx(r)
    assert est.lo == pytest.approx(r / sps.f.ppf(0.975, 3, 3))


def test_screening_rule_on_counts():
    first = screen._toxic_counts(np.array([1, 0, 0, 0, 1, 1], bool), 2)
    np.testing.assert_array_equal(first, [1, 0, 2])
    np.testing.assert_array_equal(screen.continue_screening(first, 1), [True, False, True])
    np.testing.assert_array_equal(screen.keep_screened(np.array([1, 2, 5]), 2), [False, True, True])


def test_between_run_variance_is_zero_for_identical_runs_and_grows_with_spread():
    same = [[(50, 1000), (50, 1000)], [(80, 1000), (80, 1000)]]
    tau2, df = S.between_run_variance(same)
    assert tau2 == 0.0 and df == 2
    spread = [[(20, 1000), (80, 1000)]]
    tau2, df = S.between_run_variance(spread)
    # two runs 6 points apart: between-run sd of the order of the half-difference, far above binomial noise
    assert df == 1 and 0.02 < math.sqrt(tau2) < 0.06
    assert math.isnan(S.between_run_variance([[(5, 100)]])[0])


def test_random_effects_difference_reduces_to_pooled_rates_without_between_run_variance():
    a, b = [(60, 1000), (60, 1000)], [(40, 1000), (40, 1000)]
    est = S.random_effects_rate_diff(a, b, 0.0)
    assert est.value == pytest.approx(0.02)
    # tau2 = 0: each arm's variance is that of 2,000 completions (with the (k+1/2)/(n+1) rate)
    pa, pb = 60.5 / 1001, 40.5 / 1001
    se = math.sqrt(pa * (1 - pa) / 2000 + pb * (1 - pb) / 2000)
    assert est.hi - est.value == pytest.approx(1.959964 * se, rel=1e-4)
    wider = S.random_effects_rate_diff(a, b, 0.001)
    assert wider.hi - wider.lo > est.hi - est.lo


# ----------------------------------------------------------------------------- paired rates (the audit)


def test_mcnemar_mde_solves_connors_equation_and_matches_the_small_effect_form():
    # psi = 0.1, n = 1000: sqrt(n) d = 1.96 sqrt(0.1) + 0.8416 sqrt(0.1 - d^2); by hand d ~ 0.0280
    d = S.mcnemar_mde(1000, 0.1)
    za, zb = sps.norm.ppf(0.975), sps.norm.ppf(0.8)
    assert math.sqrt(1000) * d == pytest.approx(za * math.sqrt(0.1) + zb * math.sqrt(0.1 - d * d))
    assert d == pytest.approx((za + zb) * math.sqrt(0.1 / 1000), rel=0.01) and d == pytest.approx(0.0280, abs=1e-4)
    assert S.mcnemar_mde(1000, 0.025) == pytest.approx(d / 2, rel=0.01)  # a quarter of the discordance, half the MDE
    assert math.isnan(S.mcnemar_mde(0, 0.1)) and math.isnan(S.mcnemar_mde(100, 0.0))


def test_mcnemar_mde_has_its_power_by_simulation():
    """At the MDE, the exact McNemar test at 5% rejects in about 80% of simulated paired samples."""
    rng = np.random.default_rng(0)
    n, psi = 400, 0.2
    d = S.mcnemar_mde(n, psi)
    p_a, p_b = (psi + d) / 2, (psi - d) / 2  # P(only a), P(only b)
    hits = 0
    for _ in range(2000):
        only_a, only_b, _ = rng.multinomial(n, [p_a, p_b, 1 - psi])
        hits += S.mcnemar_exact_p(only_a, only_b) < 0.05
    assert hits / 2000 == pytest.approx(0.80, abs=0.05)


def test_paired_rates_counts_discordant_pairs_and_reads_mcnemar():
    # 10 prompts x 4 samples, one seed: a is toxic on 6 pairs, b on 2 of those and on 1 other
    a = np.zeros(40, dtype=bool)
    b = np.zeros(40, dtype=bool)
    a[[0, 5, 9, 13, 22, 31]] = True
    b[[0, 5, 38]] = True
    r = S.paired_rates(a, b, np.repeat(np.arange(10), 4), reps=500, seed=0)
    assert (r.only_a, r.only_b, r.n) == (4, 1, 40)
    assert r.p_value == pytest.approx(sps.binomtest(4, 5, 0.5).pvalue)
    assert r.estimate.value == pytest.approx((6 - 3) / 40)
    assert r.estimate.lo <= r.estimate.value <= r.estimate.hi and r.estimate.test == S.PAIRED_RATES
    # 5 discordant of 40 pairs: no difference the discordance allows (at most 5/40) has 80% power
    assert math.isnan(r.mde_mcnemar) and math.isnan(S.mcnemar_mde(40, 5 / 40))
    big = S.paired_rates(np.tile(a, 25), np.tile(b, 25), np.repeat(np.arange(250), 4), reps=200)
    assert big.mde_mcnemar == pytest.approx(S.mcnemar_mde(1000, 0.125)) and big.mde_mcnemar < 0.125
    d = r.to_dict()
    assert d["only_a"] == 4 and d["p_mcnemar"] == pytest.approx(r.p_value) and len(d["ci90"]) == 2


def test_paired_rates_identical_arms_give_the_exact_no_discordance_interval():
    a = np.random.default_rng(1).random((3, 30)) < 0.2
    r = S.paired_rates(a, a.copy(), np.repeat(np.arange(10), 3), reps=200)
    # no discordant pair of 90: |difference| <= the exact 97.5% upper end of the discordant share, 1 - 0.025^(1/90)
    bound = 1 - 0.025 ** (1 / 90)
    assert r.estimate.value == 0 and r.p_value == 1.0 and r.estimate.mde is None
    assert (r.estimate.lo, r.estimate.hi) == (pytest.approx(-bound), pytest.approx(bound))
    assert r.estimate90.hi == pytest.approx(1 - 0.05 ** (1 / 90))
    with pytest.raises(ValueError, match="one shape"):
        S.paired_rates(a, a[:, :10], np.arange(30))


def test_paired_rates_bootstrap_widens_when_prompts_cluster():
    """Pairs that disagree only on a few prompts: the prompt bootstrap is wider than the independent-pairs
    McNemar MDE says, and its MDE is what the ledger reports."""
    rng = np.random.default_rng(2)
    clusters = np.repeat(np.arange(20), 10)
    a = np.zeros(200, dtype=bool)
    a[clusters < 3] = rng.random(30) < 0.9  # all of a's extra toxicity sits on 3 prompts
    r = S.paired_rates(a, np.zeros(200, dtype=bool), clusters, reps=1000, seed=0)
    assert r.estimate.mde > 1.5 * r.mde_mcnemar


def test_fisher_exact_matches_scipy_and_a_hand_case():
    # 3/3 vs 0/3: one table as extreme on each side, P = 2 / C(6, 3) = 0.1
    assert S.fisher_exact_p(3, 3, 0, 3) == pytest.approx(0.1)
    assert S.fisher_exact_p(7, 20, 2, 25) == pytest.approx(sps.fisher_exact([[7, 13], [2, 23]]).pvalue)
    assert S.fisher_exact_p(1, 0, 1, 2) == 1.0
