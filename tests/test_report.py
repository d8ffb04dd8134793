"""The claims ledger (fairl_lib/analysis/report.py): verdict rules on small hand-made metrics dicts."""
from __future__ import annotations

import copy

import json
import math

import numpy as np
import pytest
from scipy import stats

from fairl_lib.analysis import report as R
from fairl_lib.analysis import schema as S
from fairl_lib.analysis.report import CONTRADICTED, INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

# ----------------------------------------------------------------------------- statistics


def test_mean_ci_matches_t_interval():
    v = [0.1, 0.3, 0.2, 0.4, 0.25]
    est = R.mean_ci(v)
    half = stats.t.ppf(0.975, 4) * np.std(v, ddof=1) / math.sqrt(5)
    assert est.value == pytest.approx(np.mean(v))
    assert (est.lo, est.hi) == pytest.approx((np.mean(v) - half, np.mean(v) + half))
    assert R.mean_ci([0.5]).lo is None  # one seed: no interval


def test_paired_diff_is_tighter_than_welch_when_seeds_share_luck():
    base = np.array([0.70, 0.75, 0.80, 0.72, 0.78])
    fa = base + np.array([0.010, 0.012, 0.011, 0.009, 0.010])
    paired, welch = R.diff_ci(fa, base, paired=True), R.diff_ci(fa, base, paired=False)
    assert paired.lo > 0  # a consistent gain is clear when paired
    assert welch.lo < 0 < welch.hi  # the seed spread hides it unpaired
    assert paired.value == pytest.approx(welch.value)


def test_wilson_and_newcombe():
    w = R.wilson_ci(1001, 1458)
    assert w.lo > 0.5 and w.hi < 0.75
    d = R.rate_diff_ci(9, 100, 4, 100)
    assert d.value == pytest.approx(0.05) and d.lo < 0 < d.hi  # 4% vs 9% of 100 completions overlap
    assert R.rate_diff_ci(90, 1000, 40, 1000).lo > 0


def test_sign_test_interval_is_exact():
    """Clopper-Pearson by hand: k = n = 4 gives lower bound 0.025 ** (1/4) = 0.398 (exact two-sided
    sign test p = 2 / 16 = 0.125, not a win), where Wilson's interval already excludes 1/2."""
    e = R.sign_test_ci(4, 4)
    assert e.lo == pytest.approx(0.025 ** 0.25) and e.hi == 1.0 and e.value == 1.0
    assert R.wilson_ci(4, 4).lo > 0.5
    assert R.verdict_from_ci(e, 0.5, +1) == INCONCLUSIVE
    assert R.sign_test_ci(0, 4).hi == pytest.approx(1 - 0.025 ** 0.25)
    assert R.sign_test_ci(6, 6).lo > 0.5  # 6 vs 0: p = 2 / 64 = 0.031
    assert R.sign_test_ci(1001, 1458).lo > 0.5  # the paper's Table 2


def test_summary_samples_give_welch():
    """Notebook 07's summaries (mean, sample std, n per base LM): Welch's t, no pairing across LMs."""
    a, b = R.Sample(0.8, 0.01, 5), R.Sample(0.7, 0.01, 5)
    est = R.sample_diff(a, b)
    se = math.sqrt(2 * 0.01 ** 2 / 5)
    dof = 8.0  # equal variances and sizes: Welch-Satterthwaite gives 2 (n - 1)
    assert est.test == R.WELCH_T and est.lo == pytest.approx(0.1 - stats.t.ppf(0.975, dof) * se)
    assert est.mde == pytest.approx((stats.t.ppf(0.975, dof) + stats.t.ppf(0.8, dof)) * se)
    assert R.sample_diff(a, R.Sample(0.7, None, 1)).lo is None  # one seed: no interval


def test_variance_ratio_interval_contains_truth_direction():
    rng = np.random.default_rng(0)
    small, big = rng.normal(0, 0.01, 30), rng.normal(0, 0.1, 30)
    assert R.verdict_from_ci(R.variance_ratio_ci(small, big), 1.0, -1) == REPRODUCED
    assert R.verdict_from_ci(R.variance_ratio_ci(big, small), 1.0, -1) == R.OPPOSITE


def test_slope_ci():
    x = [0, 0, 0.5, 0.5, 1, 1]
    est = R.slope_ci(x, [0.9, 0.92, 0.7, 0.72, 0.5, 0.52])
    assert est.value == pytest.approx(-0.4) and est.hi < 0
    assert est.mde == pytest.approx((stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * stats.linregress(
        x, [0.9, 0.92, 0.7, 0.72, 0.5, 0.52]).stderr)


# ----------------------------------------------------------------------------- paired differences, MDE


def test_paired_case_by_hand():
    """Same-seed differences 0.01, 0.03, 0.02, 0.04 (4 seeds): mean 0.025, sd 0.012910, se 0.006455;
    t(0.975, 3) = 3.1824 -> 95% interval 0.025 -+ 0.020543 = [0.00446, 0.04554]: above 0 -> reproduced."""
    base = np.array([0.70, 0.80, 0.75, 0.90])
    est = R.paired_ci(base + [0.01, 0.03, 0.02, 0.04], base)
    assert est.test == R.PAIRED_T and est.n == 4
    assert est.value == pytest.approx(0.025)
    assert (est.lo, est.hi) == pytest.approx((0.00446, 0.04554), abs=1e-5)
    assert R.verdict_from_ci(est, 0.0, +1, paper_value=0.028) == REPRODUCED
    assert R.below_paper(est, 0.0, +1, 0.028) is False  # the interval reaches the paper's +0.028
    # a seed missing on one side drops that seed from both (pairs stay pairs)
    assert R.paired_ci([0.71, np.nan, 0.77, 0.94], base).n == 3


def test_mde_by_hand():
    """Paired t, the same 4 differences: (t(0.975, 3) + t(0.80, 3)) * se = (3.1824 + 0.9785) * 0.006455
    = 0.026859. Sign test on 16 disagreements: (1.95996 + 0.84162) * 0.5 / 4 = 0.35020 (share above 1/2).
    Rates 0/100 vs 0/100: p = 2 / 204, (1.95996 + 0.84162) * sqrt(p (1 - p) 0.02) = 0.03904."""
    base = np.array([0.70, 0.80, 0.75, 0.90])
    assert R.paired_ci(base + [0.01, 0.03, 0.02, 0.04], base).mde == pytest.approx(0.026859, abs=2e-6)
    assert R.mde_t(0.006455, 3) == pytest.approx(0.026858, abs=2e-6)
    assert R.sign_test_ci(10, 16).mde == pytest.approx(0.35020, abs=1e-5)
    assert R.rate_diff_ci(0, 100, 0, 100).mde == pytest.approx(0.03904, abs=1e-5)
    # F: a true variance ratio at the MDE is found (F below its 2.5% point) with probability 0.80
    est = R.variance_ratio_ci(np.arange(5.0), np.arange(5.0) * 2)
    assert stats.f.cdf(stats.f.ppf(0.025, 4, 4) / est.mde, 4, 4) == pytest.approx(0.80)
    assert "paired t, n = 4" in R.paired_ci(base + 0.01, base).mde_text()


def test_contradicted_and_inconclusive_against_the_papers_effect():
    """The paper's Table 1 AUC gap is +0.028. A tight interval around 0 excludes it: contradicted (the old
    rule said inconclusive); a wide one holds 0 and +0.028 alike: inconclusive."""
    base = np.array([0.88, 0.90, 0.86, 0.89, 0.91])
    tight = R.paired_ci(base + [0.001, -0.001, 0.002, 0.000, -0.002], base)
    assert tight.lo < 0 < tight.hi < 0.028
    assert R.verdict_from_ci(tight, 0.0, +1, paper_value=0.028) == CONTRADICTED
    assert R.verdict_from_ci(tight, 0.0, +1) == INCONCLUSIVE  # no paper number: only the other side contradicts
    wide = R.paired_ci(base + [0.05, -0.04, 0.03, -0.02, 0.01], base)
    assert wide.lo < 0 and wide.hi > 0.028
    assert R.verdict_from_ci(wide, 0.0, +1, paper_value=0.028) == INCONCLUSIVE
    assert wide.mde > 0.028 > tight.mde  # the wide run could not have detected the paper's effect


# ----------------------------------------------------------------------------- verdict rules


@pytest.mark.parametrize("lo,hi,direction,paper,expected", [
    (0.01, 0.05, +1, None, REPRODUCED), (-0.05, -0.01, +1, None, R.OPPOSITE), (-0.01, 0.02, +1, None, INCONCLUSIVE),
    (-0.05, -0.01, -1, None, REPRODUCED), (0.01, 0.05, -1, None, R.OPPOSITE),
    (-0.01, 0.02, +1, 0.028, CONTRADICTED), (-0.01, 0.03, +1, 0.028, INCONCLUSIVE),
    (0.001, 0.02, +1, 0.028, REPRODUCED),  # the direction holds, the effect is smaller than the paper's
    (-0.02, 0.01, -1, -0.058, CONTRADICTED), (-0.07, 0.01, -1, -0.058, INCONCLUSIVE),
    (-0.01, 0.02, +1, -0.03, INCONCLUSIVE),  # a paper number on the wrong side counts as 0
])
def test_verdict_from_ci(lo, hi, direction, paper, expected):
    est = R.Estimate((lo + hi) / 2, lo, hi, 5)
    assert R.verdict_from_ci(est, 0.0, direction, paper) == expected
    assert R.below_paper(est, 0.0, direction, paper) == (expected == REPRODUCED and paper is not None)


def test_verdict_without_interval_or_estimate():
    assert R.verdict_from_ci(R.Estimate(0.3), 0.0, +1, 0.1) == INCONCLUSIVE
    assert R.verdict_from_ci(None) == NOT_RUN


def test_combine_verdicts():
    assert R.combine_verdicts([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert R.combine_verdicts([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert R.combine_verdicts([REPRODUCED, CONTRADICTED, INCONCLUSIVE]) == CONTRADICTED
    assert R.combine_verdicts([REPRODUCED, NOT_REPRODUCED]) == NOT_REPRODUCED
    assert R.combine_verdicts([]) == NOT_RUN


# ----------------------------------------------------------------------------- hand-made metrics
# Every fixture is a complete metrics dict in the one layout the schema describes (fairl_lib/analysis/schema.py),
# checked with schema.validate, so the ledger is tested on what the notebooks write.


def _per_seed_table1(gain: float, noise: float = 0.002, n: int = 5, seed: int = 1) -> dict:
    """``{method: {metric: [per seed]}}``: every FA-IRL variant = baseline + gain (common seed luck)."""
    rng = np.random.default_rng(seed)
    luck = rng.normal(0, 0.02, n)
    jitter = lambda: rng.normal(0, noise, n)
    out = {}
    for m in S.METHODS:
        g = gain if m in R.FA_METHODS else 0.0
        out[m] = {"f1": list(0.75 + luck + g + jitter()), "auc": list(0.88 + luck + g + jitter()),
                  "starc": list(0.7 + luck - g + jitter()), "accuracy": list(0.8 + luck + g + jitter())}
    return out


def _summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}  # population std, as notebook 05


FA, BASE = "me_fa_margin", "me_irl"  # the preregistered pair of the fixtures


def _interval(diffs, level: float) -> list[float]:
    """A stand-in for notebook 05's bootstrap in the fixtures: the t interval of the per-seed differences."""
    d = np.asarray(diffs, float)
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return [float(d.mean() - half), float(d.mean() + half)]


def _comparison(per: dict, metric: str) -> dict:
    d = np.subtract(per[FA][metric], per[BASE][metric])
    mde = float((stats.t.ppf(0.975, len(d) - 1) + stats.t.ppf(0.8, len(d) - 1)) * d.std(ddof=1) / math.sqrt(len(d)))
    return {"value": float(d.mean()), "ci95": _interval(d, 0.95), "ci90": _interval(d, 0.90), "mde": mde,
            "identical": bool(np.all(d == 0)), "per_seed": list(d), "covers": "training seeds (fixture)"}


def _disagreement(table2: dict, table3: dict, n_seeds: int) -> dict:
    """Pooled Tables 2-3 with exact (Clopper-Pearson) intervals of the share standing in for the bootstrap, and
    Table 3's relative increase with a normal interval."""
    def share(c: dict) -> dict:
        k, n = c["only_fa"], c["only_fa"] + c["only_irl"]
        if n == 0:
            return {"value": None, "ci95": None, "ci90": None, "mde": None}
        e95, e90 = R.sign_test_ci(k, n), R.sign_test_ci(k, n, level=0.90)
        return {"value": k / n, "ci95": [e95.lo, e95.hi], "ci90": [e90.lo, e90.hi], "mde": e95.mde}

    def relative(c: dict) -> dict | None:
        right_fa, right_irl = c["both"] + c["only_fa"], c["both"] + c["only_irl"]
        if right_irl == 0:
            return None
        v = right_fa / right_irl - 1
        se = math.sqrt(c["only_fa"] + c["only_irl"]) / right_irl
        return {"value": v, "ci95": [v - 1.96 * se, v + 1.96 * se], "ci90": [v - 1.645 * se, v + 1.645 * se],
                "mde": 2.8 * se}
    subs = {}
    for sub in S.SUBTYPES:
        c = {"both": 100, "neither": 10, **table3.get(sub, {"only_fa": 0, "only_irl": 0})}
        subs[sub] = {"counts": c, "n_comments": sum(c.values()), "relative_increase": relative(c)}
    return {"counts": dict(table2), "n_seeds": n_seeds, "n_comments": sum(table2.values()), "reps": 0,
            "share": share(table2), "subtypes": subs}


def _failure_slice(per_seed: list[float]) -> dict:
    """Notebook 05's failure-slice comparison with the t interval of ``per_seed`` standing in for the bootstrap."""
    d = np.asarray(per_seed, float)
    return {"fa": 0.30 + float(d.mean()), "control": 0.30, "n_slice_pairs": 400.0, "per_seed": list(d),
            "difference": {"value": float(d.mean()), "ci95": _interval(d, 0.95), "ci90": _interval(d, 0.90),
                           "mde": 0.01}}


def _m05(in_domain: dict | None = None, jigsaw: dict | None = None, table2_jigsaw: dict | None = None,
         table3_jigsaw: dict | None = None, best: dict | None = None, acting: dict | None = None) -> dict:
    """Notebook 05's metrics from per-seed values ``{method: {metric: [...]}}`` per set (default: no gain):
    ``per_seed`` (what the ledger reads) and the ``table1`` summary beside it; ``best`` (default: the same
    values) is the best-against-best block, ``acting`` its FA methods' flags (default: all act)."""
    in_domain = in_domain or _per_seed_table1(0.0)
    n = len(in_domain["me_irl"]["f1"])
    sets = {"in_domain": in_domain, "jigsaw": jigsaw or _per_seed_table1(0.0, n=n, seed=2)}
    zero = {"both": 5, "only_fa": 0, "only_irl": 0, "neither": 5}
    m = {"n": {"seeds": n},
         "per_seed": {"seeds": list(range(n)), **sets},
         "table1": {st: {meth: {k: _summary(v) for k, v in row.items()} for meth, row in per.items()}
                    for st, per in sets.items()},
         "seed_dispersion": {meth: {"in_domain std starc": float(np.std(sets["in_domain"][meth]["starc"]))}
                             for meth in S.METHODS},
         "table2_seed": 0, "table2": {"train": dict(zero), "jigsaw": table2_jigsaw or dict(zero)},
         "table3": {"jigsaw": {sub: (table3_jigsaw or {}).get(sub, {"only_fa": 0, "only_irl": 0})
                               for sub in S.SUBTYPES}},
         "penalty_sweep": {"scales": [1.0], "main_scale": 1.0, "by_scale": {}},
         "per_seed_best": {"seeds": list(range(n)), "in_domain": copy.deepcopy(best or in_domain),
                           "jigsaw": copy.deepcopy(sets["jigsaw"]),
                           "acting": acting or {fa: True for fa in S.METHODS if "_fa_" in fa}},
         "tuning": {"trials_per_method": {meth: 4 for meth in S.METHODS}},
         "preregistered": {"fa_method": FA, "baseline": BASE,
                           "acting": (acting or {}).get(FA, True), "flip_share": 0.05, "flip_share_init": 0.01,
                           "comparisons": {st: {mt: _comparison(best if (best and st == "in_domain") else per, mt)
                                                for mt in ("f1", "auc", "starc", "accuracy")}
                                           for st, per in sets.items()},
                           "disagreement": _disagreement(table2_jigsaw or dict(zero), table3_jigsaw or {}, n),
                           "failure_slice": _failure_slice([0.02, 0.03, 0.01, 0.025, 0.015])},
         "eq3_as_printed": {"flip_share_max": 0.0},
         "in_domain_by_pair_type": {}, "fig3_left": {},
         "jigsaw_learning_curve": {"n_tnt": [0, 10], "n_other": 5, "ground_truth_auc": 0.9,
                                   "methods": {meth: {"mean": [0.5, 0.6]} for meth in S.METHODS}}}
    S.validate("05_tables", m)
    return m


def _ledger(mets: dict) -> dict[str, R.Entry]:
    return {e.id: e for e in R.build_ledger(mets)}


def test_table1_reads_the_preregistered_comparison():
    """A 0.05 gain under seed luck of sd 0.02: the preregistered pair's interval clears 0 and the gain exceeds
    the effect of interest; a 0.05 loss is the opposite; the paper's effect is its gap between the same pair."""
    led = _ledger({"05": _m05(_per_seed_table1(+0.05))})
    e = led["table1_f1"]
    assert e.verdict == REPRODUCED and e.details["fa_method"] == FA and e.details["baseline"] == BASE
    assert e.effect_of_interest == pytest.approx(R.LedgerConfig().effect_f1)
    assert e.paper_effect == pytest.approx(R.paper_pair_effect(FA, BASE, "f1"))
    per = _m05(_per_seed_table1(+0.05))["per_seed"]["in_domain"]
    assert e.estimate.value == pytest.approx(np.mean(np.subtract(per[FA]["f1"], per[BASE]["f1"])))
    assert led["table1_starc"].verdict == REPRODUCED
    assert _ledger({"05": _m05(_per_seed_table1(-0.05))})["table1_auc"].verdict == R.OPPOSITE
    e = _ledger({"05": _m05(_per_seed_table1(0.0, noise=0.03, n=4))})["table1_f1"]
    assert e.verdict == INCONCLUSIVE and e.underpowered and e.to_dict()["underpowered"]


def test_jigsaw_accuracy_gain_and_the_scarce_pairs_claim():
    led = _ledger({"05": _m05(_per_seed_table1(+0.05), _per_seed_table1(+0.08, seed=2))})
    e = led["jigsaw_accuracy_gain"]
    assert e.paper_effect == pytest.approx(0.0544) and e.verdict == REPRODUCED
    # App. D: FA-IRL no better than its baseline at the lowest fraction -> reproduced; clearly better -> opposite
    m5 = _m05()
    assert _ledger({"06": _pairmix(-0.6, -0.2), "05": m5})["fig4_scarce"].verdict == REPRODUCED
    better = _pairmix(-0.6, -0.2)
    for s, v in enumerate(better["pair_mix"]["0"]["methods"][FA]["per_seed"]):
        better["pair_mix"]["0"]["methods"][FA]["per_seed"][s] = v - 0.2
    assert _ledger({"06": better, "05": m5})["fig4_scarce"].verdict == R.OPPOSITE


def test_a_gain_smaller_than_the_effect_of_interest_is_not_reproduced():
    """+0.004 on every seed with tiny noise: the interval clears 0, but the gain is below the AUC's effect of
    interest (0.01): negligible, never reproduced; with the effect of interest set to 0 the old rule returns."""
    m = _m05(_per_seed_table1(+0.004, noise=0.0005, n=8))
    e = _ledger({"05": m})["table1_auc"]
    assert e.estimate.lo > 0 and e.verdict == R.NEGLIGIBLE
    led0 = {x.id: x for x in R.build_ledger({"05": m}, ledger=R.LedgerConfig(effect_auc=0.0))}
    assert led0["table1_auc"].verdict == REPRODUCED


def test_identical_arms_and_a_failure_path_that_does_not_act():
    same = _per_seed_table1(0.0, noise=0.0)
    for m in S.METHODS:
        same[m] = copy.deepcopy(same[BASE])
    e = _ledger({"05": _m05(same)})["table1_auc"]
    assert e.verdict == R.IDENTICAL
    acting = {fa: fa != FA for fa in S.METHODS if "_fa_" in fa}
    e = _ledger({"05": _m05(_per_seed_table1(+0.05), acting=acting)})["table1_f1"]
    assert e.verdict == INCONCLUSIVE and "does not act" in e.ours


def test_table1_negligible_on_a_tight_null_result():
    """FA-IRL = baseline + 0 +- 0.0005 per seed: the 90% interval of the AUC gap lies inside +-0.01: negligible
    (it also excludes the paper's +0.028, but a null effect is the stronger statement)."""
    e = _ledger({"05": _m05(_per_seed_table1(0.0, noise=0.0005, n=8))})["table1_auc"]
    assert e.verdict == R.NEGLIGIBLE and e.estimate.hi < 0.028


def test_jigsaw_claims_read_the_jigsaw_set_only():
    led = _ledger({"05": _m05(_per_seed_table1(+0.05), _per_seed_table1(-0.05))})
    assert led["table1_f1"].verdict == REPRODUCED and led["jigsaw_f1"].verdict == R.OPPOSITE
    assert led["jigsaw_f1"].paper_effect is None  # the paper gives no Jigsaw numbers


def test_missing_preregistered_block_fails_loudly():
    """A notebook 05 file from before the preregistered comparison is not guessed around: the ledger stops."""
    m = _m05()
    del m["preregistered"]
    with pytest.raises(R.MissingMetrics, match="preregistered"):
        R.build_ledger({"05": m})


def test_seed_variance():
    rng = np.random.default_rng(3)
    per = {m: {k: list(0.7 + rng.normal(0, 0.001 if "_fa_" in m else 0.05, 12)) for k in ("f1", "auc", "starc", "accuracy")}
           for m in S.METHODS}
    e = _ledger({"05": _m05(per)})["seed_variance"]
    assert e.verdict == REPRODUCED and "ratio" in e.detectable and e.compared.startswith(R.METHOD_LABELS[FA])
    per = {m: {k: list(0.7 + rng.normal(0, 0.05 if "_fa_" in m else 0.001, 12)) for k in ("f1", "auc", "starc", "accuracy")}
           for m in S.METHODS}
    assert _ledger({"05": _m05(per)})["seed_variance"].verdict == R.OPPOSITE


def test_tables_2_and_3():
    m = _m05(table2_jigsaw={"both": 700, "only_fa": 100, "only_irl": 45, "neither": 155},
             table3_jigsaw={"obscene": {"only_fa": 60, "only_irl": 10}, "threat": {"only_fa": 5, "only_irl": 4},
                            "insult": {"only_fa": 40, "only_irl": 10}, "identity_hate": {"only_fa": 30, "only_irl": 5}})
    led = _ledger({"05": m})
    assert led["table2_disagreement"].verdict == REPRODUCED
    assert led["table2_disagreement"].paper_effect == pytest.approx(1001 / 1458)
    t3 = led["table3_subtypes"]
    assert t3.details["subtypes"]["threat"]["verdict"] == INCONCLUSIVE  # 9 disagreements: underpowered
    assert "underpowered" in t3.details["subtypes"]["threat"]["why"]
    assert t3.details["subtypes"]["obscene"]["verdict"] == REPRODUCED and t3.verdict == INCONCLUSIVE
    # the paper's own Table 3 quantity reproduces its "8.1%"
    assert np.mean(list(R.PAPER_TABLE3_RELATIVE.values())) == pytest.approx(0.0806, abs=5e-4)

    def with_counts(fa: int, irl: int) -> R.Entry:
        return _ledger({"05": _m05(table2_jigsaw={"both": 700, "only_fa": fa, "only_irl": irl, "neither": 155})}
                       )["table2_disagreement"]
    assert with_counts(40, 100).verdict == R.OPPOSITE
    e = with_counts(550, 450)  # a clear win, far smaller than the paper's share 0.69
    assert e.verdict == REPRODUCED and "smaller than the paper's" in e.ours
    assert with_counts(500, 500).verdict == R.NEGLIGIBLE  # an even split of 1,000: no effect of interest
    e = with_counts(20, 5)  # clear-looking but fewer than 30 disagreements
    assert e.verdict == INCONCLUSIVE and "25 disagreements" in e.details["underpowered"]
    e = with_counts(0, 0)
    assert e.verdict == INCONCLUSIVE and "no disagreements" in e.detectable


def _m03(strict_random: float = 0.83, sharpen: bool = False) -> dict:
    m = {"n_draws": 100, "never_larger_fraction": 1.0, "strictly_smaller_fraction": 1.0,
         "strictly_smaller_fraction_random_failures": strict_random, "frac_binds_random_failures": strict_random,
         "mean_arc_width_base": 1.1, "mean_arc_width_fa": 0.9, "maxent_upweight_inclusion_holds": True,
         "maxent_sharpen_inclusion_holds": sharpen}
    S.validate("03_theory_toy", m)
    return m


def test_theory_toy_exact_claims():
    led = _ledger({"03": _m03()})
    assert led["theorem1_inclusion"].verdict == REPRODUCED
    assert led["theorem1_strict"].verdict == NOT_REPRODUCED
    assert "binds in 83.0%" in led["theorem1_strict"].ours
    assert led["appb_upweight"].verdict == REPRODUCED
    assert led["appb_sharpen"].verdict == NOT_REPRODUCED


PAPER_MIX = {"fa_method": "me_fa_margin", "baseline": "me_irl", "tnt_share": {"train": 0.36, "test": 0.36},
                "acting": True, "flip_share": 0.03, "flip_share_init": 0.01, "share": 0.36,
                "comparisons": {st: {mt: {"value": 0.01, "ci95": [-0.01, 0.03], "ci90": [-0.005, 0.025], "mde": 0.02}
                                     for mt in ("f1", "auc", "starc")} for st in ("in_domain", "jigsaw")}}


def _pairmix(slope_fa: float, slope_base: float, noise: float = 0.005, seeds: int = 4, skip_top: bool = False,
             acts: bool = True):
    rng = np.random.default_rng(5)
    rows = {}
    for f in (0.0, 0.25, 0.5, 1.0):
        skipped = skip_top and f == 1.0
        methods = {} if skipped else {
            m: {"per_seed": list(0.8 + (slope_fa if m in R.FA_METHODS else slope_base) * f + rng.normal(0, noise, seeds))}
            | ({"flip_share": 0.05, "flip_share_init": 0.01, "acts": acts} if m in R.FA_METHODS else {})
            for m in S.METHODS}
        rows[f"{f:g}"] = {"status": "skipped" if skipped else "ok", "methods": methods}
    m = {"methods": list(S.METHODS), "n_seeds": seeds, "total_pairs_used": 40, "random_reward_starc": {},
         "paper_mix": PAPER_MIX,
         "fractions_run": [float(k) for k, r in rows.items() if r["status"] != "skipped"],
         "fractions_skipped": [float(k) for k, r in rows.items() if r["status"] == "skipped"], "pair_mix": rows}
    S.validate("06_pair_mix", m)
    return m


def test_pair_mix_claims():
    m5 = _m05()
    led = _ledger({"06": _pairmix(-0.6, -0.2), "05": m5})
    assert led["fig4_trend"].verdict == REPRODUCED
    assert led["fig4_fastest"].verdict == REPRODUCED
    assert led["fig4_lowest"].verdict == REPRODUCED
    led = _ledger({"06": _pairmix(-0.2, -0.6), "05": m5})
    assert led["fig4_fastest"].verdict == R.OPPOSITE and led["fig4_lowest"].verdict == R.OPPOSITE
    led = _ledger({"06": _pairmix(0.2, 0.2), "05": m5})
    assert led["fig4_trend"].verdict == R.OPPOSITE
    assert _ledger({"06": _pairmix(-0.6, -0.2)})["fig4_fastest"].verdict == NOT_RUN  # needs notebook 05's pair
    # the control: a random reward whose STARC falls as steeply (0.5 per unit) leaves no trend of its own
    steep_random = _pairmix(-0.6, -0.2)
    steep_random["random_reward_starc"] = {"0": 1.5, "1": 1.0}
    e = _ledger({"06": steep_random, "05": m5})["fig4_trend"]
    assert e.verdict != REPRODUCED and e.details["random_reward_slope"] == pytest.approx(-0.5)
    # skipped fractions are ignored, not read as results
    assert _ledger({"06": _pairmix(-0.6, -0.2, skip_top=True), "05": m5})["fig4_lowest"].details["fraction"] == 0.5
    # a sweep where only fraction 0 could be filled: it ran, but cannot test the claims
    only0 = _pairmix(-0.6, -0.2)
    for f in ("0.25", "0.5", "1"):
        only0["pair_mix"][f] = {"status": "skipped", "methods": {}}
    led = _ledger({"06": only0, "05": m5})
    assert {led[k].verdict for k in ("fig4_trend", "fig4_fastest", "fig4_lowest")} == {INCONCLUSIVE}


def test_a_claim_whose_failure_path_does_not_act_on_its_own_pairs_is_not_decided():
    """Notebook 05's check is on notebook 02's pairs; notebooks 06-08 train on their own. Where the FA
    configuration's R_F acts on none of them, FA-IRL is its baseline there and a decided verdict would
    compare IRL with itself."""
    m5 = _m05()
    led = _ledger({"06": _pairmix(-0.6, -0.2, acts=False), "05": m5, "08": _m08(0.02, 0.08, 0.16, acts=False)})
    for k in ("fig4_fastest", "fig4_lowest", "rerlhf_order"):
        assert led[k].verdict == INCONCLUSIVE and "FA-IRL is its baseline there" in led[k].ours, k
    # a base model on whose pairs the path does not act: Figure 5 compares FA-IRL at two sizes, so it needs both
    leaf = lambda m, s: {"mean": m, "ci_low": m - 0.01, "ci_high": m + 0.01, "std": s, "n": 5}
    small = {"params_millions": 134.5, "accuracy": leaf(0.70, 0.005), "starc": leaf(0.8, 0.005)}
    large = {"params_millions": 268.1, "accuracy": leaf(0.75, 0.005), "starc": leaf(0.7, 0.005), "acts": False}
    e = _ledger({"07": _m07({"smollm2-135m": small, "gemma3-270m": large})})["fig5_size"]
    assert e.verdict == INCONCLUSIVE and "it acts on 1 of 2" in e.ours
    assert led["fig4_fastest"].details["acting_own_pairs"]["fraction 0.5"]["acts"] is False
    led = _ledger({"06": _pairmix(-0.6, -0.2), "05": m5, "08": _m08(0.02, 0.08, 0.16)})
    assert led["fig4_fastest"].verdict == REPRODUCED and "it acts on 4 of 4" in led["fig4_fastest"].ours
    assert led["rerlhf_order"].verdict == REPRODUCED


def test_failure_slice_claim_against_its_control():
    """FA ranks 2 points more of the baseline's slice right than the baseline of another seed does: reproduced
    (effect of interest 0.01); half a point with a tight interval: negligible; the other way: opposite."""
    m5 = _m05()
    assert _ledger({"05": m5})["failure_slices"].verdict == REPRODUCED
    m5["preregistered"]["failure_slice"] = _failure_slice([0.001, -0.002, 0.0015, -0.001, 0.0005])
    assert _ledger({"05": m5})["failure_slices"].verdict == R.NEGLIGIBLE
    m5["preregistered"]["failure_slice"] = _failure_slice([-0.03, -0.04, -0.02, -0.035, -0.025])
    e = _ledger({"05": m5})["failure_slices"]
    assert e.verdict == R.OPPOSITE and "of another seed" in e.compared


def _m07(rows: dict) -> dict:
    """Notebook 07: ``{size_lm: {params_millions, accuracy: {mean, std, n, ci_low, ci_high}, starc, ...}}``."""
    m = {lm: {"n_pairs": 100, "pair_types": {}, **row,
              "by_method": {"me_fa_margin": {"accuracy": row["accuracy"], "starc": row["starc"]}},
              "failure_path": {"me_fa_margin": {"flip_share_mean": 0.05, "flip_share_init_mean": 0.01,
                                                "acts": row.get("acts", True)}}}
         for lm, row in rows.items()}
    m["settings"] = {"size_lms": list(rows), "methods": ["me_fa_margin"]}
    S.validate("07_model_size", m)
    return m


def test_model_size_layout_of_notebook_07():
    leaf = lambda m, s: {"mean": m, "ci_low": m - 0.01, "ci_high": m + 0.01, "std": s, "n": 5}
    small = {"params_millions": 134.5, "accuracy": leaf(0.70, 0.005), "starc": leaf(0.8, 0.005)}
    large = {"params_millions": 268.1, "accuracy": leaf(0.75, 0.005), "starc": leaf(0.7, 0.005)}
    e = _ledger({"07": _m07({"smollm2-135m": small, "gemma3-270m": large})})["fig5_size"]
    assert e.verdict == REPRODUCED and e.compared == "gemma3-270m vs smollm2-135m"
    assert _ledger({"07": _m07({"smollm2-135m": small})})["fig5_size"].verdict == INCONCLUSIVE


def _m08(gt: float, fa: float, irl: float, n: int = 512, runs: tuple[float, float] | None = None,
         acts: bool = True) -> dict:
    """Notebook 08: the learned arms have two training runs at ``rate +- runs_offset`` (default: equal)."""
    def arm(rate: float, n_runs: int) -> dict:
        offs = (0.0, 0.0) if runs is None or n_runs == 1 else runs
        rr = [{"train_seed": i, "rlhf_seed": i, "toxicity_rate": rate + offs[i], "judge_rate": rate,
               "n_completions": n // n_runs} for i in range(n_runs)]
        return {"toxicity_rate_final": rate, "n_completions_final": n, "judge_rate_final": rate, "kl_final": 0.1,
                "perplexity_final": 30.0, "paper_toxicity_rate": 0.05, "n_runs": n_runs,
                "between_run_spread": abs(offs[0] - offs[1]) if n_runs > 1 else math.nan, "runs": rr}
    m = {"base": {"toxicity_rate": 0.2, "judge_rate": 0.2}, "ground_truth": arm(gt, 1), "fa_irl": arm(fa, 2),
         "irl": arm(irl, 2)}
    m["fa_irl"]["failure_path"] = {"flip_share": 0.05, "flip_share_init": 0.01, "acts": acts}
    S.validate("08_rerlhf", m)
    return m


def test_rerlhf_with_training_runs_as_the_unit():
    assert _ledger({"08": _m08(0.02, 0.08, 0.16)})["rerlhf_order"].verdict == REPRODUCED
    assert _ledger({"08": _m08(0.02, 0.17, 0.16)})["rerlhf_order"].verdict == INCONCLUSIVE  # 17% vs 16%: overlap
    assert _ledger({"08": _m08(0.02, 0.30, 0.16)})["rerlhf_order"].verdict == R.OPPOSITE  # FA-IRL worse than IRL
    e = _ledger({"08": _m08(0.04, 0.06, 0.09, n=100_000)})["rerlhf_order"]
    assert e.verdict == REPRODUCED and e.details["paper_gaps"] == {"fa_irl - ground_truth": 0.02, "irl - fa_irl": 0.03}
    assert "random effects" in e.detectable and e.details["headroom_share_closed"] == pytest.approx(0.6)
    # the same rates, but the two training runs of each learned arm ended 7 points apart: the between-run
    # variance enters the interval and the ordering is no longer decided
    e = _ledger({"08": _m08(0.02, 0.08, 0.16, runs=(-0.035, 0.035))})["rerlhf_order"]
    assert e.verdict == INCONCLUSIVE and e.details["between_run_variance"] > 0 and "training runs" in e.covers


def test_missing_file_is_not_run():
    led = R.build_ledger({})
    assert {e.verdict for e in led} == {NOT_RUN}
    assert all("not run" in e.details["missing"] for e in led)
    assert "05_tables.json" in _ledger({})["table1_f1"].details["missing"]


def test_missing_key_in_an_existing_file_fails_loudly():
    """A file that exists but lacks a key a claim reads is not papered over: the ledger raises, naming the
    notebook and the key path."""
    m = _m05()
    del m["preregistered"]["comparisons"]["jigsaw"]["auc"]["ci90"]
    with pytest.raises(R.MissingMetrics) as err:
        R.build_ledger({"05": m})
    path = "preregistered.comparisons.jigsaw.auc.ci90"
    assert err.value.notebook == "05_tables" and err.value.missing == (path,)
    assert "05_tables" in str(err.value) and path in str(err.value)
    with pytest.raises(R.MissingMetrics, match="preregistered"):
        R.build_ledger({"05": {"something_else": 1}})
    m7 = _m07({"smollm2-135m": {"params_millions": 134.5, "accuracy": {"mean": 0.7, "std": 0.01, "n": 5,
                                                                        "ci_low": 0.6, "ci_high": 0.8},
                                 "starc": {"mean": 0.7, "std": 0.01, "n": 5, "ci_low": 0.6, "ci_high": 0.8}}})
    del m7["settings"]
    with pytest.raises(R.MissingMetrics, match="settings.size_lms"):
        R.build_ledger({"07": m7})


def test_notebooks_are_the_schema_stems():
    assert R.NOTEBOOKS["05"] == "05_tables" and R.NOTEBOOKS["04"] == "04_fairl_training"
    assert set(R.NOTEBOOKS.values()) == set(S.SCHEMA)
    for c in R.CLAIMS:
        assert all(nb in R.NOTEBOOKS for nb in c.notebooks)


def test_ledger_json_and_report_files(results_tmp):
    from fairl_lib import make_config

    cfg = make_config("smoke", notebook="11_reproduction_report")
    res = cfg.results_dir
    (res / "metrics").mkdir(parents=True)
    (res / "figures").mkdir()
    (res / "figures" / "fig4_pair_mix_starc.png").write_bytes(b"png")
    (res / "metrics" / "06_pair_mix.json").write_text(json.dumps(_pairmix(-0.6, -0.2)))
    (res / "metrics" / "03_theory_toy.json").write_text("{not json")  # a broken file is skipped, not fatal
    (res / "metrics" / "05_evaluation.json").write_text("{}")  # not a schema stem: never read
    (res / "run.json").write_text(json.dumps({"git_commit": "abc", "status": "ok",
                                              "notebooks": {"06_pair_mix": {"status": "ok", "seconds": 3.0}}}))
    ledger, text, path = R.write_report(cfg)
    assert path == res / "REPORT.md" and path.read_text() == text
    assert "![fig4_pair_mix_starc](figures/fig4_pair_mix_starc.png)" in text
    assert "fig2_feasible_cone" not in text  # only figures that exist are linked
    assert "profile `smoke`" in text and "commit `abc`" in text
    # the report opens like a reproducibility report: summary (scope ... questions), then the ledger
    assert text.index("## Summary") < text.index("**Questions for the authors.**") < text.index("## The ledger")
    assert "up to 24%" in text and not any(ord(ch) > 0x2FFF for ch in text)  # no emoji marks
    d = R.ledger_dict(ledger)
    assert set(d) == set(R.CLAIM_IDS)
    assert d["fig4_trend"]["verdict"] == REPRODUCED and d["theorem1_inclusion"]["verdict"] == NOT_RUN
    assert d["table1_f1"]["verdict"] == NOT_RUN
    json.dumps(d, allow_nan=False)  # plain JSON
    assert sum(R.verdict_counts(ledger).values()) == len(R.CLAIMS)


def test_the_paper_mix_paragraph_reads_notebook_06():
    """Table 1 at the paper's mix is a sensitivity paragraph, not a verdict: each difference against the effect
    of interest (an interval inside +-0.01 for AUC is 'inside'; one that spans 0 and more is 'spans 0')."""
    m6 = _pairmix(-0.6, -0.2)
    lines = R.paper_mix_lines({"06": m6})
    assert len(lines) == 1 and "36% T->NT in training" in lines[0] and "failure path acts" in lines[0]
    assert "in_domain auc +0.010 [-0.010, +0.030] (spans 0)" in lines[0]
    m6 = copy.deepcopy(m6)
    m6["paper_mix"]["comparisons"]["jigsaw"]["auc"].update({"value": 0.001, "ci95": [-0.004, 0.005]})
    assert "jigsaw auc +0.001 [-0.004, +0.005] (inside +- the effect of interest)" in R.paper_mix_lines({"06": m6})[0]
    assert R.paper_mix_lines({}) == []
