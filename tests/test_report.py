"""The claims ledger (fairl_lib/analysis/report.py): verdict rules on small hand-made metrics dicts."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from fairl_lib.analysis import report as R
from fairl_lib.analysis.report import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

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
    a = R.sample_from_leaf({"mean": 0.8, "std": 0.01}, n_default=5)  # population std (metrics.mean_std)
    b = R.sample_from_leaf({"mean": 0.7, "std": 0.01, "n": 5})
    assert a.n == 5 and a.sd == pytest.approx(0.01 * math.sqrt(5 / 4))
    est = R.sample_diff(a, b)
    assert est.lo > 0
    ci_leaf = R.sample_from_leaf({"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "std": 0.1, "n": 5})
    assert ci_leaf.sd == pytest.approx(0.1)  # Student-t summaries are ddof=1 already
    assert R.sample_from_leaf({"mean": 0.5}).ci().lo is None


def test_variance_ratio_interval_contains_truth_direction():
    rng = np.random.default_rng(0)
    small, big = rng.normal(0, 0.01, 30), rng.normal(0, 0.1, 30)
    assert R.verdict_from_ci(R.variance_ratio_ci(small, big), 1.0, -1) == REPRODUCED
    assert R.verdict_from_ci(R.variance_ratio_ci(big, small), 1.0, -1) == NOT_REPRODUCED


def test_slope_ci():
    x = [0, 0, 0.5, 0.5, 1, 1]
    est = R.slope_ci(x, [0.9, 0.92, 0.7, 0.72, 0.5, 0.52])
    assert est.value == pytest.approx(-0.4) and est.hi < 0


# ----------------------------------------------------------------------------- verdict rules


@pytest.mark.parametrize("lo,hi,direction,expected", [
    (0.01, 0.05, +1, REPRODUCED), (-0.05, -0.01, +1, NOT_REPRODUCED), (-0.01, 0.02, +1, INCONCLUSIVE),
    (-0.05, -0.01, -1, REPRODUCED), (0.01, 0.05, -1, NOT_REPRODUCED),
])
def test_verdict_from_ci(lo, hi, direction, expected):
    assert R.verdict_from_ci(R.Estimate((lo + hi) / 2, lo, hi, 5), 0.0, direction) == expected


def test_verdict_without_interval_or_estimate():
    assert R.verdict_from_ci(R.Estimate(0.3), 0.0, +1) == INCONCLUSIVE
    assert R.verdict_from_ci(None) == NOT_RUN


def test_combine_verdicts():
    assert R.combine_verdicts([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert R.combine_verdicts([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert R.combine_verdicts([REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE]) == NOT_REPRODUCED
    assert R.combine_verdicts([]) == NOT_RUN


# ----------------------------------------------------------------------------- hand-made metrics


def _table1(gain: float, noise: float = 0.002, n: int = 5) -> dict:
    """Per-seed in-domain metrics: every FA-IRL variant = baseline + gain (common seed luck)."""
    rng = np.random.default_rng(1)
    luck = rng.normal(0, 0.02, n)
    jitter = lambda: rng.normal(0, noise, n)
    out = {}
    for m in R.METHOD_LABELS:
        g = gain if m in R.FA_METHODS else 0.0
        out[m] = {"f1": list(0.75 + luck + g + jitter()), "auc": list(0.88 + luck + g + jitter()),
                  "starc": list(0.7 + luck - g + jitter())}
    return {"per_seed": {"in_domain": out}}


def _ledger(mets: dict) -> dict[str, R.Entry]:
    return {e.id: e for e in R.build_ledger(mets)}


def test_table1_clear_win_loss_and_overlap():
    assert _ledger({"05": _table1(+0.05)})["table1_f1"].verdict == REPRODUCED
    assert _ledger({"05": _table1(+0.05)})["table1_starc"].verdict == REPRODUCED
    assert _ledger({"05": _table1(-0.05)})["table1_auc"].verdict == NOT_REPRODUCED
    assert _ledger({"05": _table1(0.0, noise=0.02)})["table1_f1"].verdict == INCONCLUSIVE


def test_jigsaw_claims_read_the_jigsaw_set_only():
    mets = {"05": {"per_seed": {"in_domain": _table1(+0.05)["per_seed"]["in_domain"],
                                "jigsaw": _table1(-0.05)["per_seed"]["in_domain"]}}}
    led = _ledger(mets)
    assert led["table1_f1"].verdict == REPRODUCED and led["jigsaw_f1"].verdict == NOT_REPRODUCED
    assert _ledger({"05": _table1(+0.05)})["jigsaw_f1"].verdict == NOT_RUN


def test_table1_from_summary_layout():
    """The layout experiment.summarize writes: {set: {method: {metric: {mean, std}}}}, seeds from n_seeds."""
    summ = {m: {"f1": {"mean": 0.80 if m in R.FA_METHODS else 0.70, "std": 0.01},
                "auc": {"mean": 0.9, "std": 0.01}, "starc": {"mean": 0.5, "std": 0.01}} for m in R.METHOD_LABELS}
    mets = {"05": {"n": {"seeds": 5}, "table1": {"in_domain": summ, "jigsaw": {}}}}
    led = _ledger(mets)
    assert led["table1_f1"].verdict == REPRODUCED and led["table1_f1"].details["interval"] == "Welch"
    assert led["table1_auc"].verdict == INCONCLUSIVE
    mets["05"]["n"]["seeds"] = 1
    assert _ledger(mets)["table1_f1"].verdict == INCONCLUSIVE  # one seed: no interval


def test_seed_variance():
    rng = np.random.default_rng(3)
    per = {m: {"starc": list(0.7 + rng.normal(0, 0.001 if "_fa_" in m else 0.05, 12))} for m in R.METHOD_LABELS}
    e = _ledger({"05": {"per_seed": {"in_domain": per}}})["seed_variance"]
    assert e.verdict == REPRODUCED and len(e.details["variance_ratios"]) == 2
    per = {m: {"starc": list(0.7 + rng.normal(0, 0.05 if "_fa_" in m else 0.001, 12))} for m in R.METHOD_LABELS}
    assert _ledger({"05": {"per_seed": {"in_domain": per}}})["seed_variance"].verdict == NOT_REPRODUCED


def test_tables_2_and_3():
    mets = {"05": {"table2": {"jigsaw": {"both": 700, "only_fa": 100, "only_irl": 45, "neither": 155}},
                   "table3": {"jigsaw": {"obscene": {"both": 9, "only_fa": 60, "only_irl": 10, "neither": 1},
                                         "threat": {"both": 9, "only_fa": 5, "only_irl": 4, "neither": 1}}}}}
    led = _ledger(mets)
    assert led["table2_disagreement"].verdict == REPRODUCED
    assert led["table3_subtypes"].verdict == INCONCLUSIVE  # threat 5 vs 4 is not clear
    assert led["table3_subtypes"].details["subtypes"]["obscene"]["verdict"] == REPRODUCED
    mets["05"]["table2"]["jigsaw"].update(only_fa=40, only_irl=100)
    assert _ledger(mets)["table2_disagreement"].verdict == NOT_REPRODUCED


def test_theory_toy_exact_claims():
    toy = {"never_larger_fraction": 1.0, "strictly_smaller_fraction": 1.0,
           "strictly_smaller_fraction_random_failures": 0.83, "maxent_upweight_inclusion_holds": True,
           "maxent_sharpen_inclusion_holds": False, "n_draws": 100}
    led = _ledger({"03": toy})
    assert led["theorem1_inclusion"].verdict == REPRODUCED
    assert led["theorem1_strict"].verdict == NOT_REPRODUCED
    assert led["appb_upweight"].verdict == REPRODUCED
    assert led["appb_sharpen"].verdict == NOT_REPRODUCED


def _pairmix(slope_fa: float, slope_base: float, noise: float = 0.005, seeds: int = 4, skip_top: bool = False):
    rng = np.random.default_rng(5)
    rows = {}
    for f in (0.0, 0.25, 0.5, 1.0):
        methods = {m: {"per_seed": list(0.8 + (slope_fa if m in R.FA_METHODS else slope_base) * f
                                        + rng.normal(0, noise, seeds))} for m in R.METHOD_LABELS}
        rows[str(f)] = {"status": "skipped" if (skip_top and f == 1.0) else "ok", "methods": methods}
    return {"pair_mix": rows}


def test_pair_mix_claims():
    led = _ledger({"06": _pairmix(-0.4, -0.1)})
    assert led["fig4_trend"].verdict == REPRODUCED
    assert led["fig4_fastest"].verdict == REPRODUCED
    assert led["fig4_lowest"].verdict == REPRODUCED
    led = _ledger({"06": _pairmix(-0.1, -0.4)})
    assert led["fig4_fastest"].verdict == NOT_REPRODUCED and led["fig4_lowest"].verdict == NOT_REPRODUCED
    led = _ledger({"06": _pairmix(0.2, 0.2)})
    assert led["fig4_trend"].verdict == NOT_REPRODUCED
    # skipped fractions are ignored, not read as results
    assert _ledger({"06": _pairmix(-0.4, -0.1, skip_top=True)})["fig4_lowest"].details["fraction"] == 0.5
    # a sweep where only fraction 0 could be filled: it ran, but cannot test the claims
    only0 = _pairmix(-0.4, -0.1)
    for f in ("0.25", "0.5", "1.0"):
        only0["pair_mix"][f] = {"status": "skipped", "methods": {}}
    led = _ledger({"06": only0})
    assert {led[k].verdict for k in ("fig4_trend", "fig4_fastest", "fig4_lowest")} == {INCONCLUSIVE}


def test_model_size_layout_of_notebook_07():
    """experiment 07 writes {size_lm: {params_millions, accuracy: {mean, ci_low, ci_high, std, n}, starc}}."""
    leaf = lambda m, s: {"mean": m, "ci_low": m - 0.01, "ci_high": m + 0.01, "std": s, "n": 5}
    mets = {"07": {"smollm2-135m": {"params_millions": 134.5, "accuracy": leaf(0.70, 0.005), "starc": leaf(0.8, 0.005)},
                   "gemma3-270m": {"params_millions": 268.1, "accuracy": leaf(0.75, 0.005), "starc": leaf(0.7, 0.005)},
                   "settings": {"methods": ["me_fa_margin"]}}}
    e = _ledger(mets)["fig5_size"]
    assert e.verdict == REPRODUCED and e.compared == "gemma3-270m vs smollm2-135m"
    one = {"07": {"smollm2-135m": mets["07"]["smollm2-135m"]}}
    assert _ledger(one)["fig5_size"].verdict == INCONCLUSIVE


def test_rerlhf_layout_of_notebook_08():
    def arm(rate, n=512):
        return {"toxicity_rate_final": rate, "n_completions_final": n}

    mets = {"08": {"base": {"toxicity_rate": 0.2}, "ground_truth": arm(0.02), "fa_irl": arm(0.08), "irl": arm(0.16)}}
    assert _ledger(mets)["rerlhf_order"].verdict == REPRODUCED
    mets["08"]["fa_irl"] = arm(0.17)
    assert _ledger(mets)["rerlhf_order"].verdict == INCONCLUSIVE  # 17% vs 16%: overlap
    mets["08"]["fa_irl"] = arm(0.30)
    assert _ledger(mets)["rerlhf_order"].verdict == NOT_REPRODUCED


def test_missing_metrics_are_not_run_never_a_crash():
    led = R.build_ledger({})
    assert {e.verdict for e in led} == {NOT_RUN}
    assert all("not run" in e.details["missing"] for e in led)
    partial = _ledger({"05": {"something_else": 1}})
    assert partial["table1_f1"].verdict == NOT_RUN and "no per-method" in partial["table1_f1"].details["missing"]


def test_ledger_json_and_report_files(results_tmp):
    from fairl_lib import make_config

    cfg = make_config("smoke", notebook="09_reproduction_report")
    res = cfg.results_dir
    (res / "metrics").mkdir(parents=True)
    (res / "figures").mkdir()
    (res / "figures" / "fig4_pair_mix_starc.png").write_bytes(b"png")
    (res / "metrics" / "06_pair_mix.json").write_text(json.dumps(_pairmix(-0.4, -0.1)))
    (res / "metrics" / "03_theory_toy.json").write_text("{not json")  # a broken file is skipped, not fatal
    (res / "run.json").write_text(json.dumps({"git_commit": "abc", "status": "ok",
                                              "notebooks": {"06_pair_mix": {"status": "ok", "seconds": 3.0}}}))
    ledger, text, path = R.write_report(cfg)
    assert path == res / "REPORT.md" and path.read_text() == text
    assert "![fig4_pair_mix_starc](figures/fig4_pair_mix_starc.png)" in text
    assert "fig2_feasible_cone" not in text  # only figures that exist are linked
    assert "profile `smoke`" in text and "commit `abc`" in text
    d = R.ledger_dict(ledger)
    assert set(d) == set(R.CLAIM_IDS)
    assert d["fig4_trend"]["verdict"] == REPRODUCED and d["theorem1_inclusion"]["verdict"] == NOT_RUN
    json.dumps(d, allow_nan=False)  # plain JSON
    assert sum(R.verdict_counts(ledger).values()) == len(R.CLAIMS)
