"""Pair-mix sweep (fairl_lib/stages/pairmix.py, Appendix D): planning, nested draws, the cached stage, metrics."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairl_lib.stages import pairmix as P
from fairl_lib.analysis.pairset import synthetic_pairset
from fairl_lib.analysis.pairset import count_pair_types

FRACS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def test_mix_counts():
    assert P.mix_counts(0.25, 40) == (10, 30)
    assert P.mix_counts(0.1, 25) == (3, 22)  # 2.5 rounds half up
    assert P.mix_counts(1.0, 7) == (7, 0)
    with pytest.raises(ValueError):
        P.mix_counts(1.5, 10)


def test_plan_with_enough_pairs_is_exact():
    plans = P.plan_mix({"T->NT": 1000, "NT->NT": 1000}, FRACS, 1000)
    assert [p.status for p in plans] == ["ok"] * len(FRACS)
    assert all(p.total == 1000 and p.note == "" for p in plans)
    assert [p.n_t_nt for p in plans] == [0, 100, 250, 500, 750, 1000]


def test_common_total_lowers_every_fraction_and_says_why():
    plans = P.plan_mix({"T->NT": 500, "NT->NT": 5000}, FRACS, 1000)
    assert {p.total for p in plans} == {500} and {p.status for p in plans} == {"reduced"}
    assert "limited by fraction 1" in plans[0].note and "has 500" in plans[0].note


def test_common_total_skips_a_fraction_it_cannot_fill_at_min_total():
    plans = {p.fraction: p for p in P.plan_mix({"T->NT": 5, "NT->NT": 500}, (0.0, 0.5, 1.0), 40)}
    assert plans[1.0].status == "skipped" and "needs 10 T->NT pairs but the train split has 5" in plans[1.0].note
    assert plans[0.0].total == plans[0.5].total == 10  # the same (lowered) total for the kept fractions


def test_skip_and_cap_policies():
    skip = {p.fraction: p for p in P.plan_mix({"T->NT": 300, "NT->NT": 5000}, FRACS, 1000, "skip")}
    assert [f for f, p in skip.items() if p.status == "skipped"] == [0.5, 0.75, 1.0]
    assert all(p.total == 1000 for p in skip.values() if p.status == "ok")
    cap = {p.fraction: p for p in P.plan_mix({"T->NT": 300, "NT->NT": 5000}, FRACS, 1000, "cap")}
    assert cap[0.25].total == 1000 and cap[0.5].total == 600 and cap[1.0].total == 300
    assert P.plan_mix({"T->NT": 200, "NT->NT": 5000}, (1.0,), 1000, "cap")[0].status == "skipped"
    with pytest.raises(ValueError, match="common_total"):
        P.plan_mix({}, FRACS, 10, "resample")


@settings(max_examples=60, deadline=None)
@given(t=st.integers(0, 300), nt=st.integers(0, 300), total=st.integers(1, 200),
       policy=st.sampled_from(P.POLICIES), fracs=st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_plans_never_exceed_what_exists(t, nt, total, policy, fracs):
    plans = P.plan_mix({"T->NT": t, "NT->NT": nt}, fracs, total, policy)
    for p in plans:
        assert p.n_t_nt <= t and p.n_nt_nt <= nt and p.total <= total
        if p.status == "skipped":
            assert p.total == 0 and p.note
        else:
            assert p.n_t_nt == P.mix_counts(p.fraction, p.total)[0]
            assert (p.status == "ok") == (p.total == total) and (p.note == "") == (p.status == "ok")
    if policy in ("common_total", "skip"):
        assert len({p.total for p in plans if p.status != "skipped"}) <= 1  # one total across the sweep


def test_draws_are_seeded_typed_and_nested():
    ps = synthetic_pairset(400, 16, 0)
    train = ps.split("train")
    plans = P.plan_mix(P.available_counts(train), (0.25, 0.5), 60)
    a, b = (P.draw_mix(train.df, p, seed=3) for p in plans)
    assert count_pair_types(train.df.iloc[a]) == {"T->NT": 15, "NT->NT": 45, "NT->T": 0, "T->T": 0}
    assert np.array_equal(a, P.draw_mix(train.df, plans[0], seed=3))
    assert not np.array_equal(a, P.draw_mix(train.df, plans[0], seed=4))
    t_a = set(a[train.df["pair_type"].to_numpy()[a] == "T->NT"])
    t_b = set(b[train.df["pair_type"].to_numpy()[b] == "T->NT"])
    assert t_a <= t_b  # nested: a larger T->NT share keeps the smaller share's pairs


def test_training_starc_is_eq4_on_both_sides():
    ps = synthetic_pairset(60, 8, 1)
    truth = lambda h: np.zeros(len(h))
    gt = np.concatenate([ps.df["post_reward"], ps.df["pre_reward"]])
    assert P.training_starc(truth, ps) == pytest.approx(1.0)  # a constant reward is distance 1
    emb_reward = dict(zip(map(bytes, np.concatenate([ps.emb_post, ps.emb_pre])), gt))

    def perfect(h):
        return np.array([emb_reward[bytes(row)] for row in h]) * 3.0 + 1.0

    assert P.training_starc(perfect, ps) == pytest.approx(0.0, abs=1e-9)


def test_sweep_stage_caches_and_metrics(results_tmp):
    from fairl_lib import make_config

    cfg = make_config("smoke", overrides="pairmix.total_pairs=40; pairmix.fractions=[0.0, 0.5, 1.0]; "
                                         "irl.n_seeds=2; irl.max_epochs=3", notebook="06_pair_mix")
    ps = synthetic_pairset(300, 8, 0)
    logs = []
    res = P.sweep_stage(cfg, ps, log=logs.append, methods=("me_irl", "me_fa_margin", "me_fa_gt"))
    assert len(res.per_run) == 3 * 3 * 2 and res.per_run["starc"].between(0, 2).all()
    again = P.sweep_stage(cfg, ps, log=logs.append, methods=("me_irl", "me_fa_margin", "me_fa_gt"))
    assert any("reusing" in m for m in logs)
    pd.testing.assert_frame_equal(res.per_run, again.per_run)
    met = P.pair_mix_metrics(res)
    assert set(met["pair_mix"]) == {"0", "0.5", "1"}
    cell = met["pair_mix"]["0.5"]["methods"]["me_irl"]
    assert cell["min"] <= cell["mean"] <= cell["max"] and len(cell["per_seed"]) == 2
    # a baseline has no failure path; an FA method's block says whether its R_F acts on the mix's own pairs,
    # from the flip shares of its runs (failure_path.flip_shares on that mix)
    assert "acts" not in cell and res.per_run.loc[res.per_run["method"] == "me_irl", "flip_share"].isna().all()
    fa = met["pair_mix"]["0.5"]["methods"]["me_fa_margin"]
    runs = res.per_run[(res.per_run["method"] == "me_fa_margin") & (res.per_run["fraction"] == 0.5)]
    assert fa["flip_share"] == pytest.approx(runs["flip_share"].mean()) and 0.0 <= fa["flip_share"] <= 1.0
    assert fa["acts"] == (fa["flip_share"] >= 0.02 and fa["flip_share"] > fa["flip_share_init"])
    # the report reads exactly this layout
    from fairl_lib.analysis.report import pair_mix_seed_table

    assert set(pair_mix_seed_table(met)) == {"me_irl", "me_fa_margin", "me_fa_gt"}
    summ = P.summary_frame(res)
    assert len(summ) == 9 and {"status", "note", "n_t_nt", "n_nt_nt"} <= set(summ.columns)
    P.plot_pair_mix(res)


def test_scarce_type_is_reported_not_resampled(results_tmp):
    from fairl_lib import make_config

    cfg = make_config("smoke", overrides="pairmix.total_pairs=200; pairmix.fractions=[0.0, 0.5, 1.0]; "
                                         "irl.n_seeds=1; irl.max_epochs=2", notebook="06_pair_mix")
    ps = synthetic_pairset(300, 8, 0)
    df = ps.df.copy()
    keep = ~((df["pair_type"] == "T->NT") & (df.index % 10 != 0))  # leave few T->NT pairs
    ps = ps.subset(keep.to_numpy())
    res = P.sweep_stage(cfg, ps, methods=("me_irl",), log=lambda _: None)
    met = P.pair_mix_metrics(res)
    assert 1.0 in met["fractions_skipped"] and 0.0 not in met["fractions_skipped"] and met["notes"]
    assert met["pair_mix"]["1"]["methods"] == {} and met["pair_mix"]["1"]["status"] == "skipped"
    used = met["total_pairs_used"]
    assert used < 200 and all(b["total"] == used for b in met["pair_mix"].values() if b["status"] != "skipped")
    n_avail = met["available_train_pairs"]["T->NT"]
    assert (res.per_run["n_t_nt"] <= n_avail).all()
    assert dataclasses.replace(res.plans[0]).status == "reduced"


def test_findings_read_the_numbers():
    """The notebook's sentences come from the summary: a falling method is counted as falling."""
    from types import SimpleNamespace

    summary = pd.DataFrame({"fraction": [0.0, 0.0, 1.0, 1.0], "method": ["me_irl", "me_fa_margin"] * 2,
                            "starc_mean": [1.2, 1.3, 0.6, 0.5], "status": ["ok"] * 4})
    lines = P.findings(summary, SimpleNamespace(info={}))
    assert lines[0].startswith("From T->NT fraction 0 to 1, mean training STARC falls for 2 of 2 methods")
    assert "me_fa_margin (-0.800)" in lines[1] and "me_irl (-0.600)" in lines[1]
    assert "fraction 1: me_fa_margin (0.500)" in lines[3]


def test_paper_mix_mask_reaches_the_share_in_each_split():
    """Train: 10 T->NT, 4 other non-NT->NT, 100 NT->NT; at share 0.25 the split keeps 40 pairs: every non-NT->NT
    pair and 26 NT->NT ones. Test: 2 T->NT and 3 NT->NT cannot reach 0.25 (it would need 8 pairs): all kept."""
    types = ["T->NT"] * 10 + ["NT->T"] * 2 + ["T->T"] * 2 + ["NT->NT"] * 100 + ["T->NT"] * 2 + ["NT->NT"] * 3
    df = pd.DataFrame({"pair_type": types, "split": ["train"] * 114 + ["test"] * 5})
    keep = P.paper_mix_mask(df, 0.25, seed=3)
    kept = df[keep]
    train = kept[kept["split"] == "train"]
    assert len(train) == 40 and (train["pair_type"] != "NT->NT").sum() == 14
    assert (kept["split"] == "test").sum() == 5
    assert np.array_equal(keep, P.paper_mix_mask(df, 0.25, seed=3))  # seeded
    assert not np.array_equal(keep, P.paper_mix_mask(df, 0.25, seed=4))
