"""The metrics schema (fairl_lib/analysis/schema.py) and its check in write_metrics."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from fairl_lib.analysis import schema as S
from fairl_lib.analysis.schema import MetricsSchemaError
from examples import PAIR_METHOD

M = list(S.METHODS)
SUMMARY = {"mean": 0.5, "std": 0.01}


def _layouts() -> dict[str, dict]:
    """One small metrics dict per notebook, in the layout each notebook writes (as in a smoke run)."""
    ci = {"mean": 0.47, "std": 0.015, "n": 2, "ci_low": 0.34, "ci_high": 0.60}
    acting = lambda m: {"flip_share": 0.03, "flip_share_init": 0.01, "acts": True} if "_fa_" in m else {}
    arm = {"toxicity_rate_final": 0.1, "n_completions_final": 16, "judge_rate_final": 0.0, "kl_final": 0.01,
           "perplexity_final": 29.6, "paper_toxicity_rate": 0.06, "history": {"step": [0, 3]},
           "n_runs": 1, "between_run_spread": None, "runs": [{"train_seed": 0, "toxicity_rate": 0.1}]}
    audit_rate = {"n": 8, "k_toxic": 0, "rate": 0.0, "rate_ci95": [0.0, 0.32], "k_judge": 1, "judge_rate": 0.125,
                  "judge_ci95": [0.02, 0.47]}
    audit_paired = {"value": 0.01, "ci95": [-0.01, 0.03], "ci90": [-0.005, 0.025], "mde": 0.02, "mde_mcnemar": 0.02,
                    "only_a": 5, "only_b": 3, "n_pairs": 400, "p_mcnemar": 0.73, "per_draw": [0.0, 0.01, 0.02]}
    audit_other = {"perplexity": 27.0, "nll_tok_mean": 3.3, "nll_tok_sd": 0.4, "n_rows": 8, "kl_to_expert": 0.1}
    return {
        "01_rlhf_expert": {"base_lm": "smollm2-135m", "algorithm": "rloo", "steps": 3, "toxicity_rate_base": 0.0,
                           "toxicity_rate_expert": 0.0, "toxicity_rate_ratio": None, "judge_rate_base": 0.06,
                           "judge_rate_expert": 0.0, "kl_final": 0.015, "kl_heldout": -0.004,
                           "perplexity_base": 26.5, "perplexity_expert": 29.6, "reward_final": 0.79},
        "02_preference_pairs": {"n_pairs": 96, "n_prompts": 24, "n_train": 72, "n_test": 24,
                                "pair_types": {"NT->NT": 78, "NT->T": 7, "T->NT": 9, "T->T": 2}, "n_T->NT": 9,
                                "n_train_tnt": 7,
                                "toxic_rate_pre": 0.11, "toxic_rate_post": 0.09, "judge_rate_pre": 0.16,
                                "judge_rate_post": 0.08, "auc_ground_truth_jigsaw": 0.95, "auc_judge_jigsaw": 0.97,
                                "auc_ground_truth_jigsaw_test_split": 0.95, "auc_judge_jigsaw_test_split": 0.97},
        "03_theory_toy": {"n_draws": 100, "never_larger_fraction": 1.0, "strictly_smaller_fraction": 1.0,
                          "strictly_smaller_fraction_random_failures": 0.57, "frac_binds_random_failures": 0.57,
                          "mean_arc_width_base": 1.11, "mean_arc_width_fa": 0.86,
                          "maxent_upweight_inclusion_holds": True, "maxent_sharpen_inclusion_holds": False},
        "04_fairl_training": {"n_seeds": 2, "n_train": 65, "n_val": 7, "n_test": 24,
                              "failure_path_as_printed": {m: {"ratio_std_F_over_D": 0.28, "pairs_flipped_by_R_F": 0.07}
                                                          for m in M if "_fa_" in m},
                              "failure_path": {m: {"flip_share_mean": 0.1, "learned_flip_share_mean": 0.05,
                                                   "acts": True} for m in M if "_fa_" in m},
                              "tuning": {"trials_per_method": {m: 2 for m in M}, "best": {m: {"value": 0.6} for m in M},
                                         "space": {m: {"lr": ["log", 3e-4, 3e-3]} for m in M},
                                         "fa_configuration": {"method": "me_fa_margin", "irl": {"lr": 1e-3}}},
                              "methods": {m: {"epochs_trained": [7, 12]} for m in M}},
        "05_tables": {"n": {"seeds": 2, "jigsaw": 120},
                      "per_seed": {"seeds": [0, 1], **{st: {m: {k: [0.4, None] for k in ("f1", "auc", "starc")}
                                                            for m in M} for st in ("in_domain", "jigsaw")}},
                      "table1": {st: {m: {k: dict(SUMMARY) for k in ("accuracy", "f1", "auc", "starc", "starc_eq10")}
                                      for m in M} for st in ("in_domain", "jigsaw")},
                      "seed_dispersion": {m: {"in_domain std starc": 0.04} for m in M},
                      "table2_seed": 0,
                      "table2": {sp: {"both": 4, "only_fa": 6, "only_irl": 1, "neither": 13}
                                 for sp in ("train", "test", "jigsaw")},
                      "table3": {sp: {s: {"both": 0, "only_fa": 0, "only_irl": 0, "neither": 7} for s in S.SUBTYPES}
                                 for sp in ("train", "jigsaw")},
                      "penalty_sweep": {"scales": [1.0, 0.01], "main_scale": 1.0, "by_scale": {
                          c: {m: {"jigsaw_auc": dict(SUMMARY), "pairs_flipped_by_R_F": dict(SUMMARY)} for m in M}
                          for c in ("1", "0.01")}},
                      "per_seed_best": {"seeds": [0, 1], "acting": {m: True for m in M if "_fa_" in m},
                                        **{st: {m: {k: [0.4, 0.5] for k in ("f1", "auc", "starc")} for m in M}
                                           for st in ("in_domain", "jigsaw")}},
                      "tuning": {"trials_per_method": {m: 2 for m in M}},
                      "preregistered": {
                          "fa_method": "me_fa_margin", "baseline": "me_irl", "acting": True, "flip_share": 0.05,
                          "flip_share_init": 0.01, "chosen_by": "profile",
                          "comparisons": {st: {k: {"value": 0.01, "ci95": [-0.1, 0.1], "ci90": [-0.08, 0.08],
                                                   "mde": 0.1, "identical": False, "per_seed": [0.0, 0.02],
                                                   "covers": "seeds and data"}
                                               for k in ("f1", "auc", "starc", "accuracy")}
                                          for st in ("in_domain", "jigsaw")},
                          "disagreement": {"counts": {"both": 4, "only_fa": 6, "only_irl": 1, "neither": 13},
                                           "n_seeds": 2, "share": {"value": 0.86, "ci95": [0.5, 1.0],
                                                                   "ci90": [0.6, 1.0]},
                                           "subtypes": {s: {"counts": {"both": 0, "only_fa": 0, "only_irl": 0,
                                                                       "neither": 7}, "relative_increase": None}
                                                        for s in S.SUBTYPES}},
                          "failure_slice": {"fa": 0.12, "control": 0.11, "n_slice_pairs": 480.0,
                                            "per_seed": [0.0, 0.02],
                                            "difference": {"value": 0.01, "ci95": [-0.01, 0.03],
                                                           "ci90": [-0.005, 0.025], "mde": 0.02}}},
                      "eq3_as_printed": {"flip_share_max": 0.0},
                      "in_domain_by_pair_type": {"T->NT": {m: {"pairwise_accuracy": 0.8, "gt_pairwise_accuracy": 1.0,
                                                              "n_pairs": 3} for m in M}},
                      "jigsaw_learning_curve": {"n_tnt": [0, 9], "n_other": 60, "ground_truth_auc": 0.95,
                                                "methods": {m: {"mean": [0.5, 0.55]} for m in M}},
                      "fig3_left": {}},
        "06_pair_mix": {"methods": M, "n_seeds": 2, "fractions_run": [0.0, 0.5], "fractions_skipped": [1.0],
                        "paper_mix": {"fa_method": "me_fa_margin", "baseline": "me_irl", "tnt_share": {"train": 0.36, "test": 0.36},
                                      "acting": True, "flip_share": 0.03, "flip_share_init": 0.01, "share": 0.36,
                                      "comparisons": {st: {mt: {"value": 0.01, "ci95": [-0.01, 0.03], "ci90": [-0.005, 0.025], "mde": 0.02}
                                                           for mt in ("f1", "auc", "starc")} for st in ("in_domain", "jigsaw")}},
                        "total_pairs_used": 14, "random_reward_starc": {"0": 1.37, "0.5": 1.38},
                        "pair_mix": {"0": {"status": "reduced", "methods": {m: {"per_seed": [1.5, 1.6], **acting(m)}
                                                                            for m in M}},
                                     "0.5": {"status": "reduced", "methods": {m: {"per_seed": [1.0, 0.9], **acting(m)}
                                                                              for m in M}},
                                     "1": {"status": "skipped", "methods": {}, "note": "needs 10 T->NT pairs"}}},
        "07_model_size": {"smollm2-135m": {"params_millions": 134.52, "n_pairs": 96, "pair_types": {"T->NT": 9},
                                           "accuracy": dict(ci), "starc": dict(ci),
                                           "by_method": {"me_fa_margin": {"accuracy": dict(ci), "starc": dict(ci)},
                                                         "me_irl": {"accuracy": dict(ci), "starc": dict(ci)}},
                                           "failure_path": {"me_fa_margin": {"flip_share_mean": 0.03,
                                                                             "flip_share_init_mean": 0.01,
                                                                             "acts": True}}},
                          "settings": {"size_lms": ["smollm2-135m"], "methods": ["me_fa_margin", "me_irl"]}},
        "08_rerlhf": {"base": {"toxicity_rate": 0.0, "judge_rate": 0.06}, "ground_truth": dict(arm),
                      "fa_irl": {**arm, "failure_path": {"flip_share": 0.03, "flip_share_init": 0.01, "acts": True}},
                      "irl": dict(arm), "settings": {"base_lm": "smollm2-135m"}},
        "10_audit": {"settings": {"rate_margin": 0.03, "ppl_margin": 0.1, "control_draws": 3},
                     "pair_method": PAIR_METHOD,
                     "paired": {"control_minus_method": {c: {s: dict(audit_paired, p_holm=0.2) for s in
                                                             ("ground_truth", "judge")}
                                                         for c in ("random", "matched", "nearest")},
                                "after_minus_before": {"other": {"method": {s: dict(audit_paired) for s in
                                                                            ("ground_truth", "judge")}}}},
                     "targets": {"n": 4, "n_toxic": 0, "n_prompts": 3, "n_candidates": 32},
                     "recovered": {"n_flagged": 12, "n_toxic": 0, "n_both": 0},
                     "explain": {"sizes": [2, 3, 1, 2], "relative_residuals": [0.7, 0.74, 1.0, 0.6],
                                 "within_tol": [True, True, False, True], "n_small": 3, "small_size": 4, "tol": 0.75,
                                 "max_size": 6, "set_size": 7, "null": {"n_null": 4, "n_small_null": 2, "p_fisher": 1.0},
                                 "forgotten": {a: {"toxic_share": 0.1, "toxic_share_by_draw": [0.1] * 3}
                                               for a in ("method", "random", "matched", "nearest")},
                                 "naive_nearest_overlap": {"share_of_a": 0.8}},
                     "eval": {m: {"target": dict(audit_rate), "other": {**audit_rate, **audit_other}}
                              for m in ("expert", "method", "random", "matched", "nearest")}},
        "11_reproduction_report": {"verdict_counts": {"reproduced": 3}, "metrics_read": ["03"],
                                   "ledger": {"theorem1_inclusion": {"claim": "c", "paper": "p", "ours": "o",
                                                                     "verdict": "reproduced", "rule": "r",
                                                                     "detectable": "exact check"}}},
    }


def test_every_notebook_stem_has_an_entry_and_every_key_a_meaning():
    assert S.NOTEBOOK_STEMS == ("01_rlhf_expert", "02_preference_pairs", "03_theory_toy", "04_fairl_training",
                                "05_tables", "06_pair_mix", "07_model_size", "08_rerlhf", "10_audit",
                                "11_reproduction_report")
    for keys in S.SCHEMA.values():
        for k in keys:
            assert k.meaning and " " not in k.path
            for seg in k.segments:
                assert seg == S.ANY or not seg.startswith("{") or seg[1:-1] in S.PLACEHOLDERS
    assert "table1.{set}.{method}.{metric}.mean" in S.describe()


@pytest.mark.parametrize("name", sorted(_layouts()))
def test_layouts_the_notebooks_write_pass(name):
    S.validate(name, _layouts()[name])
    S.validate(name[:2], _layouts()[name])  # the number names the same notebook


def test_a_missing_key_is_named():
    m = _layouts()["05_tables"]
    del m["table1"]["jigsaw"]["me_irl"]["auc"]
    del m["n"]["seeds"]
    with pytest.raises(MetricsSchemaError) as err:
        S.validate("05_tables", m)
    assert err.value.notebook == "05_tables"
    assert set(err.value.missing) == {"n.seeds", "table1.jigsaw.me_irl.auc.mean", "table1.jigsaw.me_irl.auc.std"}
    assert "05_tables" in str(err.value) and "table1.jigsaw.me_irl.auc.mean" in str(err.value)


def test_a_missing_block_is_named_with_its_placeholders():
    m = _layouts()["05_tables"]
    del m["per_seed"]
    with pytest.raises(MetricsSchemaError) as err:
        S.validate("05_tables", m)
    assert set(err.value.missing) == {"per_seed.seeds", "per_seed.{set}.{method}.{metric}"}


def test_placeholders_follow_the_file():
    m = _layouts()["06_pair_mix"]
    del m["pair_mix"]["0.5"]["methods"]["me_irl"]
    with pytest.raises(MetricsSchemaError, match=r"pair_mix\.\[0\.5\]\.methods\.me_irl\.per_seed"):
        S.validate("06_pair_mix", m)
    ok = _layouts()["06_pair_mix"]
    assert S.placeholder_keys(ok, "06", "fraction") == ["0", "0.5"]  # the skipped fraction has no methods
    m7 = _layouts()["07_model_size"]
    m7["settings"]["size_lms"].append("gemma3-270m")  # listed but not written
    with pytest.raises(MetricsSchemaError) as err:
        S.validate("07_model_size", m7)
    assert "gemma3-270m.params_millions" in err.value.missing
    assert "gemma3-270m.by_method.{size_method}.starc.mean" in err.value.missing
    del m7["settings"]
    with pytest.raises(MetricsSchemaError) as err:
        S.validate("07_model_size", m7)
    assert "settings.size_lms" in err.value.missing and "settings.methods" in err.value.missing


def test_null_values_count_as_present_and_unknown_names_pass():
    m = _layouts()["01_rlhf_expert"]
    m["kl_final"] = None  # NaN is written as null
    S.validate("01_rlhf_expert", m)
    S.validate("12_next", {})  # no schema entry (yet)
    S.validate("00_test", {"a": 1})


def test_get_reads_declared_paths_only():
    m = _layouts()["05_tables"]
    v = S.get(m, "05", "table1.{set}.{method}.{metric}.mean", set="jigsaw", method="me_irl", metric="auc")
    assert v == 0.5
    with pytest.raises(ValueError, match="not a key path"):
        S.get(m, "05", "table1.jigsaw.me_irl.auc.mean")  # concrete paths are read through the pattern
    with pytest.raises(ValueError, match="placeholders"):
        S.get(m, "05", "table1.{set}.{method}.{metric}.mean", set="jigsaw")
    del m["table1"]["jigsaw"]["me_irl"]
    with pytest.raises(S.MissingMetrics) as err:
        S.get(m, "05", "table1.{set}.{method}.{metric}.mean", set="jigsaw", method="me_irl", metric="auc")
    assert err.value.missing == ("table1.jigsaw.me_irl.auc.mean",)


def test_write_metrics_checks_before_writing(results_tmp):
    from fairl_lib.notebook import write_metrics
    from fairl_lib.config import make_config

    cfg = make_config("smoke", notebook="03_theory_toy")
    good = _layouts()["03_theory_toy"]
    good["mean_arc_width_fa"] = np.float32(0.5)  # checked as written (after conversion to JSON types)
    path = write_metrics(cfg, good)
    assert json.loads(path.read_text())["mean_arc_width_fa"] == 0.5
    bad = copy.deepcopy(_layouts()["03_theory_toy"])
    del bad["never_larger_fraction"]
    path.unlink()
    with pytest.raises(MetricsSchemaError, match="03_theory_toy.*never_larger_fraction"):
        write_metrics(cfg, bad)
    assert not path.exists() and not list(path.parent.iterdir())  # nothing written, no temp file
    write_metrics(cfg, {"anything": 1}, name="12_next")  # no schema entry: written as is


def test_method_names_are_the_registry():
    from fairl_lib.irl import METHOD_NAMES

    assert S.METHODS == METHOD_NAMES  # kept as data in the schema so reading metrics never imports torch
