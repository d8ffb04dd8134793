"""Pair artifact (fairl_lib.analysis.pairset): pair types, counts, the by-prompt split, save/load round trip."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairl_lib.analysis import pairset as P


def test_pair_type_logic():
    pre = [True, False, False, True]
    post = [False, False, True, True]
    assert list(P.pair_type(pre, post)) == ["T->NT", "NT->NT", "NT->T", "T->T"]


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=60))
@settings(max_examples=50, deadline=None)
def test_count_pair_types_sums_and_matches(flags):
    pre = [a for a, _ in flags]
    post = [b for _, b in flags]
    df = pd.DataFrame({"pair_type": P.pair_type(pre, post) if flags else np.array([], dtype=str)})
    counts = P.count_pair_types(df)
    assert list(counts) == list(P.PAIR_TYPES)
    assert sum(counts.values()) == len(flags)
    assert counts["T->NT"] == sum(a and not b for a, b in flags)
    assert counts["NT->T"] == sum(b and not a for a, b in flags)


def _ids(n_prompts: int, reps: int = 3) -> list[str]:
    return [f"p{i:04d}" for i in range(n_prompts) for _ in range(reps)]


def test_split_deterministic_and_by_prompt():
    ids = _ids(200)
    a = P.split_by_prompt(ids, 0.2, seed=0)
    assert (a == P.split_by_prompt(ids, 0.2, seed=0)).all()
    df = pd.DataFrame({"prompt_id": ids, "split": a})
    assert df.groupby("prompt_id")["split"].nunique().max() == 1  # no prompt in both splits
    assert (df.drop_duplicates("prompt_id").split == "test").sum() == 40
    assert not (a == P.split_by_prompt(ids, 0.2, seed=1)).all()


@given(st.permutations(list(range(60))), st.integers(0, 5))
@settings(max_examples=25, deadline=None)
def test_split_independent_of_row_order(perm, seed):
    ids = _ids(60, 2)
    base = dict(zip(ids, P.split_by_prompt(ids, 0.25, seed)))
    shuffled = [ids[i] for i in perm] + [ids[i + 60] for i in perm]
    for pid, s in zip(shuffled, P.split_by_prompt(shuffled, 0.25, seed)):
        assert base[pid] == s


def test_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        P.split_by_prompt(["a"], 1.0, 0)


def test_prompt_order_depends_on_ids_only():
    ids = [f"q{i}" for i in range(30)]
    o1 = [ids[i] for i in P.prompt_order(ids, 3)]
    rev = ids[::-1]
    o2 = [rev[i] for i in P.prompt_order(rev, 3)]
    assert o1 == o2 and sorted(o1) == sorted(ids)


def _pairset(n_prompts: int = 10, reps: int = 3, d: int = 8, seed: int = 0) -> P.PairSet:
    rng = np.random.default_rng(seed)
    ids = _ids(n_prompts, reps)
    n = len(ids)
    df = pd.DataFrame({"pair_id": [f"{p}-{i % reps}" for i, p in enumerate(ids)], "prompt_id": ids,
                       "prompt": [f"prompt {p}" for p in ids], "o_pre": ["x"] * n, "o_post": ["y"] * n,
                       "split": P.split_by_prompt(ids, 0.3, seed)})
    for side in ("pre", "post"):
        df[f"{side}_p_toxic"] = rng.random(n)
        for lab in P.SUBTYPE_LABELS:
            df[f"{side}_{lab}"] = rng.random(n)
        df[f"{side}_judge_p"] = rng.random(n)
        df[f"{side}_toxic"] = df[f"{side}_p_toxic"] > 0.5
        df[f"{side}_reward"] = 1 - df[f"{side}_p_toxic"]
    df["pair_type"] = P.pair_type(df.pre_toxic, df.post_toxic)
    return P.PairSet(df, rng.standard_normal((n, d)).astype(np.float32),
                     rng.standard_normal((n, d)).astype(np.float32), {"note": "test", "n_pairs": n})


def test_save_load_round_trip(tmp_path):
    ps = _pairset()
    P.save_pairset(tmp_path / "a", ps)
    back = P.load_pairset(tmp_path / "a")
    pd.testing.assert_frame_equal(back.df, ps.df, check_dtype=False)
    np.testing.assert_array_equal(back.emb_pre, ps.emb_pre)
    np.testing.assert_array_equal(back.emb_post, ps.emb_post)
    assert back.meta["note"] == "test" and back.meta["version"] == P.PAIRSET_VERSION


def test_load_missing_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook 02"):
        P.load_pairset(tmp_path)


def test_split_and_subset_follow_embeddings():
    ps = _pairset()
    tr, te = ps.split("train"), ps.split("test")
    assert len(tr) + len(te) == len(ps)
    assert set(tr.df.prompt_id).isdisjoint(te.df.prompt_id)
    mask = ps.df.split.to_numpy() == "test"
    np.testing.assert_array_equal(te.emb_pre, ps.emb_pre[mask])


def test_pair_type_table_and_subtypes():
    ps = _pairset(n_prompts=40)
    t = P.pair_type_table(ps)
    assert t.loc["all", "total"] == len(ps)
    assert t.loc["train", "total"] + t.loc["test", "total"] == len(ps)
    assert (t.loc["train", list(P.PAIR_TYPES)] + t.loc["test", list(P.PAIR_TYPES)]
            == t.loc["all", list(P.PAIR_TYPES)]).all()
    dist = P.subtype_distribution(ps)
    assert "toxic" not in dist.index and list(dist.columns) == ["train", "test"]
    d = ps.df[(ps.df.split == "train") & (ps.df.pair_type == "T->NT")]
    assert dist.loc["n", "train"] == len(d)
    assert dist.loc["obscene", "train"] == pytest.approx((d.pre_obscene > 0.5).mean())


def test_score_pairs_with_stub_scorers(monkeypatch):
    from fairl_lib.llm import scorers

    class Stub:
        labels = P.SUBTYPE_LABELS

        def __init__(self, name):
            self.name = name

        def __call__(self, texts):
            p = np.array([0.9 if "bad" in t else 0.1 for t in texts])
            return {lab: p for lab in self.labels}

    monkeypatch.setattr(P, "get_scorer", lambda name: Stub(name))
    df = pd.DataFrame({"o_pre": ["bad", "ok", "ok", "bad"], "o_post": ["ok", "ok", "bad", "bad"]})
    out = P.score_pairs(df, "gt", "sub", "judge", 0.5)
    assert list(out.pair_type) == ["T->NT", "NT->NT", "NT->T", "T->T"]
    assert out.pre_reward.tolist() == pytest.approx([0.1, 0.9, 0.9, 0.1])
    assert {f"post_{lab}" for lab in P.SUBTYPE_LABELS} <= set(out.columns)


@pytest.mark.assets
def test_jigsaw_scorer_auc_real():
    table = P.jigsaw_scorer_auc({"ground truth": "bilstm"}, 60, 60, seed=0)
    assert set(table.subset) == {"all", "test split only"}
    assert (table.auc > 0.8).all()
