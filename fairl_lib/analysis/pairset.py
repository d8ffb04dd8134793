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

From pairs to the IRL core's data (paper Sec. 5):

- :func:`preference_data` turns a :class:`~fairl_lib.pairs.PairSet` split into the IRL core's
  :class:`~fairl_lib.irl.PreferenceData`: o+ = ``o_post`` (always preferred, the paper's
  convention), o- = ``o_pre``, h = the frozen embeddings of the artifact. Labels for the supervised
  failures of the ``*_fa_gt`` methods (Alg. 1 line 6, ``y(o) in {-1, +1}``) are **+1 = non-toxic,
  -1 = toxic**, read from ``{side}_toxic`` (the ground-truth scorer's P(toxic) above
  ``models.toxic_threshold``). The paper only says "ground-truth labels y(o) (e.g. toxicity)"; the
  label column is a parameter (``label_column``), e.g. ``"obscene"`` uses ``{side}_obscene > 0.5``.
- The failure head sees the same frozen embedding h(o) as the base head (Sec. 4.1 writes
  theta_F^T h(o)); see :mod:`fairl_lib.irl.reward`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from fairl_lib.artifacts import write_json
from fairl_lib.irl import PreferenceData
from fairl_lib.irl.synthetic import make_synthetic
from fairl_lib.llm.data import jigsaw_heldout
from fairl_lib.llm.scorers import get_scorer, reward_from_scores

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

    def subset(self, mask_or_index) -> PairSet:
        """Rows selected by a boolean mask or integer positions (embeddings follow)."""
        idx = np.flatnonzero(mask_or_index) if np.asarray(mask_or_index).dtype == bool else np.asarray(mask_or_index)
        return PairSet(self.df.iloc[idx].reset_index(drop=True), self.emb_pre[idx], self.emb_post[idx], self.meta)

    def split(self, name: str) -> PairSet:
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


# =========================================================================== building pairs (notebook 02)


def _prompt_hash(prompt_id: str, seed: int, salt: str) -> int:

    return int.from_bytes(hashlib.sha256(f"{salt}\x00{seed}\x00{prompt_id}".encode()).digest()[:8], "big")


def prompt_order(prompt_ids, seed: int) -> np.ndarray:
    """Positions of ``prompt_ids`` in a seed-determined order that depends only on the ids (not on
    row order): used to decide which prompts get one more pair when ``n_pairs`` caps the total."""
    ids = [str(p) for p in prompt_ids]
    return np.array(sorted(range(len(ids)), key=lambda i: (_prompt_hash(ids[i], seed, "order"), ids[i])), dtype=int)


def split_by_prompt(prompt_ids, test_fraction: float, seed: int) -> np.ndarray:
    """``"train"``/``"test"`` for each row, by prompt: all pairs of a prompt fall in the same split.

    ``round(test_fraction * n_distinct_prompts)`` prompts go to the test split: those with the
    smallest sha256 hash of ``(seed, prompt_id)``. The split depends only on the *set* of prompts
    and the seed (never on row order), so it is deterministic and no prompt leaks across splits.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}.")
    ids = np.asarray([str(p) for p in prompt_ids])
    distinct = sorted(set(ids.tolist()), key=lambda p: (_prompt_hash(p, seed, "split"), p))
    n_test = round(test_fraction * len(distinct))
    test = set(distinct[:n_test])
    return np.where(np.isin(ids, list(test)), "test", "train") if len(ids) else np.zeros(0, dtype="<U5")


def score_pairs(df: pd.DataFrame, ground_truth: str, subtypes: str, judge: str, threshold: float,
                reward_kind: str = "one_minus_p") -> pd.DataFrame:
    """Add the score columns of the artifact (module docstring) for ``o_pre`` and ``o_post``, and
    ``pair_type``. Scorers are names in :mod:`fairl_lib.llm.scorers`; subtype labels a scorer lacks
    are NaN. A side is toxic when the ground truth's P(toxic) > ``threshold``.
    """

    gt, sub, jd = get_scorer(ground_truth), get_scorer(subtypes), get_scorer(judge)
    out = df.copy()
    for side in ("pre", "post"):
        texts = list(out[f"o_{side}"])
        g = gt(texts)
        s = g if subtypes == ground_truth else sub(texts)
        p = np.asarray(g["toxic"], dtype=np.float64)
        out[f"{side}_p_toxic"] = p
        for lab in SUBTYPE_LABELS:
            out[f"{side}_{lab}"] = np.asarray(s[lab], dtype=np.float64) if lab in s else np.nan
        out[f"{side}_judge_p"] = np.asarray(jd(texts)["toxic"], dtype=np.float64)
        out[f"{side}_toxic"] = p > threshold
        out[f"{side}_reward"] = reward_from_scores(p, reward_kind)
    out["pair_type"] = pair_type(out["pre_toxic"], out["post_toxic"])
    return out


def pair_type_table(ps: PairSet) -> pd.DataFrame:
    """Counts and shares of each pair type, overall and per split."""
    rows = {}
    for name, part in (("all", ps.df), ("train", ps.df[ps.df.split == "train"]), ("test", ps.df[ps.df.split == "test"])):
        c = count_pair_types(part)
        rows[name] = {**{t: c[t] for t in PAIR_TYPES}, "total": len(part)}
    table = pd.DataFrame(rows).T
    table.index.name = "split"
    return table


def subtype_distribution(ps: PairSet, threshold: float = 0.5, side: str = "pre",
                         types: tuple[str, ...] = ("T->NT",)) -> pd.DataFrame:
    """Paper Figure 3 (middle): subtypes within the toxic subset of train and test.

    The toxic subset is the toxic side (``side``, default the base output ``o_pre``) of the pairs of
    ``types`` (default ``T->NT``, as in the paper's caption). For each of the five subtypes (the
    six labels minus ``toxic`` itself) the share of those outputs whose subtype probability exceeds
    ``threshold``; multi-label, so shares need not sum to 1. Also ``n`` per split.
    """
    subtypes = [lab for lab in SUBTYPE_LABELS if lab != "toxic"]
    out = {}
    for split in ("train", "test"):
        d = ps.df[(ps.df.split == split) & ps.df.pair_type.isin(types)]
        out[split] = {lab: float((d[f"{side}_{lab}"] > threshold).mean()) if len(d) else np.nan for lab in subtypes}
        out[split]["n"] = len(d)
    table = pd.DataFrame(out)
    table.index.name = "subtype"
    return table


def jigsaw_scorer_auc(scorers: dict[str, str], n_toxic: int, n_nontoxic: int, seed: int) -> pd.DataFrame:
    """ROC-AUC of toxicity scorers on the Jigsaw held-out set (``data.jigsaw_heldout``).

    ``scorers`` maps a role (``"ground truth"``) to a scorer name. Two rows per scorer: ``all``
    (the whole held-out set) and ``test split only`` (rows from Jigsaw's test split: the mirror has
    too few test rows for the full set, so the rest come from the *train* split, which the scorers
    were probably trained on; AUC on ``all`` is optimistic).
    """


    jig = jigsaw_heldout(n_toxic, n_nontoxic, seed)
    rows = []
    for role, name in scorers.items():
        p = np.asarray(get_scorer(name)(list(jig["text"]))["toxic"], dtype=np.float64)
        for subset, mask in (("all", np.ones(len(jig), bool)), ("test split only", (jig["split"] == "test").to_numpy())):
            y = jig["label"].to_numpy()[mask]
            auc = float(roc_auc_score(y, p[mask])) if len(set(y)) == 2 else float("nan")
            rows.append({"role": role, "scorer": name, "subset": subset, "n": int(mask.sum()),
                         "n_toxic": int(y.sum()), "auc": auc})
    return pd.DataFrame(rows)


def plot_pre_vs_post(ps: PairSet, threshold: float = 0.5):
    """Left: P(toxic) of o_pre against o_post, one dot per pair (quadrants = pair types).
    Right: histograms of both sides' P(toxic)."""

    d = ps.df
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    for t, color in zip(PAIR_TYPES, ("C2", "C7", "C3", "C1")):
        m = d.pair_type == t
        ax.scatter(d.loc[m, "pre_p_toxic"], d.loc[m, "post_p_toxic"], s=6, alpha=0.5, color=color,
                   label=f"{t} ({int(m.sum())})")
    ax.axvline(threshold, color="k", ls="--", lw=0.8)
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set(xlabel="P(toxic) of o_pre (base)", ylabel="P(toxic) of o_post (expert)", xlim=(-0.02, 1.02),
           ylim=(-0.02, 1.02), title="pairs: base vs expert output")
    ax.legend(markerscale=3, fontsize=8, loc="upper right")
    bins = np.linspace(0, 1, 26)
    axes[1].hist(d["pre_p_toxic"], bins=bins, alpha=0.55, label="o_pre (base)", color="C0")
    axes[1].hist(d["post_p_toxic"], bins=bins, alpha=0.55, label="o_post (expert)", color="C2")
    axes[1].axvline(threshold, color="k", ls="--", lw=0.8)
    axes[1].set(yscale="log", xlabel="ground-truth P(toxic)", ylabel="outputs", title="toxicity of pair outputs")
    axes[1].legend()
    fig.tight_layout()
    return fig


def plot_subtype_distribution(table: pd.DataFrame, scorer: str = ""):
    """Bar chart of :func:`subtype_distribution` (paper Figure 3, middle)."""

    t = table.drop(index="n")
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(t))
    for i, split in enumerate(("train", "test")):
        bars = ax.bar(x + (i - 0.5) * 0.38, t[split].astype(float), width=0.38,
                      label=f"{split} (n = {int(table.loc['n', split])})")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set(xticks=x, xticklabels=list(t.index), ylabel="share of toxic outputs",
           title=f"subtypes in the toxic subset (T->NT, o_pre){' · ' + scorer if scorer else ''}")
    ax.legend()
    fig.tight_layout()
    return fig


SIDES = ("pre", "post")


# =========================================================================== data

def side_labels(df: pd.DataFrame, side: str, label_column: str = "toxic", threshold: float = 0.5) -> np.ndarray:
    """y(o) in {-1, +1} of one side of the pairs: +1 = non-toxic, -1 = toxic (Alg. 1 line 6 labels).

    ``label_column="toxic"`` reads the boolean ``{side}_toxic`` (ground truth P(toxic) above the
    profile's threshold). Any other name reads ``{side}_<label_column>`` and calls an output
    "toxic" when it is boolean True or a probability above ``threshold``.
    """
    if side not in SIDES:
        raise ValueError(f"Unknown side {side!r}; use one of {SIDES}.")
    col = f"{side}_{label_column}"
    if col not in df.columns:
        have = sorted(c[len(side) + 1:] for c in df.columns if c.startswith(side + "_"))
        raise KeyError(f"No column {col!r} in the pairs; label columns available: {have}")
    v = df[col].to_numpy()
    toxic = v.astype(bool) if v.dtype == bool else np.asarray(v, dtype=float) > threshold
    return np.where(toxic, -1, 1).astype(np.int8)


def preference_data(ps: PairSet, split: str | None = "train", label_column: str = "toxic") -> PreferenceData:
    """:class:`PreferenceData` of a split (``None`` = all pairs): h+ = h(o_post), h- = h(o_pre),
    y+ / y- from :func:`side_labels` (+1 non-toxic, -1 toxic)."""
    sub = ps.split(split) if split else ps
    return PreferenceData(np.asarray(sub.emb_post, np.float32), np.asarray(sub.emb_pre, np.float32),
                          side_labels(sub.df, "post", label_column), side_labels(sub.df, "pre", label_column))


def pairset_fingerprint(ps: PairSet, label_column: str = "toxic") -> str:
    """sha256 (16 hex) of what training depends on: embeddings, split, labels and the pair ids.

    Keys the training stage; the pair artifact's own stage key (``meta["stage_key"]`` when the
    producer records it) is added beside it in the settings, so either changing retrains.
    """
    h = hashlib.sha256()
    for arr in (ps.emb_pre, ps.emb_post):
        a = np.ascontiguousarray(arr, dtype=np.float32)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    df = ps.df
    h.update(df["split"].astype(str).str.cat(sep="|").encode())
    for side in SIDES:
        h.update(side_labels(df, side, label_column).tobytes())
    if "pair_id" in df.columns:
        h.update(df["pair_id"].astype(str).str.cat(sep="|").encode())
    return h.hexdigest()[:16]


def subtype_mask(df: pd.DataFrame, subtype: str, side: str = "pre", threshold: float = 0.5) -> np.ndarray:
    """Pairs whose ``side`` output has ``subtype`` by the subtype scorer (``{side}_<subtype> > threshold``)."""
    col = f"{side}_{subtype}"
    if col not in df.columns:
        raise KeyError(f"No column {col!r} in the pairs (subtypes: obscene, threat, insult, identity_hate, ...).")
    v = df[col].to_numpy()
    return v.astype(bool) if v.dtype == bool else np.asarray(v, dtype=float) > threshold


def synthetic_pairset(n: int = 400, dim: int = 16, seed: int = 0, test_fraction: float = 0.25) -> PairSet:
    """A PairSet-shaped object from the synthetic environment (tests only, never in notebooks).

    o_post = the Bradley-Terry-preferred output, o_pre = the other; ``{side}_reward`` = the known
    ground truth; toxic = label -1; subtype probabilities are deterministic functions of the ground
    truth and one embedding coordinate, so subtype slices are non-trivial.
    """

    sp = make_synthetic(n, dim, seed, nonlinearity=0.0)
    d = sp.data
    rng = np.random.default_rng(seed)
    split = np.where(rng.random(n) < test_fraction, "test", "train")
    df = pd.DataFrame({"pair_id": np.arange(n), "prompt_id": np.arange(n), "prompt": "p", "o_pre": "a",
                       "o_post": "b", "split": split})
    for side, h, r, y in (("pre", d.h_minus, sp.r_minus, d.y_minus), ("post", d.h_plus, sp.r_plus, d.y_plus)):
        p_tox = 1.0 / (1.0 + np.exp(3.0 * r))
        df[f"{side}_p_toxic"] = p_tox
        for k, lab in enumerate(SUBTYPE_LABELS):
            df[f"{side}_{lab}"] = p_tox * (1.0 / (1.0 + np.exp(-4.0 * h[:, k % h.shape[1]])))
        df[f"{side}_toxic"] = y < 0
        df[f"{side}_judge_p"] = p_tox
        df[f"{side}_reward"] = r
    df["pair_type"] = pair_type(df["pre_toxic"], df["post_toxic"])
    return PairSet(df, np.asarray(d.h_minus, np.float32), np.asarray(d.h_plus, np.float32), {"synthetic": True})
