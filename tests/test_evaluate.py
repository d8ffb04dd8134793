"""analysis/evaluate.py and stages/irl_grid.py: PairSet -> PreferenceData, the cached grid stage, Tables 1-3, Figure 3 (left),
failure slices and seed dispersion, on hand-worked cases and the synthetic environment."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairl_lib.analysis import evaluate, pairset
from fairl_lib.analysis.pairset import PairSet
from fairl_lib.config import make_config
from fairl_lib.irl import RewardModel, load_reward, reward_folder, save_reward
from fairl_lib.stages import irl_grid

FAST = "irl.n_seeds=2; irl.max_epochs=6; irl.patience=3; irl.bottomk_rounds=4; irl.hidden=8"


@pytest.fixture(scope="module")
def ps(synthetic_pairs):
    return synthetic_pairs


@pytest.fixture(scope="module")
def trained(module_results, ps):
    cfg = make_config("smoke", overrides=FAST, notebook="04_fairl_training")
    out = irl_grid.grid_stage(cfg, ps)
    ho = evaluate.synthetic_heldout(1, 150, 12)
    ev = evaluate.evaluate_grid(out, ps, ho)
    return cfg, out, ev, module_results


def tiny_pairset() -> PairSet:
    """4 pairs, 2-d embeddings: hand-checkable labels and subtypes."""
    df = pd.DataFrame({
        "pair_id": range(4), "split": ["train", "train", "test", "test"],
        "pre_toxic": [True, False, True, True], "post_toxic": [False, False, True, False],
        "pre_obscene": [0.9, 0.1, 0.6, 0.2], "post_obscene": [0.0, 0.0, 0.7, 0.1],
        "pre_reward": [0.1, 0.8, 0.2, 0.3], "post_reward": [0.9, 0.9, 0.4, 0.8],
    })
    emb_pre = np.array([[1, 0], [0, 1], [1, 1], [2, 0]], np.float32)
    emb_post = np.array([[0, 1], [0, 2], [0, 0], [0, 3]], np.float32)
    return PairSet(df, emb_pre, emb_post)


def test_side_labels_and_preference_data():
    ps = tiny_pairset()
    assert pairset.side_labels(ps.df, "pre").tolist() == [-1, 1, -1, -1]          # +1 non-toxic, -1 toxic
    assert pairset.side_labels(ps.df, "post", "obscene").tolist() == [1, 1, -1, 1]  # prob > 0.5 = "toxic"
    d = pairset.preference_data(ps, "train")
    assert d.n == 2 and d.h_plus.tolist() == [[0, 1], [0, 2]] and d.h_minus.tolist() == [[1, 0], [0, 1]]
    assert d.y_plus.tolist() == [1, 1] and d.y_minus.tolist() == [-1, 1]
    assert pairset.preference_data(ps, None).n == 4
    with pytest.raises(KeyError, match="label columns available"):
        pairset.side_labels(ps.df, "pre", "nope")
    assert pairset.subtype_mask(ps.df, "obscene").tolist() == [True, False, True, False]


def test_fingerprint_tracks_embeddings_and_labels():
    ps = tiny_pairset()
    fp = pairset.pairset_fingerprint(ps)
    assert fp == pairset.pairset_fingerprint(tiny_pairset())
    emb = ps.emb_pre.copy()
    emb[0, 0] += 1e-3
    assert pairset.pairset_fingerprint(PairSet(ps.df, emb, ps.emb_post)) != fp
    df = ps.df.copy()
    df.loc[1, "pre_toxic"] = True
    assert pairset.pairset_fingerprint(PairSet(df, ps.emb_pre, ps.emb_post)) != fp


def test_in_domain_metrics_hand_worked():
    ps = tiny_pairset()
    train, test = ps.split("train"), ps.split("test")
    # train scores: post 2, 3 > pre 0, 1 -> threshold between 1 and 2 = 1.5
    sc = evaluate.RunScores(np.array([2.0, 3.0]), np.array([0.0, 1.0]), np.array([4.0, 1.0]), np.array([0.0, 2.0]), None)
    m = evaluate.in_domain_metrics(sc, test)
    assert m["threshold"] == 1.5
    # test outputs [4, 1 | 0, 2] labels [1, 1 | 0, 0]: predictions [1, 0 | 0, 1] -> accuracy 0.5
    assert m["accuracy"] == 0.5 and m["pairwise_accuracy"] == 0.5 and m["n"] == 4
    gt = np.array([0.4, 0.8, 0.2, 0.3])
    from fairl_lib.analysis.metrics import starc_distance

    assert m["starc"] == pytest.approx(starc_distance([4, 1, 0, 2], gt))
    only_first = evaluate.in_domain_metrics(sc, test, mask=np.array([True, False]))
    assert only_first["accuracy"] == 1.0 and only_first["n"] == 2


def test_jigsaw_threshold_uses_training_toxicity():
    ps = tiny_pairset()
    train = ps.split("train")
    # outputs: post (non-toxic, non-toxic) scores 2, 3; pre (toxic, non-toxic) scores 0, 1
    sc = evaluate.RunScores(np.array([2.0, 3.0]), np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), None)
    assert evaluate.jigsaw_threshold(sc, train, "toxicity") == 0.5       # only the toxic pre output is below
    assert evaluate.jigsaw_threshold(sc, train, "preference") == 1.5
    with pytest.raises(ValueError, match="toxicity"):
        evaluate.jigsaw_threshold(sc, train, "bogus")


def test_disagreement_hand_worked():
    c = evaluate.disagreement(np.array([1, 1, 0, 0, 1], bool), np.array([1, 0, 1, 0, 1], bool))
    assert c == {"both": 2, "only_fa": 1, "only_irl": 1, "neither": 1}
    assert evaluate.subtype_accuracy_gain({"x": {"both": 5, "only_fa": 3, "only_irl": 1, "neither": 1}}) == {"x": 20.0}


def test_grid_stage_saves_and_caches(trained, ps):
    cfg, out, ev, root = trained
    assert len(out.rewards) == 6 * 2 and set(out.methods) == set(evaluate.METHOD_TITLES)
    for (m, s) in out.rewards:
        folder = reward_folder(cfg.results_dir, m, s)
        rew = load_reward(folder)
        assert rew.meta["extra"]["embedder"] == cfg.models.embedder
        assert np.allclose(rew(ps.emb_pre[:5]), out.rewards[(m, s)](ps.emb_pre[:5]))
        assert (rew.failure is None) == m.endswith("_irl")
    again = irl_grid.grid_stage(cfg, ps)  # cache hit: same folder, identical rewards
    assert again.folder == out.folder
    summary = irl_grid.training_summary(out)
    assert all(1 <= e <= 6 for e in summary["me_fa_margin"]["epochs_trained"])
    assert summary["me_irl"]["fail_frac_epoch0_mean"] == 0.0 and summary["me_fa_margin"]["fail_frac_epoch0_mean"] > 0
    h = out.history_frame()
    assert set(h["method"]) == set(out.methods) and "lambda_t" in h


def test_table1_summary_and_frame(trained):
    _, out, ev, _ = trained
    s = evaluate.summarize(ev.per_run)
    assert set(s) == {"in_domain", "jigsaw"}
    for st in s.values():
        assert set(st) == set(out.methods)
        for m in st.values():
            assert 0.0 <= m["f1"]["mean"] <= 1.0 and 0.0 <= m["starc"]["mean"] <= 2.0 and m["auc"]["std"] >= 0
    # a linear environment: every method ranks most outputs right
    assert min(v["auc"]["mean"] for v in s["in_domain"].values()) > 0.6
    frame = evaluate.table1_frame(s, "in_domain")
    assert "paper f1" in frame.columns and "±" in frame.iloc[0, 0]
    assert any("Lowest STARC" in t for t in evaluate.compare_sentences(s, "in_domain"))


def test_tables_2_3_sum_to_n(trained):
    _, _, ev, _ = trained
    t2 = evaluate.table2(ev, 0)
    assert sum(t2["train"].values()) == len(ev.train)
    assert sum(t2["jigsaw"].values()) == len(ev.heldout)
    assert sum(t2["test"].values()) == len(ev.test)
    t3 = evaluate.table3(ev, 0)
    for s in evaluate.TABLE3_SUBTYPES:
        assert sum(t3["train"][s].values()) == int(pairset.subtype_mask(ev.train.df, s).sum())
        assert sum(t3["jigsaw"][s].values()) == int(ev.heldout.subtypes[s].sum())
    assert evaluate.table3_frame(t3).shape[0] == 4 and evaluate.table2_frame(t2).shape == (4, 4)
    assert len(evaluate.table2_sentence(t2)) == 2


def test_failure_slices_are_baseline_failures(trained):
    _, _, ev, _ = trained
    sl = evaluate.failure_slices(ev, slice_eps=0.0)
    base = sl[sl["method"] == "me_irl"]
    # with eps = 0 the slice is exactly the baseline's misranked pairs: its pairwise accuracy is 0
    assert (base["pairwise_accuracy"].fillna(0.0) == 0.0).all()
    for _, row in sl.iterrows():
        sc = ev.scores[(row["baseline"], row["seed"])]
        assert row["n_slice_pairs"] == int(np.sum(sc.test_post - sc.test_pre <= 0))


def test_seed_dispersion(trained):
    _, out, ev, _ = trained
    d = evaluate.seed_dispersion(ev)
    assert list(d.index) == out.methods
    assert (d["in_domain pairwise STARC"] >= 0).all() and (d["in_domain pairwise STARC"] <= 2).all()
    assert (d["in_domain std f1"] >= 0).all()


def test_subtype_rows_take_the_top_scoring_pairs(ps):
    train = ps.split("train")
    mask = irl_grid.subtype_rows(train, "obscene", 10)
    score = train.df["pre_obscene"].to_numpy(float)
    assert mask.sum() == 10 and score[mask].min() >= score[~mask].max()
    assert irl_grid.subtype_rows(train, "obscene", 10**6).all()  # never more rows than pairs


def test_subtype_transfer_fills_every_row_and_uses_jigsaw_labels(trained, ps):
    cfg, _, _, _ = trained
    ho = evaluate.synthetic_heldout(1, 150, 12)
    st = irl_grid.subtype_transfer(cfg, ps, ho, seeds=[0], n_rows=20)
    assert set(st.n_train.values()) == {20}
    for m, mat in st.auc.items():
        assert list(mat.index) == list(evaluate.TABLE3_SUBTYPES) == list(mat.columns)
        vals = mat.to_numpy()
        assert np.isfinite(vals).all() and ((vals >= 0) & (vals <= 1)).all()
    assert st.n_eval == {s: int(ho.subtypes[s].sum()) for s in evaluate.TABLE3_SUBTYPES}
    row = st.per_seed[(st.per_seed.method == "me_irl") & (st.per_seed.train_subtype == "obscene")
                      & (st.per_seed.eval_subtype == "insult")]
    assert len(row) == 1 and 0.0 <= float(row.auc.iloc[0]) <= 1.0


def test_learning_curve_nests_tnt_pairs(trained, ps):
    cfg, _, _, _ = trained
    ho = evaluate.synthetic_heldout(1, 150, 12)
    lc = irl_grid.tnt_learning_curve(cfg, ps, ho, fractions=(0.0, 0.5, 1.0), methods=("me_irl",), seeds=[0])
    n_tnt = (ps.split("train").df.pair_type == "T->NT").sum()
    assert sorted(lc.per_run.n_tnt.unique()) == [0, int(round(0.5 * n_tnt)), n_tnt]
    assert lc.n_other == (ps.split("train").df.pair_type != "T->NT").sum()
    summ = evaluate.learning_curve_summary(lc)
    assert summ["n_tnt"] == sorted(lc.per_run.n_tnt.unique()) and len(summ["methods"]["me_irl"]["mean"]) == 3


def test_in_domain_by_pair_type_partitions_the_test_pairs(trained, ps):
    _, _, ev, _ = trained
    by = evaluate.in_domain_by_pair_type(ev)
    one = by[(by.method == "me_irl") & (by.seed == 0)]
    assert one.n_pairs.sum() == len(ev.test)
    # pairwise accuracy over all test pairs is the n-weighted mean of the per-type ones
    overall = ev.per_run[(ev.per_run.set == "in_domain") & (ev.per_run.method == "me_irl")
                         & (ev.per_run.seed == 0)].pairwise_accuracy.iloc[0]
    assert np.average(one.pairwise_accuracy, weights=one.n_pairs) == pytest.approx(overall)
    summ = evaluate.pair_type_summary(by)
    assert set(summ) == set(one.pair_type) and summ[one.pair_type.iloc[0]]["me_irl"]["n_pairs"] == one.n_pairs.iloc[0]


def test_reward_embedder_lookup(tmp_path):
    import torch

    rew = RewardModel({"w": torch.zeros(3), "b": torch.tensor(0.0)})
    assert irl_grid.reward_embedder(rew, tmp_path) == "minilm"
    (tmp_path / "embedder.txt").write_text("other\n")
    assert irl_grid.reward_embedder(rew, tmp_path / "sub") == "other"
    save_reward(tmp_path / "r", rew, extra={"embedder": "minilm"})
    assert irl_grid.reward_embedder(load_reward(tmp_path / "r")) == "minilm"


@pytest.mark.assets
def test_cli_score_reward(tmp_path):
    import torch

    gen = torch.Generator().manual_seed(0)
    rew = RewardModel({"w": torch.randn(384, generator=gen), "b": torch.tensor(0.5)}, meta={"method": "me_irl"})
    save_reward(tmp_path, rew, extra={"embedder": "minilm"})
    proc = subprocess.run([sys.executable, "-m", "fairl_lib", "score", "reward", str(tmp_path)],
                          input="you are an idiot\nhave a nice day\n", capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["you are an idiot", "have a nice day"]
    from fairl_lib.llm.models import embed

    expected = rew(embed(["you are an idiot", "have a nice day"]))
    assert np.allclose([r["reward"] for r in rows], expected, atol=1e-5)
    assert all(r["reward_failure"] == 0.0 for r in rows)


def test_failure_path_share(trained, ps):
    _, out, _, _ = trained
    fs = evaluate.failure_path_share(out, ps)
    assert set(fs["method"]) == {m for m in out.methods if "_fa_" in m} and len(fs) == 4 * 2
    assert (fs["ratio_std_F_over_D"] >= 0).all() and fs["pairs_flipped_by_R_F"].between(0, 1).all()


def test_per_seed_table_lists_every_run_in_seed_order(trained):
    _, out, ev, _ = trained
    table = evaluate.per_seed_table(ev)
    assert table["seeds"] == out.seeds
    row = ev.per_run[(ev.per_run.set == "in_domain") & (ev.per_run.method == "me_irl")].set_index("seed")
    assert table["in_domain"]["me_irl"]["auc"] == [float(row.loc[s, "auc"]) for s in out.seeds]
    assert set(table["jigsaw"]) == set(out.methods)


def test_failure_slice_control_against_a_hand_count(trained):
    """The slice of seed s is the baseline's misranked pairs (eps 0); the control is the baseline of the next
    seed on that slice. Counted by hand here; and the baseline against itself ranks none of its own slice
    right, so its difference is minus the control's accuracy."""
    _, _, ev, _ = trained
    seeds = list(ev.grid.seeds)
    margin = lambda m, s: ev.scores[(m, s)].test_post - ev.scores[(m, s)].test_pre
    right_fa = right_ctrl = n = 0
    for i, s in enumerate(seeds):
        sl = margin("me_irl", s) <= 0
        right_fa += int((margin("me_fa_margin", s)[sl] > 0).sum())
        right_ctrl += int((margin("me_irl", seeds[(i + 1) % len(seeds)])[sl] > 0).sum())
        n += int(sl.sum())
    r = evaluate.failure_slice_control(ev, "me_fa_margin", "me_irl", reps=50, slice_eps=0.0)
    assert r["fa"] == pytest.approx(right_fa / n) and r["control"] == pytest.approx(right_ctrl / n)
    assert r["difference"]["value"] == pytest.approx((right_fa - right_ctrl) / n)
    assert r["n_slice_pairs"] == pytest.approx(n / len(seeds))
    own = evaluate.failure_slice_control(ev, "me_irl", "me_irl", reps=50, slice_eps=0.0)
    assert own["fa"] == 0.0 and own["difference"]["value"] == pytest.approx(-own["control"])
