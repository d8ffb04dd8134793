"""Preference pairs (paper Section 5, "Preference Data for IRL") and the pair artifact.

A pair is one prompt with the base model's completion ``o_pre`` and the expert's ``o_post``; the
preferred output is always ``o_post`` (the paper's convention, whatever the scores say).

The pair artifact (a stage folder, see :func:`save_pairset` / :func:`load_pairset`):

- ``pairs.parquet``: one row per pair. Columns: ``pair_id``, ``prompt_id``, ``prompt``, ``o_pre``,
  ``o_post``, ``split`` (``train``/``test``, by prompt), for ``side`` in ``pre``/``post``:
  ``{side}_p_toxic`` (ground truth P(toxic)), ``{side}_{label}`` for the six Jigsaw labels
  (:data:`SUBTYPE_LABELS`, from the profile's subtype scorer), ``{side}_judge_p`` (second judge),
  ``{side}_toxic`` (bool: ground truth P(toxic) > threshold), ``{side}_reward`` (ground-truth
  reward, ``scorers.reward_from_scores``); and ``pair_type`` (:data:`PAIR_TYPES`).
- ``emb_pre.npy`` / ``emb_post.npy``: float32 (n_pairs, d) frozen embeddings h(o), row-aligned.
- ``meta.json``: versions, models, thresholds, counts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairl_lib.artifacts import write_json

SUBTYPE_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
PAIR_TYPES = ("T->NT", "NT->NT", "NT->T", "T->T")
PAIRSET_VERSION = "1"


@dataclass(frozen=True)
class PairSet:
    """The pair table plus row-aligned embeddings of both sides (see the module docstring)."""

    df: pd.DataFrame
    emb_pre: np.ndarray
    emb_post: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.df)
        if self.emb_pre.shape[0] != n or self.emb_post.shape[0] != n:
            raise ValueError(f"PairSet: {n} rows but embeddings of {self.emb_pre.shape[0]} / "
                             f"{self.emb_post.shape[0]} rows; they must be row-aligned.")

    def __len__(self) -> int:
        return len(self.df)

    def subset(self, mask_or_index) -> "PairSet":
        """Rows selected by a boolean mask or integer positions (embeddings follow)."""
        idx = np.flatnonzero(mask_or_index) if np.asarray(mask_or_index).dtype == bool else np.asarray(mask_or_index)
        return PairSet(self.df.iloc[idx].reset_index(drop=True), self.emb_pre[idx], self.emb_post[idx], self.meta)

    def split(self, name: str) -> "PairSet":
        """The ``train`` or ``test`` split."""
        if name not in ("train", "test"):
            raise ValueError(f"Unknown split {name!r}; use 'train' or 'test'.")
        return self.subset(self.df["split"].to_numpy() == name)


def pair_type(pre_toxic, post_toxic) -> np.ndarray:
    """``T->NT`` when the base output is toxic and the expert's is not, etc. (Appendix D)."""
    pre = np.where(np.asarray(pre_toxic, dtype=bool), "T", "NT")
    post = np.where(np.asarray(post_toxic, dtype=bool), "T", "NT")
    return np.char.add(np.char.add(pre.astype(str), "->"), post.astype(str))


def count_pair_types(df: pd.DataFrame) -> dict[str, int]:
    """Counts of each of :data:`PAIR_TYPES` (zeros included)."""
    counts = df["pair_type"].value_counts()
    return {t: int(counts.get(t, 0)) for t in PAIR_TYPES}


def save_pairset(folder: str | Path, ps: PairSet) -> Path:
    """Write the artifact into ``folder`` (a stage work folder: the stage cache makes it atomic)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ps.df.to_parquet(folder / "pairs.parquet", index=False)
    np.save(folder / "emb_pre.npy", ps.emb_pre.astype(np.float32))
    np.save(folder / "emb_post.npy", ps.emb_post.astype(np.float32))
    write_json(folder / "meta.json", {"version": PAIRSET_VERSION, **ps.meta})
    return folder


def load_pairset(folder: str | Path) -> PairSet:
    """Read an artifact written by :func:`save_pairset`."""
    folder = Path(folder)
    missing = [f for f in ("pairs.parquet", "emb_pre.npy", "emb_post.npy", "meta.json") if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a pair artifact (missing {missing}); run notebook 02 first.")
    meta = json.loads((folder / "meta.json").read_text())
    return PairSet(pd.read_parquet(folder / "pairs.parquet"), np.load(folder / "emb_pre.npy"),
                   np.load(folder / "emb_post.npy"), meta)
