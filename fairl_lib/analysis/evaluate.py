"""Tables 1-3, Figure 3 (left), failure slices and seed dispersion from a trained grid.

Evaluation (paper Sec. 5 "Evaluation Metrics", App. C):

- Classification (Table 1): the reward scores single outputs. *In-domain*: both outputs of each
  **test** pair, label 1 = the preferred o_post, 0 = o_pre. *Held-out*: Jigsaw comments, label 1 =
  non-toxic (human label). The threshold maximises accuracy on the **training** pairs and is then
  fixed (Sec. 5). For the in-domain task the training labels are the preference labels; for Jigsaw
  (a toxic / non-toxic task) the training outputs are labelled by ground-truth toxicity
  (``{side}_toxic``), so the threshold separates toxic from non-toxic outputs; the paper does not
  say which (``jigsaw_threshold_labels="preference"`` uses the preference labels instead).
- STARC of the learned reward against the ground-truth reward on the same outputs: Eq. 4
  (:func:`fairl_lib.metrics.starc_distance`, the headline, bounded in [0, 2] and invariant to the
  arbitrary scale and offset of an IRL reward) and Eq. 10 (App. C, affine-fit MSE, reported raw
  and divided by Var(r_hat)). In-domain: both sides of the test pairs, ground truth ``{side}_reward``.
  Jigsaw: the ground-truth scorer's reward (``scorers.reward_from_scores``) of each comment.
- Table 2: ME FA-IRL (margin failures) vs ME IRL, both / only FA / only IRL / neither. On the
  *training pairs* an example is a pair and "correct" means R(o+) > R(o-) (pairwise ranking); on
  *Jigsaw* an example is a comment and "correct" means the train-threshold classification is right.
- Table 3: Table 2 per subtype (obscene, threat, insult, identity attack = ``identity_hate``). Train
  side: pairs whose o_pre has the subtype by the profile's subtype scorer (``pre_<subtype> > 0.5``);
  Jigsaw side: comments with the human subtype label.
- Figure 3 (left): train on the pairs of ONE subtype (o_pre has it), evaluate accuracy on the test
  pairs of each subtype (:func:`subtype_transfer`).
- Failure slices (Sec. 5, App. C): every metric restricted to the test pairs the same-seed baseline
  of the same family (``mm_irl`` for MM methods, ``me_irl`` for ME methods) misclassifies or nearly
  ties (``Delta <= eps``, eps = ``slice_eps`` x std of the baseline's test margins).
- Seed dispersion (Sec. 6, Corollary 1): std over seeds of each metric and the mean pairwise STARC
  between the rewards of different seeds.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import rankdata

from fairl_lib.analysis import paper
from fairl_lib.analysis.metrics import (
    choose_threshold,
    classification_metrics,
    classifier_correct,
    disagreement_counts,
    failure_slice_mask,
    mean_std,
    pair_labels,
    pairwise_accuracy,
    pairwise_starc,
    seed_std_verdict,
    starc_affine_mse,
    starc_affine_mse_normalized,
    starc_distance,
)
from fairl_lib.analysis.pairset import PAIR_TYPES, PairSet, side_labels, subtype_mask
from fairl_lib.analysis.stats import two_level_bootstrap
from fairl_lib.irl import HISTORY_KEYS, METHODS, RewardModel, baseline_of
from fairl_lib.irl.synthetic import make_env

TABLE3_SUBTYPES = ("obscene", "threat", "insult", "identity_hate")
SUBTYPE_TITLES = {"obscene": "Obscene", "threat": "Threat", "insult": "Insult", "identity_hate": "Identity attack"}
# Views of the one method registry (fairl_lib.irl.METHODS) for tables and plot legends.
METHOD_TITLES = {m: spec.title for m, spec in METHODS.items()}
BASELINE_OF = {m: baseline_of(m) for m in METHODS}
FA_METHOD, IRL_METHOD = "me_fa_margin", "me_irl"  # Tables 2-3 compare these two (Sec. 6)

# The paper's numbers (fairl_lib.analysis.paper).
PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3 = paper.TABLE1, paper.TABLE2, paper.TABLE3
TABLE1_METRICS = ("accuracy", "f1", "auc", "starc", "starc_eq10", "starc_eq10_norm")


# =========================================================================== results of a grid

@dataclass
class GridOutput:
    """What the training stage returns (also what notebook 05 reuses from the cache).

    Attributes:
        folder: the stage folder (``stages/irl_grid/<key>``).
        rewards: ``{(method, seed): RewardModel}``.
        histories: ``{(method, seed): {key: [per-epoch values]}}`` (keys: ``fairl_lib.irl.HISTORY_KEYS``).
        runs: one row per run: method, seed, epochs_run, best_epoch, best_val_loss, final_train_loss.
        info: n_train, n_val, seconds, methods, seeds, config.
    """

    folder: Path
    rewards: dict[tuple[str, int], RewardModel]
    histories: dict[tuple[str, int], dict[str, list[float]]]
    runs: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.info["methods"])

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.info["seeds"]]

    def history_frame(self) -> pd.DataFrame:
        """Long table: one row per (method, seed, epoch) with every history key."""
        rows = []
        for (m, s), hist in self.histories.items():
            frame = pd.DataFrame(hist)
            frame.insert(0, "seed", s)
            frame.insert(0, "method", m)
            rows.append(frame)
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["method", "seed", *HISTORY_KEYS])


@dataclass
class SubtypeTransfer:
    """Figure 3 (left): auc[method][train subtype, eval subtype] (mean over seeds) and the counts.

    ``n_train``: training pairs of each row; ``row_score``: their mean subtype score of o_pre (how
    much of the subtype the row's pairs carry); ``n_eval``: Jigsaw comments with each human subtype
    label (the columns); cells without comments are NaN and the figure says so.
    """

    auc: dict[str, pd.DataFrame]
    n_train: dict[str, int]
    row_score: dict[str, float]
    n_eval: dict[str, int]
    per_seed: pd.DataFrame


# =========================================================================== evaluation sets

@dataclass(frozen=True, eq=False)
class HeldOut:
    """Held-out single outputs (Jigsaw): embeddings, label 1 = non-toxic, ground-truth reward, subtypes.

    ``subtypes`` maps a subtype name to a boolean mask (human labels for Jigsaw).
    """

    emb: np.ndarray
    label: np.ndarray
    gt_reward: np.ndarray
    subtypes: dict[str, np.ndarray]
    df: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.label)


def gt_reward_kind(ps: PairSet | None) -> str:
    """The reward formula of the pairs' ``{side}_reward`` (``meta["reward_kind"]``, default ``one_minus_p``)."""
    meta = ps.meta if ps is not None else {}
    for key in ("reward_kind", "gt_reward_kind"):
        if key in meta:
            return str(meta[key])
    if isinstance(meta.get("settings"), dict) and "reward_kind" in meta["settings"]:
        return str(meta["settings"]["reward_kind"])
    return str(meta.get("ground_truth", {}).get("reward_kind", "one_minus_p")) if isinstance(meta.get("ground_truth"), dict) else "one_minus_p"


def heldout_from_frame(df: pd.DataFrame, emb: np.ndarray) -> HeldOut:
    """A :class:`HeldOut` from a Jigsaw frame (``label`` 1 = toxic as in ``data.jigsaw_heldout``)."""
    subs = {s: df[s].to_numpy().astype(int) == 1 for s in TABLE3_SUBTYPES if s in df.columns}
    return HeldOut(np.asarray(emb, np.float32), (df["label"].to_numpy() == 0).astype(int),
                   df["gt_reward"].to_numpy(float), subs, df)


# =========================================================================== per-run evaluation

@dataclass
class RunScores:
    """Rewards of one run on every evaluation set (the input of all tables)."""

    train_post: np.ndarray
    train_pre: np.ndarray
    test_post: np.ndarray
    test_pre: np.ndarray
    jigsaw: np.ndarray | None


def score_run(reward: RewardModel, train: PairSet, test: PairSet, heldout: HeldOut | None) -> RunScores:
    return RunScores(reward(train.emb_post), reward(train.emb_pre), reward(test.emb_post), reward(test.emb_pre),
                     None if heldout is None else reward(heldout.emb))


def _train_toxicity_scores(sc: RunScores, train: PairSet, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Training outputs labelled 1 = non-toxic (ground truth), for the Jigsaw threshold."""
    scores = np.concatenate([sc.train_post, sc.train_pre])
    y = np.concatenate([side_labels(train.df, "post", label_column), side_labels(train.df, "pre", label_column)])
    return scores, (y > 0).astype(int)


def in_domain_metrics(sc: RunScores, test: PairSet, mask: np.ndarray | None = None) -> dict[str, float]:
    """Table 1 in-domain: test outputs (label 1 = o_post), threshold from the training pairs,
    STARC (Eq. 4, Eq. 10) against ``{side}_reward``. ``mask`` restricts to some test pairs."""
    thr = choose_threshold(*pair_labels(sc.train_post, sc.train_pre))
    m = np.ones(len(test), bool) if mask is None else np.asarray(mask, bool)
    scores, labels = pair_labels(sc.test_post[m], sc.test_pre[m])
    gt = np.concatenate([test.df["post_reward"].to_numpy(float)[m], test.df["pre_reward"].to_numpy(float)[m]])
    return _metrics(scores, labels, thr, gt) | {"pairwise_accuracy": pairwise_accuracy(sc.test_post[m], sc.test_pre[m])}


def _metrics(scores, labels, thr, gt) -> dict[str, float]:
    if len(scores) == 0:
        return {k: float("nan") for k in TABLE1_METRICS} | {"n": 0, "threshold": thr}
    c = classification_metrics(scores, labels, thr)
    return {"accuracy": c["accuracy"], "f1": c["f1"], "auc": c["roc_auc"], "threshold": thr, "n": c["n"],
            "starc": starc_distance(scores, gt), "starc_eq10": starc_affine_mse(scores, gt),
            "starc_eq10_norm": starc_affine_mse_normalized(scores, gt)}


def jigsaw_threshold(sc: RunScores, train: PairSet, threshold_labels: str = "toxicity",
                     label_column: str = "toxic") -> float:
    """The Jigsaw classification threshold, fitted on the training pairs (see module docstring)."""
    if threshold_labels == "toxicity":
        return choose_threshold(*_train_toxicity_scores(sc, train, label_column))
    if threshold_labels == "preference":
        return choose_threshold(*pair_labels(sc.train_post, sc.train_pre))
    raise ValueError(f"Unknown threshold_labels {threshold_labels!r}; use 'toxicity' or 'preference'.")


def heldout_metrics(sc: RunScores, train: PairSet, heldout: HeldOut, threshold_labels: str = "toxicity",
                    label_column: str = "toxic") -> dict[str, float]:
    """Table 1 held-out: Jigsaw comments, label 1 = non-toxic, train-fitted threshold, STARC vs the
    ground-truth scorer's reward."""
    thr = jigsaw_threshold(sc, train, threshold_labels, label_column)
    return _metrics(sc.jigsaw, heldout.label, thr, heldout.gt_reward)


@dataclass
class Evaluation:
    """Everything notebook 05 tabulates, from one grid."""

    grid: GridOutput
    scores: dict[tuple[str, int], RunScores]
    per_run: pd.DataFrame                    # one row per (set, method, seed) with every metric
    train: PairSet
    test: PairSet
    heldout: HeldOut | None
    threshold_labels: str = "toxicity"
    label_column: str = "toxic"


def evaluate_grid(out: GridOutput, ps: PairSet, heldout: HeldOut | None = None, *,
                  threshold_labels: str = "toxicity", label_column: str = "toxic") -> Evaluation:
    """Score every run on train/test pairs (and Jigsaw) and compute the Table 1 metrics per run."""
    train, test = ps.split("train"), ps.split("test")
    scores, rows = {}, []
    order = {m: i for i, m in enumerate(out.methods)}
    for (m, s), rew in sorted(out.rewards.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])):
        sc = score_run(rew, train, test, heldout)
        scores[(m, s)] = sc
        rows.append({"set": "in_domain", "method": m, "seed": s, **in_domain_metrics(sc, test)})
        if heldout is not None:
            rows.append({"set": "jigsaw", "method": m, "seed": s,
                         **heldout_metrics(sc, train, heldout, threshold_labels, label_column)})
    return Evaluation(out, scores, pd.DataFrame(rows), train, test, heldout, threshold_labels, label_column)


def per_seed_table(ev: Evaluation, metrics: Sequence[str] = TABLE1_METRICS) -> dict[str, Any]:
    """Table 1 per seed: ``{"seeds": [...], set: {method: {metric: [one value per seed]}}}``, seeds in
    the grid's order (runs of one seed share init and minibatch order, so the report compares methods
    on same-seed differences); NaN where a metric is undefined (written as null)."""
    seeds = list(ev.grid.seeds)
    out: dict[str, Any] = {"seeds": seeds}
    for (st, m), g in ev.per_run.groupby(["set", "method"], sort=False):
        g = g.set_index("seed").reindex(seeds)
        out.setdefault(st, {})[m] = {k: [float(v) for v in g[k]] for k in metrics}
    return out


def in_domain_by_pair_type(ev: Evaluation) -> pd.DataFrame:
    """Table 1's in-domain metrics restricted to each pair type of the test pairs, per run.

    Pair types (:data:`fairl_lib.analysis.pairset.PAIR_TYPES`) by the ground truth's toxicity of
    o_pre -> o_post. Only T->NT pairs carry the preference the ground truth explains (toxic before,
    non-toxic after); in NT->NT pairs both outputs are non-toxic and "o_post is preferred" is
    close to a coin flip under the ground-truth reward, so a reward that recovers the ground truth
    still ranks them near chance. The overall in-domain accuracy and AUC are a mix weighted by how
    many pairs of each type the expert produced. Columns: method, seed, pair_type, n_pairs,
    accuracy, auc (classification of both outputs, label 1 = o_post, threshold from the training
    pairs as in Table 1), pairwise_accuracy (R(o_post) > R(o_pre)), gt_pairwise_accuracy (the same
    for the ground-truth reward: the ceiling of that type).
    """
    types = ev.test.df["pair_type"].to_numpy()
    gt_post, gt_pre = (ev.test.df[f"{s}_reward"].to_numpy(float) for s in ("post", "pre"))
    rows = []
    for (m, s), sc in ev.scores.items():
        for pt in PAIR_TYPES:
            mask = types == pt
            if not mask.any():
                continue
            met = in_domain_metrics(sc, ev.test, mask)
            rows.append({"method": m, "seed": s, "pair_type": pt, "n_pairs": int(mask.sum()),
                         "accuracy": met["accuracy"], "auc": met["auc"],
                         "pairwise_accuracy": met["pairwise_accuracy"],
                         "gt_pairwise_accuracy": pairwise_accuracy(gt_post[mask], gt_pre[mask])})
    return pd.DataFrame(rows, columns=["method", "seed", "pair_type", "n_pairs", "accuracy", "auc",
                                       "pairwise_accuracy", "gt_pairwise_accuracy"])


def pair_type_summary(by_type: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """``{pair_type: {method: {n_pairs, accuracy, auc, pairwise_accuracy, gt_pairwise_accuracy}}}``, means over seeds."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (pt, m), g in by_type.groupby(["pair_type", "method"], sort=False):
        out.setdefault(pt, {})[m] = {"n_pairs": int(g["n_pairs"].iloc[0]),
                                     **{k: float(np.nanmean(g[k])) for k in
                                        ("accuracy", "auc", "pairwise_accuracy", "gt_pairwise_accuracy")}}
    return out


@dataclass
class LearningCurve:
    """Jigsaw ROC-AUC against the number of T->NT training pairs (the other pairs kept)."""

    per_run: pd.DataFrame      # n_tnt, fraction, method, seed, jigsaw_auc
    n_other: int               # training pairs of the other types, in every point


def learning_curve_summary(lc: LearningCurve) -> dict[str, Any]:
    """``{"n_tnt": [...], "n_other": k, "methods": {method: {"mean": [...], "std": [...], "per_seed": [[...]]}}}``."""
    ns = sorted(lc.per_run["n_tnt"].unique().tolist())
    out: dict[str, Any] = {"n_tnt": [int(n) for n in ns], "n_other": lc.n_other, "methods": {}}
    for m in dict.fromkeys(lc.per_run["method"]):
        sub = lc.per_run[lc.per_run["method"] == m]
        out["methods"][m] = {
            "mean": [float(sub[sub["n_tnt"] == n]["jigsaw_auc"].mean()) for n in ns],
            "std": [float(sub[sub["n_tnt"] == n]["jigsaw_auc"].std(ddof=0)) for n in ns],
            "per_seed": [sub[sub["n_tnt"] == n].sort_values("seed")["jigsaw_auc"].astype(float).tolist() for n in ns]}
    return out


def plot_learning_curve(lc: LearningCurve, reference_auc: float | None = None):
    """Jigsaw ROC-AUC (mean over seeds, band = min..max) against the number of T->NT training pairs;
    the dashed line is the ground-truth scorer's own AUC on the same comments (the ceiling)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    for i, m in enumerate(dict.fromkeys(lc.per_run["method"])):
        g = lc.per_run[lc.per_run["method"] == m].groupby("n_tnt")["jigsaw_auc"]
        mean, lo, hi = g.mean(), g.min(), g.max()
        ax.plot(mean.index, mean.values, marker="o", ms=4, color=f"C{i}", label=METHOD_TITLES.get(m, m))
        ax.fill_between(mean.index, lo.values, hi.values, color=f"C{i}", alpha=0.12)
    if reference_auc is not None and np.isfinite(reference_auc):
        ax.axhline(reference_auc, color="k", ls="--", lw=1, label="ground-truth scorer")
    ax.set_xlabel(f"T->NT training pairs (plus {lc.n_other} pairs of the other types)")
    ax.set_ylabel("Jigsaw ROC-AUC")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def summarize(per_run: pd.DataFrame, metrics: Sequence[str] = TABLE1_METRICS,
              methods: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{set: {method: {metric: {mean, std}}}}`` over seeds (population std, as ``metrics.mean_std``)."""
    out: dict[str, Any] = {}
    for st, g in per_run.groupby("set", sort=False):
        out[st] = {}
        for m in (methods or list(dict.fromkeys(g["method"]))):
            gm = g[g["method"] == m]
            if gm.empty:
                continue
            out[st][m] = {}
            for k in metrics:
                v = gm[k].to_numpy(float)
                v = v[np.isfinite(v)]
                mean, std = mean_std(v) if len(v) else (float("nan"), float("nan"))
                out[st][m][k] = {"mean": mean, "std": std}
    return out


def table1_frame(summary: Mapping[str, Any], set_name: str, metrics: Sequence[str] = ("accuracy", "f1", "auc", "starc", "starc_eq10_norm"),
                 with_paper: bool = True) -> pd.DataFrame:
    """Table 1 as 'mean ± std' strings beside the paper's values."""
    rows = {}
    for m, vals in summary[set_name].items():
        row = {k: f"{vals[k]['mean']:.3f} ± {vals[k]['std']:.3f}" for k in metrics}
        if with_paper and m in PAPER_TABLE1:
            for k in ("f1", "auc", "starc"):
                mu, sd = PAPER_TABLE1[m][k]
                row[f"paper {k}"] = f"{mu:.3f} ± {sd:.3f}"
        rows[METHOD_TITLES.get(m, m)] = row
    df = pd.DataFrame(rows).T
    df.index.name = "method"
    return df


# =========================================================================== Tables 2-3

def correctness(ev: Evaluation, method: str, seed: int) -> dict[str, np.ndarray]:
    """Per-example correctness of one run: ``train`` (pairs ranked right), ``test`` (test pairs
    ranked right) and ``jigsaw`` (comments classified right with the train-fitted threshold)."""
    sc = ev.scores[(method, seed)]
    out = {"train": sc.train_post > sc.train_pre, "test": sc.test_post > sc.test_pre}
    if ev.heldout is not None:
        thr = jigsaw_threshold(sc, ev.train, ev.threshold_labels, ev.label_column)
        out["jigsaw"] = classifier_correct(sc.jigsaw, ev.heldout.label, thr)
    return out


def disagreement(correct_fa: np.ndarray, correct_irl: np.ndarray) -> dict[str, int]:
    """Table 2 categories: both / only_fa / only_irl / neither (they sum to N)."""
    c = disagreement_counts(correct_fa, correct_irl)
    return {"both": c["both"], "only_fa": c["only_a"], "only_irl": c["only_b"], "neither": c["neither"]}


def table2(ev: Evaluation, seed: int, fa: str = FA_METHOD, irl: str = IRL_METHOD) -> dict[str, dict[str, int]]:
    """Table 2 for one seed: ``{"train": counts, "jigsaw": counts}`` (also ``"test"`` pairs)."""
    a, b = correctness(ev, fa, seed), correctness(ev, irl, seed)
    return {k: disagreement(a[k], b[k]) for k in a}


def table3(ev: Evaluation, seed: int, fa: str = FA_METHOD, irl: str = IRL_METHOD,
           subtypes: Sequence[str] = TABLE3_SUBTYPES, threshold: float = 0.5) -> dict[str, dict[str, dict[str, int]]]:
    """Table 3 for one seed: ``{"train"|"jigsaw": {subtype: counts}}``. Train side: training pairs
    whose o_pre has the subtype (scorer probability > ``threshold``); Jigsaw side: human labels."""
    a, b = correctness(ev, fa, seed), correctness(ev, irl, seed)
    out: dict[str, dict[str, dict[str, int]]] = {"train": {}}
    for s in subtypes:
        m = subtype_mask(ev.train.df, s, "pre", threshold)
        out["train"][s] = disagreement(a["train"][m], b["train"][m])
    if ev.heldout is not None:
        out["jigsaw"] = {s: disagreement(a["jigsaw"][ev.heldout.subtypes[s]], b["jigsaw"][ev.heldout.subtypes[s]])
                         for s in subtypes}
    return out


def table2_frame(counts: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Our Table 2 beside the paper's."""
    names = {"both": "Both methods correct", "only_fa": "Only FA-IRL correct", "only_irl": "Only IRL correct",
             "neither": "Neither method correct"}
    df = pd.DataFrame({"train (ours)": counts["train"], "train (paper)": PAPER_TABLE2["train"],
                       **({"Jigsaw (ours)": counts["jigsaw"], "Jigsaw (paper)": PAPER_TABLE2["jigsaw"]} if "jigsaw" in counts else {})})
    df.index = [names[k] for k in df.index]
    df.index.name = "category"
    return df


def table3_frame(counts: Mapping[str, Mapping[str, Mapping[str, int]]]) -> pd.DataFrame:
    """Our Table 3 (both / FA-IRL only / IRL only / N) beside the paper's (both / FA only / IRL only)."""
    rows = {}
    for s in TABLE3_SUBTYPES:
        row = {}
        for side in ("train", "jigsaw"):
            if side not in counts:
                continue
            c = counts[side][s]
            p = PAPER_TABLE3[side][s]
            row.update({f"{side} both": c["both"], f"{side} FA only": c["only_fa"], f"{side} IRL only": c["only_irl"],
                        f"{side} N": sum(c.values()),
                        f"{side} paper both/FA/IRL": f"{p[0]}/{p[1]}/{p[2]}"})
        rows[SUBTYPE_TITLES[s]] = row
    df = pd.DataFrame(rows).T
    df.index.name = "toxicity type"
    return df


def subtype_accuracy_gain(counts: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Per subtype: accuracy(FA) - accuracy(IRL) in percentage points = (only_fa - only_irl) / N."""
    out = {}
    for s, c in counts.items():
        n = sum(c.values())
        out[s] = 100.0 * (c["only_fa"] - c["only_irl"]) / n if n else float("nan")
    return out


# =========================================================================== failure slices, dispersion

def failure_slices(ev: Evaluation, slice_eps: float = 0.1) -> pd.DataFrame:
    """Every in-domain metric restricted to the test pairs the same-seed baseline of the same family
    misclassifies or nearly ties: ``Delta_base <= 0`` or ``|Delta_base| <= slice_eps * std(Delta_base)``.
    One row per (method, seed); the baselines appear too (their slice accuracy is 0 by construction
    on the misclassified part)."""
    rows = []
    for (m, s), sc in sorted(ev.scores.items()):
        base = BASELINE_OF[m]
        if (base, s) not in ev.scores:
            continue
        bs = ev.scores[(base, s)]
        d = bs.test_post - bs.test_pre
        eps = slice_eps * float(np.std(d)) if len(d) else 0.0
        mask = failure_slice_mask(bs.test_post, bs.test_pre, eps)
        res = in_domain_metrics(sc, ev.test, mask)
        rows.append({"method": m, "seed": s, "baseline": base, "n_slice_pairs": int(mask.sum()),
                     "slice_share": float(mask.mean()) if len(mask) else float("nan"), **res})
    return pd.DataFrame(rows)


def seed_dispersion(ev: Evaluation, metrics: Sequence[str] = ("f1", "auc", "starc")) -> pd.DataFrame:
    """Per method: std over seeds of each Table 1 metric (both sets) and the mean pairwise STARC
    (Eq. 4) between the seeds' rewards on the in-domain test outputs and on Jigsaw (Corollary 1)."""
    rows = {}
    for m in ev.grid.methods:
        seeds = sorted(s for (mm, s) in ev.scores if mm == m)
        row: dict[str, float] = {"n_seeds": len(seeds)}
        for st, g in ev.per_run[ev.per_run["method"] == m].groupby("set", sort=False):
            for k in metrics:
                row[f"{st} std {k}"] = float(np.std(g[k].to_numpy(float)))
        test_r = np.stack([np.concatenate([ev.scores[(m, s)].test_post, ev.scores[(m, s)].test_pre]) for s in seeds])
        row["in_domain pairwise STARC"] = pairwise_starc(test_r) if len(seeds) > 1 else float("nan")
        if ev.heldout is not None:
            jr = np.stack([ev.scores[(m, s)].jigsaw for s in seeds])
            row["jigsaw pairwise STARC"] = pairwise_starc(jr) if len(seeds) > 1 else float("nan")
        rows[m] = row
    df = pd.DataFrame(rows).T
    df.index.name = "method"
    return df


def plot_subtype_transfer(st: SubtypeTransfer):
    """Heatmaps of Figure 3 (left), one per method: rows = the subtype the reward was trained on,
    columns = the Jigsaw comments with each human subtype label (ROC-AUC against the non-toxic
    comments). Tick labels carry the counts; an empty column says it has no comments."""
    methods = list(st.auc)
    vals = np.concatenate([a.to_numpy().ravel() for a in st.auc.values()])
    vmin = min(0.5, float(np.nanmin(vals))) if np.isfinite(vals).any() else 0.5
    fig, axes = plt.subplots(1, len(methods), figsize=(4.4 * len(methods) + 1.0, 4.8), squeeze=False)
    for k, (ax, m) in enumerate(zip(axes[0], methods)):
        mat = st.auc[m]
        rows = [f"{SUBTYPE_TITLES.get(s, s)}\n({st.n_train.get(s, 0)} pairs)" for s in mat.index]
        cols = [f"{SUBTYPE_TITLES.get(s, s)}\n(n={st.n_eval.get(s, 0)})".replace(" attack", "\nattack") for s in mat.columns]
        shown = pd.DataFrame(mat.to_numpy(), index=rows, columns=cols)
        sns.heatmap(shown, ax=ax, annot=True, fmt=".2f", vmin=vmin, vmax=1.0, cmap="viridis",
                    cbar=k == len(methods) - 1, mask=shown.isna(), annot_kws={"fontsize": 8},
                    cbar_kws={"label": "ROC-AUC (non-toxic vs labelled)"} if k == len(methods) - 1 else None)
        for j, s in enumerate(mat.columns):
            if st.n_eval.get(s, 0) == 0:
                ax.text(j + 0.5, len(rows) / 2, "no comments\nwith this label", ha="center", va="center",
                        rotation=90, fontsize=7, color="0.4")
        ax.set_title(METHOD_TITLES.get(m, m), fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("trained on the pairs of" if k == 0 else "")
        ax.tick_params(axis="x", labelrotation=0, labelsize=8)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
    fig.supxlabel("evaluated on the Jigsaw comments with the human label", fontsize=10)
    fig.tight_layout()
    return fig


# =========================================================================== notebook-04 plots

def plot_training_curves(out: GridOutput):
    """Train and validation loss per method (mean over seeds, band = min..max)."""

    h = out.history_frame()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for key, ax in zip(("train_loss", "val_loss"), axes):
        for m in out.methods:
            g = h[h["method"] == m].groupby("epoch")[key]
            mean, lo, hi = g.mean(), g.min(), g.max()
            ax.plot(mean.index, mean.values, label=METHOD_TITLES.get(m, m))
            ax.fill_between(mean.index, lo.values, hi.values, alpha=0.15)
        ax.set_xlabel("epoch (= round t)")
        ax.set_ylabel({"train_loss": "training objective L_t (Eq. 3)", "val_loss": "validation L_base"}[key])
        ax.set_yscale("log")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_schedules(out: GridOutput):
    """lambda_t, the margin-rule schedule (bottom-k fraction or gamma_t) and |F_t| / N per FA method."""

    h = out.history_frame()
    cfg = out.info.get("config") or {}
    rule = (out.rewards[next(iter(out.rewards))].meta.get("config") or {}).get("margin_rule", cfg.get("margin_rule", "bottomk"))
    fa = [m for m in out.methods if "_fa_" in m]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    first = h[h["method"] == fa[0]] if fa else h
    sched = first.groupby("epoch")[["lambda_t", "bottomk_frac", "gamma_t", "p_t"]].mean()
    axes[0].plot(sched.index, sched["lambda_t"])
    axes[0].set_title(r"failure weight $\lambda_t$")
    key = "bottomk_frac" if rule == "bottomk" else "gamma_t"
    axes[1].plot(sched.index, sched[key], label=key)
    axes[1].plot(sched.index, sched["p_t"], ls="--", label="sampling rate p_t")
    axes[1].set_title("bottom-k fraction (margin failures)" if rule == "bottomk" else r"$\gamma_t$")
    axes[1].legend(fontsize=8)
    for m in fa:
        g = h[h["method"] == m].groupby("epoch")["fail_frac"].mean()
        axes[2].plot(g.index, g.values, label=METHOD_TITLES.get(m, m))
    axes[2].set_title(r"failure-set size $|F_t|$ / N (mean over seeds)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch (= round t)")
    fig.tight_layout()
    return fig


# =========================================================================== prose from numbers

def compare_sentences(summary: Mapping[str, Any], set_name: str, paper: Mapping[str, Any] = PAPER_TABLE1) -> list[str]:
    """Plain sentences comparing our Table 1 with the paper's claims, computed from the numbers."""
    s = summary.get(set_name, {})
    if not s:
        return [f"No {set_name} results."]
    out = []
    mean = {m: {k: v["mean"] for k, v in d.items()} for m, d in s.items()}
    for fam in ("mm", "me"):
        base = f"{fam}_irl"
        if base not in mean:
            continue
        for fa in (f"{fam}_fa_gt", f"{fam}_fa_margin"):
            if fa not in mean:
                continue
            parts = []
            for k, better in (("f1", 1), ("auc", 1), ("starc", -1)):
                d = mean[fa][k] - mean[base][k]
                sd = max(s[fa][k]["std"], s[base][k]["std"])
                verdict = seed_std_verdict(d, sd, better)
                verdict += " (no clear difference)" if verdict == "within one seed-std" else ""
                pd_ = paper[fa][k][0] - paper[base][k][0] if fa in paper and base in paper else float("nan")
                pverdict = "better" if pd_ * better > 0 else "worse"
                parts.append(f"{k.upper()} {mean[fa][k]:.3f} vs {mean[base][k]:.3f} ({verdict}; paper: {pverdict}, "
                             f"{paper[fa][k][0]:.3f} vs {paper[base][k][0]:.3f})")
            out.append(f"{METHOD_TITLES[fa]} vs {METHOD_TITLES[base]} on {set_name}: " + "; ".join(parts) + ".")
    best_starc = min(mean, key=lambda m: mean[m]["starc"])
    best_f1 = max(mean, key=lambda m: mean[m]["f1"])
    out.append(f"Lowest STARC on {set_name}: {METHOD_TITLES.get(best_starc, best_starc)} ({mean[best_starc]['starc']:.3f}); "
               f"highest F1: {METHOD_TITLES.get(best_f1, best_f1)} ({mean[best_f1]['f1']:.3f}). "
               f"The paper's text claims the self-supervised (margin) variant has the lowest STARC and ME FA-IRL (margin) "
               f"the highest F1; its Table 1 gives the margin variants the highest STARC "
               f"({paper['mm_fa_margin']['starc'][0]:.3f}, {paper['me_fa_margin']['starc'][0]:.3f}).")
    return out


def table2_sentence(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Sentences on Table 2 (FA-only vs IRL-only asymmetry), ours beside the paper's."""
    out = []
    for side in counts:
        if side not in PAPER_TABLE2:
            continue
        c, p = counts[side], PAPER_TABLE2[side]
        n = sum(c.values())
        ratio = c["only_fa"] / c["only_irl"] if c["only_irl"] else float("nan")
        pr = p["only_fa"] / p["only_irl"]
        gain = 100.0 * (c["only_fa"] - c["only_irl"]) / n if n else float("nan")
        pgain = 100.0 * (p["only_fa"] - p["only_irl"]) / sum(p.values())
        direction = "FA-IRL is uniquely right more often" if c["only_fa"] > c["only_irl"] else (
            "standard IRL is uniquely right more often" if c["only_fa"] < c["only_irl"] else "neither is uniquely right more often")
        out.append(f"{side}: {direction} ({c['only_fa']} vs {c['only_irl']} of N={n}, ratio {ratio:.2f}, net "
                   f"{gain:+.1f} pp accuracy); paper: {p['only_fa']} vs {p['only_irl']} (ratio {pr:.2f}, net {pgain:+.1f} pp).")
    return out


def synthetic_heldout(ps_seed: int, n: int = 200, dim: int = 16) -> HeldOut:
    """Held-out single outputs of the same synthetic environment (tests only)."""

    env = make_env(dim, ps_seed, nonlinearity=0.0)
    h, r, y = env.sample_outputs(n, ps_seed)
    subs = {s: (np.abs(h[:, k]) > np.quantile(np.abs(h[:, k]), 0.7)) & (y < 0) for k, s in enumerate(TABLE3_SUBTYPES)}
    return HeldOut(h, (y > 0).astype(int), r, subs)


def to_plain(obj: Any) -> Any:
    """Dataclasses / frames -> JSON-ready structures (for write_metrics)."""
    if isinstance(obj, pd.DataFrame):
        return json.loads(obj.to_json(orient="index"))
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return obj


def failure_path_share(out: GridOutput, ps: PairSet, split: str = "train") -> pd.DataFrame:
    """How much the failure path R_F changes the reward, per FA run, on the outputs of ``split``:
    std(R_F) / std(R_D), and the share of pairs whose ranking R_F flips (sign of Delta_D vs
    Delta_D + Delta_F). Eq. 3's penalty lambda_t/2 ||w_F||^2 pulls w_F to 0, so a small share means
    the FA reward is almost its base path (and FA-IRL ~ IRL for that run)."""
    sub = ps.split(split) if split else ps
    rows = []
    for (m, s), rew in sorted(out.rewards.items()):
        if rew.failure is None:
            continue
        dp, fp = rew.components(sub.emb_post)
        dm, fm = rew.components(sub.emb_pre)
        d_d, d_f = dp - dm, fp - fm
        rows.append({"method": m, "seed": s,
                     "std_R_D": float(np.std(np.r_[dp, dm])), "std_R_F": float(np.std(np.r_[fp, fm])),
                     "ratio_std_F_over_D": float(np.std(np.r_[fp, fm]) / max(np.std(np.r_[dp, dm]), 1e-12)),
                     "pairs_flipped_by_R_F": float(np.mean(np.sign(d_d) != np.sign(d_d + d_f))) if len(d_d) else float("nan")})
    return pd.DataFrame(rows)


# =========================================================================== the ledger's comparisons
# One comparison per claim, fixed before the test set is read: the FA method notebooks 06-08 use (the best
# *acting* FA configuration by validation AUC on the tuning split, ``tuning.best_fa_config``) against the
# baseline of its own loss family. Intervals come from a bootstrap over seeds and the evaluation data
# together (``stats.two_level_bootstrap``): test pairs resampled by prompt, Jigsaw comments one by one.


def _auc_fast(s: np.ndarray, y: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney rank formula (ties averaged): the value of sklearn's ``roc_auc_score``."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _f1_fast(s: np.ndarray, y: np.ndarray, thr: float) -> float:
    """F1 of ``s > thr`` for the positive class 1 (0 when nothing is predicted or present, as sklearn's
    ``zero_division=0``)."""
    pred = s > thr
    tp = int(np.sum(pred & (y == 1)))
    den = int(pred.sum()) + int(y.sum())
    return 2 * tp / den if den else 0.0


def set_metric(metric: str, s: np.ndarray, y: np.ndarray, thr: float, gt: np.ndarray) -> float:
    """One Table 1 metric (``auc``, ``f1``, ``accuracy``, ``starc``) of scores ``s`` against labels ``y``
    (threshold ``thr``) and the ground-truth reward ``gt`` of the same outputs (equal to
    :func:`_metrics`'s; fast enough to bootstrap)."""
    if metric == "auc":
        return _auc_fast(s, y)
    if metric == "f1":
        return _f1_fast(s, y, thr)
    if metric == "accuracy":
        return float(np.mean((s > thr) == (y == 1))) if len(y) else float("nan")
    if metric == "starc":
        return starc_distance(s, gt) if len(s) else float("nan")
    raise ValueError(f"Unknown metric {metric!r}; use auc, f1, accuracy or starc.")


def _set_rows(ev: Evaluation, set_name: str, method: str, seed: int):
    """``(rows -> (scores, labels, gt), threshold)`` of one run on ``in_domain`` (rows = test pairs, both
    outputs) or ``jigsaw`` (rows = comments)."""
    sc = ev.scores[(method, seed)]
    if set_name == "in_domain":
        thr = choose_threshold(*pair_labels(sc.train_post, sc.train_pre))
        gpost, gpre = ev.test.df["post_reward"].to_numpy(float), ev.test.df["pre_reward"].to_numpy(float)

        def rows(idx):
            k = len(idx)
            return (np.concatenate([sc.test_post[idx], sc.test_pre[idx]]),
                    np.concatenate([np.ones(k, int), np.zeros(k, int)]),
                    np.concatenate([gpost[idx], gpre[idx]]))
        return rows, thr
    if set_name == "jigsaw":
        thr = jigsaw_threshold(sc, ev.train, ev.threshold_labels, ev.label_column)
        return (lambda idx: (sc.jigsaw[idx], ev.heldout.label[idx], ev.heldout.gt_reward[idx])), thr
    raise ValueError(f"Unknown set {set_name!r}; use in_domain or jigsaw.")


def set_clusters(ev: Evaluation, set_name: str) -> np.ndarray:
    """The bootstrap's clusters of a set: test pairs by prompt (pairs of one prompt share it), Jigsaw by comment."""
    return ev.test.df["prompt_id"].to_numpy() if set_name == "in_domain" else np.arange(len(ev.heldout))


def compare_methods(ev: Evaluation, fa: str, base: str, set_name: str, metric: str, *, reps: int,
                    seed: int = 0) -> dict[str, Any]:
    """``fa`` - ``base`` on one metric and set, mean over the grid's seeds, with a two-level bootstrap
    (seeds x clusters, :func:`fairl_lib.analysis.stats.two_level_bootstrap`): ``{"value", "ci95", "ci90",
    "mde", "n_seeds", "n_clusters", "reps", "per_seed", "identical", "covers"}``. ``identical``: the two
    methods' scores are the same numbers on every run (then no interval is formed)."""
    seeds = list(ev.grid.seeds)
    runs = {(m, s): _set_rows(ev, set_name, m, s) for m in (fa, base) for s in seeds}
    identical = all(np.array_equal(ev.scores[(fa, s)].test_post, ev.scores[(base, s)].test_post)
                    and np.array_equal(ev.scores[(fa, s)].test_pre, ev.scores[(base, s)].test_pre) for s in seeds)

    def value(m: str, s: int, idx: np.ndarray) -> float:
        rows, thr = runs[(m, s)]
        sc, y, gt = rows(idx)
        return set_metric(metric, sc, y, thr, gt)

    def statistic(seed_idx: np.ndarray, idx: np.ndarray) -> float:
        return float(np.mean([value(fa, seeds[i], idx) - value(base, seeds[i], idx) for i in seed_idx]))

    clusters = set_clusters(ev, set_name)
    every = np.arange(len(clusters))
    per_seed = [value(fa, s, every) - value(base, s, every) for s in seeds]
    e95, e90 = two_level_bootstrap(statistic, len(seeds), clusters, reps=reps, seed=seed)
    return {"value": e95.value, "ci95": None if e95.lo is None else [e95.lo, e95.hi],
            "ci90": None if e90.lo is None else [e90.lo, e90.hi], "mde": e95.mde, "n_seeds": len(seeds),
            "n_clusters": len(np.unique(clusters)), "reps": reps, "per_seed": per_seed,
            "identical": bool(identical),
            "covers": f"training seeds and the draw of the {'test prompts' if set_name == 'in_domain' else 'Jigsaw comments'}"}


def failure_slice_control(ev: Evaluation, fa: str, base: str, *, reps: int, seed: int = 0,
                          slice_eps: float = 0.1) -> dict[str, Any]:
    """Sec. 6's "improvements concentrate on failure slices", with a control. For each seed ``s`` of the grid,
    the slice is the in-domain test pairs the baseline of seed ``s`` misranks or nearly ties
    (:func:`fairl_lib.analysis.metrics.failure_slice_mask`, eps = ``slice_eps`` x std of its margins). On that
    slice, the FA method of seed ``s`` ranks some pairs right; so does *any* second reward, even the baseline
    itself from another seed, because a slice chosen by one run's errors holds pairs that are partly that run's
    noise (regression to the mean). The control is the baseline of seed ``s + 1`` (cyclically) on the same slice.

    Returns ``{"fa", "control", "difference"}``, each a pairwise accuracy on the slices (mean over seeds; the
    difference with a two-level bootstrap over seeds and test prompts, like :func:`compare_methods`), plus
    ``n_slice_pairs`` (mean), ``per_seed`` differences and ``covers``."""
    seeds = list(ev.grid.seeds)
    if len(seeds) < 2:
        raise ValueError("failure_slice_control needs at least 2 seeds of the baseline (one is the control)")
    margin = {(m, s): ev.scores[(m, s)].test_post - ev.scores[(m, s)].test_pre for m in (fa, base) for s in seeds}
    masks = []
    for s in seeds:
        d = margin[(base, s)]
        masks.append(failure_slice_mask(ev.scores[(base, s)].test_post, ev.scores[(base, s)].test_pre,
                                          slice_eps * float(np.std(d)) if len(d) else 0.0))
    right_fa = np.stack([margin[(fa, s)] > 0 for s in seeds])
    right_ctrl = np.stack([margin[(base, seeds[(i + 1) % len(seeds)])] > 0 for i in range(len(seeds))])
    masks = np.stack(masks)

    def accuracy(right: np.ndarray, si: np.ndarray, idx: np.ndarray) -> float:
        m = masks[si][:, idx]
        return float(right[si][:, idx][m].mean()) if m.any() else float("nan")

    def statistic(si: np.ndarray, idx: np.ndarray) -> float:
        return accuracy(right_fa, si, idx) - accuracy(right_ctrl, si, idx)

    every, all_seeds = np.arange(masks.shape[1]), np.arange(len(seeds))
    e95, e90 = two_level_bootstrap(statistic, len(seeds), set_clusters(ev, "in_domain"), reps=reps, seed=seed)
    return {"fa": accuracy(right_fa, all_seeds, every), "control": accuracy(right_ctrl, all_seeds, every),
            "difference": {"value": e95.value, "ci95": None if e95.lo is None else [e95.lo, e95.hi],
                           "ci90": None if e90.lo is None else [e90.lo, e90.hi], "mde": e95.mde},
            "per_seed": [accuracy(right_fa, np.array([i]), every) - accuracy(right_ctrl, np.array([i]), every)
                         for i in all_seeds],
            "n_slice_pairs": float(masks.sum(axis=1).mean()), "n_seeds": len(seeds), "slice_eps": slice_eps,
            "control_method": f"{base}, next seed",
            "covers": "training seeds and the draw of the test prompts (bootstrap over both)"}


def pooled_disagreement(ev: Evaluation, fa: str, base: str, *, reps: int, seed: int = 0,
                        subtypes: Sequence[str] = TABLE3_SUBTYPES) -> dict[str, Any]:
    """Tables 2-3 on the held-out Jigsaw comments, pooled over every seed of the grid: per comment and seed,
    is each method's classification right (its run's train-fitted threshold, :func:`correctness`)?

    Table 2: counts both / only FA / only IRL / neither summed over seeds, and the share only FA /
    (only FA + only IRL) with a two-level bootstrap interval (seeds x comments; counts of one comment over
    seeds are not independent, so no binomial interval). Table 3, the paper's quantity per subtype:
    (both + only FA) / (both + only IRL) - 1, the relative increase in comments classified right
    (it reproduces the paper's "8.1 +- 1.6%" from its own table), with the same bootstrap.
    """
    seeds = list(ev.grid.seeds)
    a = np.stack([correctness(ev, fa, s)["jigsaw"] for s in seeds]).astype(bool)
    b = np.stack([correctness(ev, base, s)["jigsaw"] for s in seeds]).astype(bool)

    def counts(mask: np.ndarray | None = None) -> dict[str, int]:
        x, y = (a, b) if mask is None else (a[:, mask], b[:, mask])
        return {"both": int((x & y).sum()), "only_fa": int((x & ~y).sum()), "only_irl": int((~x & y).sum()),
                "neither": int((~x & ~y).sum())}

    def share(si: np.ndarray, idx: np.ndarray) -> float:
        x, y = a[si][:, idx], b[si][:, idx]
        fa_only, irl_only = (x & ~y).sum(), (~x & y).sum()
        return float(fa_only / (fa_only + irl_only)) if fa_only + irl_only else float("nan")

    def relative(cols: np.ndarray):
        def stat(si: np.ndarray, idx: np.ndarray) -> float:
            x, y = a[si][:, cols[idx]], b[si][:, cols[idx]]
            return float(x.sum() / y.sum() - 1) if y.sum() else float("nan")
        return stat

    c = counts()
    e95, e90 = two_level_bootstrap(share, len(seeds), np.arange(a.shape[1]), reps=reps, seed=seed)
    out: dict[str, Any] = {"counts": c, "n_seeds": len(seeds), "n_comments": int(a.shape[1]), "reps": reps,
                           "share": {"value": e95.value, "ci95": None if e95.lo is None else [e95.lo, e95.hi],
                                     "ci90": None if e90.lo is None else [e90.lo, e90.hi], "mde": e95.mde},
                           "subtypes": {}}
    for s in subtypes:
        cols = np.flatnonzero(ev.heldout.subtypes[s])
        sc = counts(ev.heldout.subtypes[s])
        if len(cols) == 0:
            out["subtypes"][s] = {"counts": sc, "n_comments": 0, "relative_increase": None}
            continue
        r95, r90 = two_level_bootstrap(relative(cols), len(seeds), np.arange(len(cols)), reps=reps, seed=seed)
        out["subtypes"][s] = {"counts": sc, "n_comments": len(cols),
                              "relative_increase": {"value": r95.value,
                                                    "ci95": None if r95.lo is None else [r95.lo, r95.hi],
                                                    "ci90": None if r90.lo is None else [r90.lo, r90.hi],
                                                    "mde": r95.mde}}
    return out
