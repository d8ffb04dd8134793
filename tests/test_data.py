"""RealToxicityPrompts and Jigsaw loaders: dedupe, filters, deterministic order-free splits, counts."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pandas as pd
import pytest

from fairl_lib.llm import data as D
from fairl_lib.llm.assets import AssetUnavailable

needs_mirror = pytest.mark.skipif(not os.environ.get("FAIRL_DATA_MIRROR"),
                                  reason="FAIRL_DATA_MIRROR is not set (point it at ../shared/fairl-data)")


# --------------------------------------------------------------------------- synthetic fixtures


def _rtp_row(text: str, tox: float | None, begin: int = 0) -> dict:
    scores = {k: 0.1 for k in D.RTP_SCORES}
    return {"filename": f"doc-{text.split()[-1]}.txt", "begin": begin, "end": begin + 10, "challenging": False,
            "prompt": {"text": text, **scores, "toxicity": tox},
            "continuation": {"text": " and more", **scores, "toxicity": None}}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def rtp_dir(tmp_path):
    rows = [_rtp_row(f"prompt number {k}", k / 40) for k in range(40)]
    folder = tmp_path / "rtp"
    folder.mkdir()
    _write_jsonl(folder / "a.jsonl", rows[:25])
    _write_jsonl(folder / "b.jsonl", rows[20:])  # rows 20..24 are in both files
    return folder


def test_rtp_dedupes_and_flattens(rtp_dir):
    df = D.load_rtp(rtp_dir)
    assert len(df) == 40 and df["prompt"].is_unique and df["prompt_id"].is_unique
    assert {"prompt", "prompt_toxicity", "continuation", "continuation_toxicity", "prompt_insult"} <= set(df.columns)
    assert df["continuation_toxicity"].isna().all()  # null scores become NaN


def test_filter_is_strictly_greater(rtp_dir):
    df = D.load_rtp(rtp_dir)
    kept = D.filter_prompts(df, 0.5)
    assert (kept["prompt_toxicity"] > 0.5).all()
    assert len(kept) == sum(k / 40 > 0.5 for k in range(40))  # 0.5 itself is excluded


def test_empty_or_all_held_out_prompt_sets_say_what_to_change(rtp_dir):
    with pytest.raises(ValueError, match=r"No RealToxicityPrompts prompt has prompt_toxicity > 0.99 \(40 prompts"):
        D.rtp_prompts(0.99, 2, seed=0, folder=rtp_dir)
    n_above = sum(k / 40 > 0.5 for k in range(40))
    with pytest.raises(ValueError, match=f"heldout_prompts={n_above} leaves no training prompts: only {n_above}"):
        D.rtp_prompts(0.5, n_above, seed=0, folder=rtp_dir)


def test_split_is_deterministic_and_independent_of_row_order(rtp_dir, tmp_path):
    df = D.load_rtp(rtp_dir)
    train, held = D.split_prompts(df, 10, seed=3)
    assert len(held) == 10 and len(train) == 30
    assert set(train["prompt"]).isdisjoint(held["prompt"])
    again = D.split_prompts(df.sample(frac=1, random_state=1), 10, seed=3)[1]
    assert sorted(again["prompt"]) == sorted(held["prompt"])
    # the same prompts written in another order and other files
    rows = [json.loads(line) for f in sorted(rtp_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]
    random.Random(0).shuffle(rows)
    other = tmp_path / "shuffled"
    other.mkdir()
    _write_jsonl(other / "all.jsonl", rows)
    held2 = D.split_prompts(D.load_rtp(other), 10, seed=3)[1]
    assert held2["prompt"].tolist() == held["prompt"].tolist()
    assert sorted(D.split_prompts(df, 10, seed=4)[1]["prompt"]) != sorted(held["prompt"])
    assert len(D.split_prompts(df, 0.25, seed=0)[1]) == 10
    with pytest.raises(ValueError):
        D.split_prompts(df, 41, seed=0)


def test_rtp_prompts_caps_training_prompts(rtp_dir):
    train, held = D.rtp_prompts(0.3, 4, seed=0, max_train=5, folder=rtp_dir)
    assert len(held) == 4 and len(train) == 5
    assert (train["prompt_toxicity"] > 0.3).all()


@pytest.fixture
def kaggle_dir(tmp_path):
    """Kaggle's original layout: train.csv, test.csv (no labels), test_labels.csv (-1 = unused)."""
    folder = tmp_path / "kaggle"
    folder.mkdir()
    labels = list(D.JIGSAW_LABELS)
    train = pd.DataFrame({"id": [f"tr{k}" for k in range(8)],
                          "comment_text": ["NA", "null", "you idiot", "hello", "a\nmulti-line, \"quoted\" one",
                                           "obscene only", "clean", "toxic again"]})
    lab = [[0] * 6, [0] * 6, [1, 0, 0, 0, 1, 0], [0] * 6, [0] * 6, [0, 0, 1, 0, 0, 0], [0] * 6, [1, 1, 1, 0, 0, 0]]
    train[labels] = lab
    train.to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"id": ["te0", "te1", "te2", "te3"],
                  "comment_text": ["test clean", "test toxic", "unused", "test clean 2"]}).to_csv(folder / "test.csv",
                                                                                                 index=False)
    tl = pd.DataFrame({"id": ["te0", "te1", "te2", "te3"]})
    tl[labels] = [[0] * 6, [1, 0, 0, 1, 0, 0], [-1] * 6, [0] * 6]
    tl.to_csv(folder / "test_labels.csv", index=False)
    return folder


def test_kaggle_layout_is_read_with_test_labels(kaggle_dir):
    df = D.load_jigsaw(kaggle_dir)
    assert set(df["id"]) == {f"tr{k}" for k in range(8)} | {"te0", "te1", "te3"}  # te2 (-1) dropped
    assert set(df.loc[df["id"].str.startswith("te"), "split"]) == {"test"}
    text = dict(zip(df["id"], df["comment_text"]))
    assert text["tr0"] == "NA" and text["tr1"] == "null"  # not parsed as missing values
    assert text["tr4"] == 'a\nmulti-line, "quoted" one'


def test_heldout_takes_test_first_and_excludes_ambiguous(kaggle_dir):
    out = D.jigsaw_heldout(2, 3, seed=0, folder=kaggle_dir)
    assert out["label"].value_counts().to_dict() == {1: 2, 0: 3}
    assert "te1" in set(out["id"])  # the only test toxic comes first
    assert {"te0", "te3"} <= set(out["id"])  # both test clean rows come first
    assert "tr5" not in set(out["id"])  # toxic==0 but obscene==1: excluded by default
    assert set(D.JIGSAW_LABELS) <= set(out.columns) and {"id", "text", "label", "split"} <= set(out.columns)
    cls = D.jigsaw_classes(D.load_jigsaw(kaggle_dir), ambiguous="nontoxic")
    assert cls.value_counts().get(-1, 0) == 0
    with pytest.raises(ValueError, match="only 3 are available"):
        D.jigsaw_heldout(4, 1, seed=0, folder=kaggle_dir)


def test_missing_data_raises_the_asset_error(tmp_path, monkeypatch):
    monkeypatch.delenv("FAIRL_DATA_MIRROR", raising=False)
    monkeypatch.delenv("FAIRL_JIGSAW_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(AssetUnavailable, match="FAIRL_DATA_MIRROR"):
        D.load_jigsaw()
    with pytest.raises(AssetUnavailable, match="allenai/real-toxicity-prompts"):
        D.load_rtp()


# --------------------------------------------------------------------------- the real mirror


@pytest.mark.assets
@needs_mirror
def test_mirror_rtp_counts():
    df = D.load_rtp()
    assert len(df) == 2392  # 1196 + 1200 rows, 4 prompt texts in both files
    assert len(D.filter_prompts(df, 0.3)) == 1246  # SOURCES.md's 1248 counts the 2 duplicates > 0.3 twice
    assert len(D.filter_prompts(df, 0.5)) == 993
    train, held = D.rtp_prompts(0.5, 128, seed=0)
    assert (len(train), len(held)) == (865, 128)


@pytest.mark.assets
@needs_mirror
def test_mirror_jigsaw_heldout_paper_size():
    out = D.jigsaw_heldout(1000, 1000, seed=0)
    assert len(out) == 2000 and out["id"].is_unique and out["text"].is_unique
    assert out["label"].value_counts().to_dict() == {1: 1000, 0: 1000}
    assert (out.loc[out["label"] == 1, "toxic"] == 1).all()
    assert (out.loc[out["label"] == 0, list(D.JIGSAW_LABELS)] == 0).all().all()
    # all test-split rows of each class are in (390 toxic, 400 clean), train rows fill up
    test = out[out["split"] == "test"]
    assert test["label"].value_counts().to_dict() == {1: 390, 0: 400}
    # subtype labels kept and informative
    assert out.loc[out["label"] == 1, ["obscene", "insult", "threat", "identity_hate"]].sum().min() > 0
    again = D.jigsaw_heldout(1000, 1000, seed=0)
    pd.testing.assert_frame_equal(out, again)
    other = D.jigsaw_heldout(1000, 1000, seed=1)
    assert set(other["id"]) != set(out["id"])
    assert set(other.loc[other["split"] == "test", "id"]) == set(test["id"])
