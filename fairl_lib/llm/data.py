"""Real data of paper Section 5: RealToxicityPrompts prompts and the Jigsaw held-out set.

Sources (see :mod:`fairl_lib.llm.assets`): the data mirror (``FAIRL_DATA_MIRROR``, same schemas as the
originals) or, for RealToxicityPrompts, the hub dataset ``allenai/real-toxicity-prompts``; for
Jigsaw a folder of Kaggle CSVs (``FAIRL_JIGSAW_DIR``). Jigsaw has no hub source: the hub copies
(e.g. ``google/jigsaw_toxicity_pred``) require a manual Kaggle download anyway. Nothing found raises
:class:`fairl_lib.llm.assets.AssetUnavailable` saying how to provide the data.

Determinism: every selection orders rows by a stable hash of ``(seed, key)`` (prompt text or
Jigsaw id), so results depend on the seed and the *set* of rows, never on file or row order.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fairl_lib.llm.assets import fetch

RTP_SCORES: tuple[str, ...] = ("toxicity", "severe_toxicity", "profanity", "sexually_explicit",
                               "identity_attack", "flirtation", "threat", "insult")
JIGSAW_LABELS: tuple[str, ...] = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")


def stable_hash(key: str, seed: int) -> int:
    """A 64-bit integer from sha256 of ``"<seed>\\x00<key>"``: the same on every machine and run."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{key}".encode()).digest()[:8], "big")


def _hash_order(keys: pd.Series, seed: int) -> np.ndarray:
    """Positions that sort ``keys`` by :func:`stable_hash` (ties, impossible in practice, by key)."""
    h = np.array([stable_hash(str(k), seed) for k in keys], dtype=np.uint64)
    return np.lexsort((keys.astype(str).to_numpy(), h))


# =========================================================================== RealToxicityPrompts


def _rtp_rows(path: Path) -> list[dict]:
    """Flatten one RealToxicityPrompts JSON-lines file (hub schema) into plain columns."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            r = json.loads(line)
            prompt, cont = r.get("prompt") or {}, r.get("continuation") or {}
            row = {"prompt": prompt.get("text", ""), "continuation": cont.get("text", ""),
                   "filename": r.get("filename"), "begin": r.get("begin"), "end": r.get("end"),
                   "challenging": bool(r.get("challenging", False)), "source_file": path.name}
            for k in RTP_SCORES:
                row[f"prompt_{k}"] = prompt.get(k)
                row[f"continuation_{k}"] = cont.get(k)
            rows.append(row)
    return rows


def load_rtp(folder: Path | None = None, sources: Sequence[str] = ("rtp",)) -> pd.DataFrame:
    """All RealToxicityPrompts rows from the ``*.jsonl`` files of ``folder`` (default: the assets
    named in ``sources``, e.g. ``("rtp", "rtp-quark")``, read together).

    Columns: ``prompt_id`` (first 16 hex of sha256 of the prompt text), ``prompt``,
    ``prompt_<score>`` and ``continuation_<score>`` for the 8 Perspective scores (``NaN`` where
    null), ``continuation``, ``filename``, ``begin``, ``end``, ``challenging``, ``source_file``.
    Prompts are deduplicated by text (the mirror's two rtp files share 4 identical rows, rtp-quark
    repeats 38 of their prompts; the row kept is the first by ``(filename, begin, source_file)``).
    Rows are sorted by ``prompt_id``.
    """
    folders = [Path(folder)] if folder is not None else [fetch(name) for name in sources]
    files = [f for d in folders for f in (sorted(d.rglob("*.jsonl")) if d.is_dir() else [d])]
    if not files:
        raise FileNotFoundError(f"No *.jsonl file in {', '.join(map(str, folders))} (RealToxicityPrompts, hub schema).")
    df = pd.DataFrame([row for f in files for row in _rtp_rows(f)])
    for k in RTP_SCORES:
        for side in ("prompt", "continuation"):
            df[f"{side}_{k}"] = pd.to_numeric(df[f"{side}_{k}"], errors="coerce").astype(float)
    df = df.sort_values(["prompt", "filename", "begin", "source_file"], kind="stable")
    df = df.drop_duplicates("prompt", keep="first")
    df.insert(0, "prompt_id", [hashlib.sha256(t.encode()).hexdigest()[:16] for t in df["prompt"]])
    return df.sort_values("prompt_id", kind="stable").reset_index(drop=True)


def filter_prompts(df: pd.DataFrame, min_toxicity: float) -> pd.DataFrame:
    """Prompts whose Perspective ``prompt_toxicity`` is strictly greater than ``min_toxicity``
    (paper Sec. 5: > 0.3 for PPO, > 0.5 for preference pairs). Null scores are dropped."""
    return df[df["prompt_toxicity"] > min_toxicity].reset_index(drop=True)


def split_prompts(df: pd.DataFrame, n_held_out: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic ``(train, held_out)`` split of prompts.

    The ``n_held_out`` prompts with the smallest :func:`stable_hash` of ``(seed, prompt text)``
    are held out (a float in (0, 1) is a fraction, rounded). Both parts keep ``prompt_id`` order.
    Because the hash is per prompt, a prompt held out from a larger pool stays held out in any
    sub-pool that still needs as many held-out prompts below its rank.
    """
    n = round(n_held_out * len(df)) if isinstance(n_held_out, float) and 0 < n_held_out < 1 else int(n_held_out)
    if not 0 <= n <= len(df):
        raise ValueError(f"n_held_out={n_held_out} does not fit {len(df)} prompts.")
    order = _hash_order(df["prompt"], seed)
    held = np.zeros(len(df), dtype=bool)
    held[order[:n]] = True
    return df[~held].reset_index(drop=True), df[held].reset_index(drop=True)


def rtp_prompts(min_toxicity: float, n_held_out: float, seed: int, max_train: int = 0,
                folder: Path | None = None, sources: Sequence[str] = ("rtp",),
                pool: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RealToxicityPrompts filtered by prompt toxicity and split: ``(train, held_out)`` (``folder`` /
    ``sources`` as in :func:`load_rtp`; ``pool``, rows of :func:`load_rtp`, replaces them, e.g. the
    prompts that passed :mod:`fairl_lib.stages.screen`).

    ``max_train > 0`` keeps that many training prompts (the first by the seed's hash order).
    """
    df = load_rtp(folder, sources) if pool is None else pool
    kept = filter_prompts(df, min_toxicity)
    if kept.empty:
        raise ValueError(f"No RealToxicityPrompts prompt has prompt_toxicity > {min_toxicity} ({len(df)} prompts "
                         f"read): lower data.ppo_prompt_toxicity or check the RealToxicityPrompts files.")
    train, held = split_prompts(kept, n_held_out, seed)
    if train.empty:
        raise ValueError(f"data.heldout_prompts={n_held_out} leaves no training prompts: only {len(kept)} prompts "
                         f"have prompt_toxicity > {min_toxicity}. Hold out fewer prompts or lower the threshold.")
    if max_train and len(train) > max_train:
        keep = np.sort(_hash_order(train["prompt"], seed + 1)[:max_train])
        train = train.iloc[keep].reset_index(drop=True)
    return train, held


# =========================================================================== Jigsaw


def _read_csv(path: Path) -> pd.DataFrame:
    """A Jigsaw CSV with text kept verbatim (a comment "NA" or "null" stays a string)."""
    return pd.read_csv(path, dtype={"id": str, "comment_text": str}, keep_default_na=False, na_values=[])


def _jigsaw_file(path: Path, test_labels: pd.DataFrame | None) -> pd.DataFrame | None:
    """One comments file as ``id, comment_text, 6 labels, split, source_file`` (``None``: not one).

    Kaggle's ``test.csv`` has no labels: they are merged from ``test_labels.csv`` and rows
    labelled ``-1`` (not used for scoring by Kaggle) are dropped.
    """
    split = "test" if path.name.startswith("test") else "train" if path.name.startswith("train") else None
    if split is None or path.name.startswith("test_labels"):
        return None
    df = _read_csv(path)
    if "comment_text" not in df.columns:
        return None
    if not set(JIGSAW_LABELS) <= set(df.columns):
        if test_labels is None:
            raise FileNotFoundError(f"{path} has no labels and there is no test_labels.csv next to it.")
        df = df[["id", "comment_text"]].merge(test_labels, on="id", how="inner")
    df = df[["id", "comment_text", *JIGSAW_LABELS]].copy()
    df[list(JIGSAW_LABELS)] = df[list(JIGSAW_LABELS)].apply(pd.to_numeric, errors="raise").astype(int)
    df = df[(df[list(JIGSAW_LABELS)] >= 0).all(axis=1)]
    df["split"], df["source_file"] = split, path.name
    return df


def load_jigsaw(folder: Path | None = None) -> pd.DataFrame:
    """Every labelled Jigsaw comment in ``folder`` (default: asset ``jigsaw``), one row per id.

    Reads the mirror's ``test.*.csv`` / ``train.*.csv`` or Kaggle's ``train.csv``, ``test.csv`` +
    ``test_labels.csv``. Columns: ``id, comment_text``, the 6 labels (0/1), ``split``
    (``test``/``train``, from the file name), ``source_file``. Deduplicated by id, test rows
    first (no id is in both splits of the mirror); then exact duplicate texts are dropped too.
    """
    folder = Path(folder) if folder is not None else fetch("jigsaw")
    labels_path = folder / "test_labels.csv"
    test_labels = _read_csv(labels_path) if labels_path.exists() else None
    parts = [df for f in sorted(folder.glob("*.csv")) if (df := _jigsaw_file(f, test_labels)) is not None]
    if not parts:
        raise FileNotFoundError(f"No labelled Jigsaw CSV (test*.csv / train*.csv) in {folder}.")
    df = pd.concat(parts, ignore_index=True)
    df["_rank"] = (df["split"] != "test").astype(int)
    df = df.sort_values(["_rank", "id", "source_file"], kind="stable").drop_duplicates("id")
    df = df.drop_duplicates("comment_text").drop(columns="_rank")
    return df.sort_values(["split", "id"], kind="stable").reset_index(drop=True)


def jigsaw_classes(df: pd.DataFrame, ambiguous: Literal["exclude", "nontoxic"] = "exclude") -> pd.Series:
    """Binary class of each comment: 1 toxic, 0 non-toxic, -1 left out.

    Toxic = ``toxic == 1`` (the Jigsaw "toxic" label, the one our scorers' ``P(toxic)`` predicts).
    Non-toxic = no label at all. A comment with ``toxic == 0`` but another label (e.g. only
    ``obscene``; 189 of the mirror's 10,648) is ambiguous: ``"exclude"`` (default) leaves it out of
    both classes, ``"nontoxic"`` counts it as non-toxic.
    """
    if ambiguous not in ("exclude", "nontoxic"):
        raise ValueError(f"ambiguous must be 'exclude' or 'nontoxic', got {ambiguous!r}.")
    clean = (df[list(JIGSAW_LABELS)] == 0).all(axis=1)
    cls = pd.Series(-1, index=df.index)
    cls[clean | ((df["toxic"] == 0) & (ambiguous == "nontoxic"))] = 0
    cls[df["toxic"] == 1] = 1
    return cls


def _take(df: pd.DataFrame, n: int, seed: int, what: str) -> pd.DataFrame:
    """``n`` rows: all test-split rows first (hash order by seed), then train rows to fill up."""
    if n > len(df):
        raise ValueError(f"Asked for {n} {what} Jigsaw comments but only {len(df)} are available; "
                         "lower data.jigsaw_n_* or point FAIRL_JIGSAW_DIR at the full Kaggle files.")
    h = np.array([stable_hash(i, seed) for i in df["id"]], dtype=np.uint64)
    order = np.lexsort((df["id"].to_numpy(), h, (df["split"] != "test").to_numpy()))
    return df.iloc[order[:n]]


def jigsaw_heldout(n_toxic: int = 1000, n_nontoxic: int = 1000, seed: int = 0,
                   ambiguous: Literal["exclude", "nontoxic"] = "exclude",
                   folder: Path | None = None) -> pd.DataFrame:
    """The held-out Jigsaw set of paper Sec. 5: ``n_toxic`` toxic + ``n_nontoxic`` non-toxic
    human-labelled comments (paper: 1,000 + 1,000).

    Each class takes all its test-split comments first, then train-split ones to fill up, in
    the seed's hash order of ids (see :func:`jigsaw_classes` for the classes). Columns: ``id``,
    ``text``, ``label`` (1 toxic / 0 non-toxic), the 6 subtype labels, ``split``, ``source_file``;
    rows in the seed's hash order (classes interleaved).
    """
    df = load_jigsaw(folder)
    cls = jigsaw_classes(df, ambiguous)
    out = pd.concat([_take(df[cls == 1], n_toxic, seed, "toxic").assign(label=1),
                     _take(df[cls == 0], n_nontoxic, seed, "non-toxic").assign(label=0)])
    out = out.rename(columns={"comment_text": "text"})
    out = out.iloc[_hash_order(out["id"], seed + 1)]
    return out[["id", "text", "label", *JIGSAW_LABELS, "split", "source_file"]].reset_index(drop=True)
