"""stages/tuning.py: the equal-budget search of the Table 1 methods and the best-against-best grid, and
analysis/failure_path.py: whether a failure path acts. On synthetic pairs, with the smoke profile."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fairl_lib.analysis import evaluate
from fairl_lib.analysis.failure_path import acts, failure_path_summary, flip_share, flip_shares
from fairl_lib.analysis.pairset import PairSet
from fairl_lib.cache import RECEIPT, stage_key
from fairl_lib.config import ConfigError, make_config
from fairl_lib.irl import BASELINES, FA_METHODS, METHOD_NAMES, IRLConfig
from fairl_lib.stages import tuning as T

SETTINGS = "irl.hidden=8; tuning.n_trials=3"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pairs(synthetic_pairs) -> PairSet:
    ps = synthetic_pairs
    df = ps.df.assign(prompt_id=ps.df["pair_id"] // 3)      # three pairs per prompt: a split by prompt shows
    df["split"] = np.where(df["prompt_id"] % 4 == 0, "test", "train")
    return PairSet(df, ps.emb_pre, ps.emb_post, ps.meta)


@pytest.fixture(scope="module")
def searched(pairs, tmp_path_factory):
    """The same search in two fresh result roots, a third with a stricter acting threshold, and the
    best-against-best grid of the first."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for name, extra in (("a", ""), ("b", ""), ("strict", "; tuning.min_flip_share=0.2")):
            mp.setenv("FAIRL_RESULTS", str(tmp_path_factory.mktemp(name)))
            cfg = make_config("smoke", overrides=SETTINGS + extra, notebook="04_fairl_training")
            out[name] = (cfg, T.tuning_stage(cfg, pairs, log=lambda _: None))
            if name == "a":
                logs: list[str] = []
                again = T.tuning_stage(cfg, pairs, log=logs.append)
                out["again"] = (again, logs)
                out["best"] = T.best_stage(cfg, pairs, out["a"][1], log=lambda _: None)
                out["fa"] = T.best_fa_config(cfg, pairs, log=lambda _: None)
                # a fixed preregistered method: the same search (not part of its key), the method named
                other = next(m for m in FA_METHODS if m != out["fa"][0])
                fixed = make_config("smoke", overrides=SETTINGS + f'; tuning.preregistered="{other}"',
                                    notebook="04_fairl_training")
                logs_fixed: list[str] = []
                out["fixed"] = (other, T.tuning_stage(fixed, pairs, log=lambda _: None),
                                T.best_fa_config(fixed, pairs, log=logs_fixed.append), logs_fixed)
    return out


def test_profiles_and_validation():
    smoke, cpu, paper = (make_config(p).tuning for p in ("smoke", "cpu", "paper"))
    assert (smoke.n_trials, smoke.best_seeds) == (2, 2)
    assert cpu.best_seeds >= 10 and 12 <= cpu.n_trials <= 16 and cpu.trial_seeds in (1, 2)
    assert (paper.n_trials, paper.best_seeds) == (50, 10)
    assert all(t.methods == METHOD_NAMES for t in (smoke, cpu, paper))
    for bad, msg in (("tuning.n_trials=0", ">= 1"), ("tuning.val_fraction=1.0", r"\(0, 1\)"),
                     ('tuning.methods=["mm_irl", "fa_irl"]', "valid"), ("tuning.min_flip_share=2.0", r"\[0, 1\]"),
                     ('tuning.preregistered="me_irl"', "an FA method"), ('tuning.preregistered="fa"', "an FA method"),
                     ('tuning.methods=["me_irl", "me_fa_gt"]; tuning.preregistered="mm_fa_gt"', "an FA method")):
        with pytest.raises(ConfigError, match=msg):
            make_config("smoke", overrides=bad)


def test_search_spaces_per_method():
    fa_only = {"fail_head", "lambda0", "lambda_decay", "penalty_scale"}
    for m in METHOD_NAMES:
        space = T.method_space(m)
        assert {"lr", "head", "hidden"} <= set(space)
        assert ("margin" in space) == m.startswith("mm") and ("tau" in space) == m.startswith("me")
        assert (fa_only <= set(space)) == (m in FA_METHODS) == bool(fa_only & set(space))
        assert ("bottomk_start" in space) == m.endswith("_margin")
        assert ("margin_fail_x" in space) == (m in FA_METHODS and m.startswith("mm"))
        assert ("tau_fail_x" in space) == (m in FA_METHODS and m.startswith("me"))
    assert T.method_space("mm_fa_margin")["lr"] == ("log", 3e-4, 3e-3)
    assert T.method_space("me_fa_gt")["penalty_scale"] == ("cat", (0.0, 0.01, 0.1, 1.0))
    base = IRLConfig(max_epochs=60)
    irl = T.trial_config(base, {"margin": 0.5, "margin_fail_x": 3.0, "fail_head": "linear"}, max_epochs=7, n_seeds=3)
    assert (irl.margin, irl.margin_fail, irl.fail_head, irl.max_epochs, irl.n_seeds) == (0.5, 1.5, "linear", 7, 3)
    assert T.trial_config(base, {"tau_fail_x": 0.25}).tau_fail == 0.25 and T.trial_config(base, {}) == base


def test_sampler_seeds_are_stable_and_differ_by_method_and_seed():
    assert T.sampler_seed(0, "me_fa_margin") == T.sampler_seed(0, "me_fa_margin") == 2954932018
    assert len({T.sampler_seed(s, m) for s in (0, 1) for m in METHOD_NAMES}) == 12


def test_tuning_split_is_by_prompt_inside_the_train_split(pairs):
    tr, va = T.tuning_split(pairs, 0.2, 1)
    test_prompts = set(pairs.split("test").df["prompt_id"])
    tr_p, va_p = set(tr.df["prompt_id"]), set(va.df["prompt_id"])
    assert not (tr_p | va_p) & test_prompts and not tr_p & va_p
    assert tr_p | va_p == set(pairs.split("train").df["prompt_id"])
    assert len(tr) + len(va) == len(pairs.split("train")) and (tr.df["split"] == "train").all()
    assert len(va_p) == round(0.2 * len(tr_p | va_p))
    again = T.tuning_split(pairs, 0.2, 1)[1]
    pd.testing.assert_frame_equal(again.df, va.df)


def test_every_method_gets_the_same_number_of_trials(searched, pairs):
    cfg, res = searched["a"]
    assert res.trial_counts() == {m: 3 for m in METHOD_NAMES}
    assert res.info["n_tune_train"] + res.info["n_tune_val"] == len(pairs.split("train"))
    t = res.trials
    assert t["value"].between(0, 1).all() and (t["state"] == "COMPLETE").all()
    assert t.loc[t["method"].isin(BASELINES), "acting"].isna().all()
    assert t.loc[t["method"].isin(BASELINES), ["flip_share", "learned_flip_share"]].isna().all().all()
    fa = t[t["method"].isin(FA_METHODS)]
    assert fa["flip_share"].between(0, 1).all() and fa["learned_flip_share"].between(0, 1).all()
    # acting: flips >= min_flip_share against R_D alone and more than its init did (failure_path.acts)
    assert (fa["acting"] == [acts(f, i, cfg.tuning.min_flip_share)
                             for f, i in zip(fa["flip_share"], fa["flip_share_init"])]).all()
    for m in METHOD_NAMES:                                  # each method's winner is its best (acting) trial
        best = res.best[m]
        pool = t[(t["method"] == m) & ((t["acting"] == True) | (m in BASELINES))]
        if pool.empty:                                      # no trial acts: the best of all, marked so
            assert best["no_acting_trial"] and best["acting"] is False
            pool = t[t["method"] == m]
        assert best["value"] == pool["value"].max()
        assert res.best_config(m) == T.trial_config(cfg.irl, best["params"], max_epochs=4)


def test_the_same_seed_gives_the_same_search(searched):
    a, b = searched["a"][1], searched["b"][1]
    assert a.folder != b.folder
    assert {m: x["params"] for m, x in a.best.items()} == {m: x["params"] for m, x in b.best.items()}
    cols = [c for c in a.trials.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a.trials[cols], b.trials[cols])


def test_non_acting_trials_are_never_fa_winners(searched):
    a, strict = searched["a"][1], searched["strict"][1]
    cols = [c for c in a.trials.columns if c.startswith("param_")] + ["value", "flip_share", "learned_flip_share"]
    pd.testing.assert_frame_equal(a.trials[cols], strict.trials[cols])   # the threshold only labels trials
    t = strict.trials
    assert (~t.loc[t["method"].isin(FA_METHODS), "acting"].astype(bool)).any()
    for m in FA_METHODS:
        acting = t[(t["method"] == m) & (t["acting"] == True)]
        best = strict.best[m]
        assert best["acting"] == (not acting.empty) and best["no_acting_trial"] == acting.empty
        if not acting.empty:
            assert best["value"] == acting["value"].max() and best["learned_flip_share"] >= 0.2


def test_pick_winner_prefers_acting_trials_and_says_when_none_acts():
    def rec(n, value, acting, share):
        return {"number": n, "value": value, "acting": acting, "flip_share": share, "learned_flip_share": share,
                "params": {"lr": n}}

    records = [rec(0, 0.9, False, 0.001), rec(1, 0.7, True, 0.05), rec(2, 0.8, True, 0.03), rec(3, None, None, None)]
    assert T.pick_winner(records, fa=True)["trial"] == 2
    assert T.pick_winner(records, fa=False)["trial"] == 0                  # baselines: acting plays no part
    none = T.pick_winner([rec(0, 0.6, False, 0.0), rec(1, 0.9, False, 0.01)], fa=True)
    assert none["trial"] == 1 and none["no_acting_trial"] and none["acting"] is False
    assert none["learned_flip_share"] == 0.01
    assert T.pick_winner([rec(0, float("nan"), None, None)], fa=False) is None
    assert T.pick_winner([rec(0, 0.8, True, 0.1), rec(1, 0.8, True, 0.2)], fa=True)["trial"] == 0   # ties: earlier


def test_the_cached_search_is_reused(searched, pairs):
    res = searched["a"][1]
    again, logs = searched["again"]
    assert again.folder == res.folder and any("reusing" in line for line in logs)
    pd.testing.assert_frame_equal(again.trials, res.trials)
    receipt = json.loads((res.folder / RECEIPT).read_text())    # acting changed meaning: old caches are not reused
    assert receipt["version"] == T.TUNING_VERSION != "1" and res.folder.name == receipt["key"]
    settings = T._search_settings(searched["a"][0], pairs, "toxic")
    assert receipt["key"] == stage_key("irl_tuning", settings, T.TUNING_VERSION) != stage_key("irl_tuning", settings, "1")


def test_best_against_best_grid_is_evaluated_like_table1(searched, pairs):
    cfg, res = searched["a"]
    out = searched["best"]
    assert out.methods == list(METHOD_NAMES) and out.seeds == [0, 1]
    assert sorted(out.rewards) == sorted((m, s) for m in METHOD_NAMES for s in (0, 1))
    for (m, _), reward in out.rewards.items():               # each trained with its own winner's config
        assert reward.meta["config"] == {**res.best[m]["irl"], "n_seeds": 2}
        assert reward.head == res.best[m]["params"]["head"]
        if m in FA_METHODS:
            assert reward.fail_head == res.best[m]["params"]["fail_head"]
    ev = evaluate.evaluate_grid(out, pairs)
    assert len(ev.per_run) == 12 and ev.per_run["auc"].between(0, 1).all()
    merged = T.merge_grids({"me_irl": out, "me_fa_margin": out})
    assert merged.methods == ["me_irl", "me_fa_margin"] and len(merged.rewards) == 4 and len(merged.runs) == 4
    assert merged.info["configs"]["me_irl"] == {**res.best["me_irl"]["irl"], "n_seeds": 2}
    method, irl = searched["fa"]
    # acting is judged on the best-against-best seeds, where notebooks 05-08 meet the configuration
    paths = failure_path_summary(out, pairs, min_flip_share=cfg.tuning.min_flip_share)
    fa = {m: b for m, b in res.best.items() if m in FA_METHODS}
    acting = ({m: b for m, b in fa.items() if paths[m]["acts"]} or {m: b for m, b in fa.items() if b["acting"]}
              or fa)
    assert method == max(acting, key=lambda m: acting[m]["value"])
    assert irl == res.best_config(method) and irl.n_seeds == cfg.irl.n_seeds


def test_a_preregistered_method_is_used_whatever_the_search_says(searched, pairs):
    """``tuning.preregistered`` names the compared FA method without touching the search: the search's cache
    folder is the same, and the method returned is the named one at its tuned configuration (not the winner)."""
    (_, res), (other, res_fixed, (method, irl), logs) = searched["a"], searched["fixed"]
    assert res_fixed.folder == res.folder and other != searched["fa"][0]
    assert method == other and irl == res.best_config(other)
    acting = failure_path_summary(searched["best"], pairs, min_flip_share=searched["a"][0].tuning.min_flip_share)
    assert any("does not act" in line for line in logs) == (not acting[other]["acts"])
    assert make_config("cpu").tuning.preregistered == "me_fa_margin"


def test_failure_path_summary_agrees_with_the_per_run_shares(searched, pairs):
    out = searched["best"]
    summary = failure_path_summary(out, pairs)
    per_run = evaluate.failure_path_share(out, pairs)
    assert set(summary) == set(FA_METHODS)
    for m, s in summary.items():
        runs = per_run[per_run["method"] == m]
        assert s["flip_share_mean"] == pytest.approx(runs["pairs_flipped_by_R_F"].mean())
        assert (s["flip_share_min"], s["flip_share_max"]) == (runs["pairs_flipped_by_R_F"].min(),
                                                               runs["pairs_flipped_by_R_F"].max())
        assert s["ratio_std_F_over_D_mean"] == pytest.approx(runs["ratio_std_F_over_D"].mean())
        learned = [flip_shares(out.rewards[(m, seed)], pairs.split("train"))["learned_flip_share"] for seed in (0, 1)]
        assert s["learned_flip_share_mean"] == pytest.approx(np.mean(learned))
        assert s["acts"] == acts(s["flip_share_mean"], s["flip_share_init_mean"]) and s["n_runs"] == 2
    assert failure_path_summary(out, pairs, min_flip_share=1.0)[FA_METHODS[0]]["acts"] is False
    base_only = out.rewards[("me_irl", 0)]
    assert flip_share(base_only, pairs) == 0.0
