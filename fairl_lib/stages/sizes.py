"""Model-size study (paper Appendix E, Figure 5): FA-IRL across base LMs, mean and 95% CI over seeds.

For each base LM of ``models.size_lms`` the whole chain is repeated: RLHF expert
(``expert.expert_stage(cfg, base_lm=...)``), preference pairs (``expert.pairs_stage``), the IRL grid
(``irl_grid.grid_stage``, all Table 1 methods x ``irl.n_seeds``), and the Table 1 in-domain
evaluation (``evaluate.evaluate_grid``: test pairs, train-chosen threshold, STARC Eq. 4 against the
ground-truth reward). Every stage is cached, so the primary base LM (``models.base_lm``) reuses the
expert, pairs and grid of notebooks 01, 02 and 04.

Aggregation: per size and method, the mean over seeds and a two-sided Student-t confidence interval
``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` (``s`` the sample standard deviation, ``ddof=1``); the
paper's Figure 5 shows "95% CIs" over 5 seeds without saying how they were computed.

Choices (configurable in :class:`SizesConfig`, profile section ``[sizes]``):

- The paper's Appendix E does not say which FA-IRL variant it plots nor on which set "Accuracy" is
  measured. We report ``methods`` (default: ME FA-IRL with margin failures, the paper's headline
  self-supervised variant, and ME IRL for contrast) on the in-domain test pairs of each size.
- Budget: on 2 CPU cores a second base LM's expert and pairs cost as much as the primary's (Gemma-3
  about twice as slow per token). ``rlhf_steps`` and ``n_pairs`` shrink the stages of the
  *non-primary* sizes (0 = same as ``[rlhf]`` / ``[pairs]``); ``reduce_primary`` applies them to the
  primary too (a like-for-like comparison, at the cost of a second expert for it). When they differ,
  the sizes differ in more than size: the metrics file records each size's settings.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from safetensors import safe_open
from scipy.stats import t

from fairl_lib.analysis import evaluate, paper
from fairl_lib.analysis.evaluate import METHOD_TITLES
from fairl_lib.analysis.failure_path import failure_path_summary
from fairl_lib.analysis.pairset import count_pair_types
from fairl_lib.config import section
from fairl_lib.irl import method_spec
from fairl_lib.stages import irl_grid
from fairl_lib.stages.expert import expert_stage, load_expert
from fairl_lib.stages.pairs import pairs_stage
from fairl_lib.stages.tuning import merge_grids

PAPER_SIZES = paper.SIZES_M
FIG5_METRICS = ("accuracy", "starc")


@section("sizes")
@dataclass(frozen=True)
class SizesConfig:
    """Settings of the model-size study (profile section ``[sizes]``).

    Attributes:
        methods: IRL methods reported per size (the grid trains all Table 1 methods, so the primary
            size shares notebook 04's cached grid).
        rlhf_steps: RLHF steps of the experts of non-primary sizes (0 = ``[rlhf].steps``).
        n_pairs: preference pairs of non-primary sizes (0 = ``[pairs].n_pairs``).
        reduce_primary: apply ``rlhf_steps`` / ``n_pairs`` to the primary base LM too.
        ci_level: confidence level of the intervals over seeds (paper: 95%).
    """

    methods: tuple[str, ...] = ("me_fa_margin", "me_irl")
    rlhf_steps: int = 0
    n_pairs: int = 0
    reduce_primary: bool = False
    ci_level: float = 0.95

    def __post_init__(self) -> None:

        for m in self.methods:
            method_spec(m)  # unknown names list the valid ones
        if not 0 < self.ci_level < 1:
            raise ValueError(f"sizes.ci_level must be in (0, 1); got {self.ci_level}")
        if self.rlhf_steps < 0 or self.n_pairs < 0:
            raise ValueError("sizes.rlhf_steps and sizes.n_pairs must be >= 0 (0 = the main settings)")


def sizes_config(cfg) -> SizesConfig:
    """``cfg.sizes`` if the section is registered, else the defaults."""
    return cfg.sections.get("sizes", SizesConfig())


# --------------------------------------------------------------------------- statistics


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean and two-sided Student-t CI over seeds: ``{mean, ci_low, ci_high, std, n}``.

    ``std`` is the sample standard deviation (ddof=1). Non-finite values are dropped. With one value
    the interval is undefined (NaN bounds); with none everything is NaN.
    """

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "std": math.nan, "n": 0}
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "std": math.nan, "n": 1}
    s = float(v.std(ddof=1))
    half = float(t.ppf((1 + level) / 2, n - 1)) * s / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "std": s, "n": n}


def aggregate(per_run: pd.DataFrame, metrics: Sequence[str] = FIG5_METRICS, level: float = 0.95,
              by: Sequence[str] = ("size_lm", "method")) -> pd.DataFrame:
    """One row per group of ``by`` with ``<metric>_mean``, ``_ci_low``, ``_ci_high``, ``_std`` and ``n_seeds``."""
    rows = []
    for key, g in per_run.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for m in metrics:
            ci = mean_ci(g[m], level)
            row.update({f"{m}_mean": ci["mean"], f"{m}_ci_low": ci["ci_low"], f"{m}_ci_high": ci["ci_high"],
                        f"{m}_std": ci["std"]})
        row["n_seeds"] = int(g["seed"].nunique()) if "seed" in g else len(g)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- per-size stages


def is_primary(cfg, size_lm: str) -> bool:
    return size_lm == cfg.models.base_lm


def size_config(cfg, size_lm: str):
    """``cfg`` with ``[sizes]``'s reduced RLHF steps / pairs applied when ``size_lm`` is not the
    primary base LM (or ``reduce_primary``); the primary otherwise keeps ``cfg`` unchanged, so its
    stages are notebook 01/02/04's. Notebook 07's FORCE (stage name ``sizes``) recomputes the expert,
    pairs and grid of the other sizes only."""
    sc = sizes_config(cfg)
    if is_primary(cfg, size_lm) and not sc.reduce_primary:
        return cfg
    forced = cfg.control.forced + (("expert", "pairs", "irl_grid") if cfg.forces("sizes") else ())
    sections = dict(cfg.sections)
    if sc.rlhf_steps:
        sections["rlhf"] = dataclasses.replace(cfg.rlhf, steps=sc.rlhf_steps)
    if sc.n_pairs:
        sections["pairs"] = dataclasses.replace(cfg.pairs, n_pairs=sc.n_pairs)
    return dataclasses.replace(cfg, sections=sections, control=dataclasses.replace(cfg.control, forced=forced))


def params_millions(folder: str | Path) -> float:
    """Parameters (millions) of the model saved in ``folder`` (safetensors headers; tied weights once)."""

    total = 0
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"No *.safetensors in {folder}")
    for f in files:
        with safe_open(str(f), framework="np") as fh:
            for name in fh.keys():
                total += int(np.prod(fh.get_slice(name).get_shape()))
    return total / 1e6


@dataclass
class SizeResult:
    """One base LM's chain: its config, expert folder, pair set, grid and per-run evaluation."""

    size_lm: str
    cfg: Any
    expert_folder: Path
    n_pairs: int
    pair_types: dict[str, int]
    params_millions: float
    per_run: pd.DataFrame
    expert_tox: dict[str, float]
    failure_path: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def run_size(cfg, size_lm: str, log=print, irl_by_method: Mapping[str, Any] | None = None) -> SizeResult:
    """Expert, pairs, IRL grid and in-domain evaluation of one base LM (each cached).

    ``irl_by_method`` trains each of ``[sizes] methods`` at its own configuration (notebook 04's tuned
    ones, found on the primary model's pairs) instead of ``cfg.irl`` for all; same seeds either way."""

    scfg = size_config(cfg, size_lm)
    log(f"[sizes] {size_lm}: expert")
    folder = expert_stage(scfg, base_lm=size_lm)
    log(f"[sizes] {size_lm}: pairs")
    ps = pairs_stage(scfg, base_lm=size_lm)
    log(f"[sizes] {size_lm}: IRL grid ({len(ps)} pairs)")
    if irl_by_method:
        grids = {m: irl_grid.grid_stage(scfg, ps, publish=False, methods=[m],
                                        irl=dataclasses.replace(irl_by_method[m], n_seeds=scfg.irl.n_seeds))
                 for m in sizes_config(cfg).methods}
        grid = merge_grids(grids)
    else:
        grid = irl_grid.grid_stage(scfg, ps, publish=False)  # publishing rewards is notebook 04's job
    ev = evaluate.evaluate_grid(grid, ps)
    per_run = ev.per_run[ev.per_run["set"] == "in_domain"].copy()
    per_run.insert(0, "size_lm", size_lm)
    ex = load_expert(folder)
    h = ex.history.dropna(subset=["eval_tox_rate"]) if "eval_tox_rate" in ex.history else ex.history.iloc[:0]
    tox = {"start": float(h["eval_tox_rate"].iloc[0]) if len(h) else math.nan,
           "end": float(h["eval_tox_rate"].iloc[-1]) if len(h) else math.nan}
    return SizeResult(size_lm, scfg, folder, len(ps), count_pair_types(ps.df), params_millions(ex.policy),
                      per_run.reset_index(drop=True), tox, failure_path_summary(grid, ps, "train"))


def size_metrics(cfg, results: Mapping[str, SizeResult]) -> dict[str, Any]:
    """``metrics/07_model_size.json``: ``{size_lm: {params_millions, n_pairs, rlhf_steps, ...,
    accuracy: {mean, ci_low, ci_high, std, n}, starc: {...}, by_method: {method: {...}}, failure_path: {FA method:
    {flip_share_mean, flip_share_init_mean, acts}}}}`` (the path measured on that size's own training pairs).

    The top-level ``accuracy`` / ``starc`` of a size are those of the first method of
    ``[sizes].methods`` (ME FA-IRL margin failures by default); ``by_method`` has every reported one.
    """
    sc = sizes_config(cfg)
    out: dict[str, Any] = {}
    for lm, r in results.items():
        by_method = {}
        for m in sc.methods:
            g = r.per_run[r.per_run["method"] == m]
            by_method[m] = {k: mean_ci(g[k], sc.ci_level) for k in FIG5_METRICS}
        head = by_method[sc.methods[0]]
        out[lm] = {"params_millions": round(r.params_millions, 2), "n_pairs": r.n_pairs,
                   "pair_types": r.pair_types, "rlhf_steps": r.cfg.rlhf.steps, "primary": is_primary(cfg, lm),
                   "expert_tox_rate_start": r.expert_tox["start"], "expert_tox_rate_end": r.expert_tox["end"],
                   "method": sc.methods[0], "accuracy": head["accuracy"], "starc": head["starc"],
                   "by_method": by_method,
                   # whether each FA method's failure path acts on this size's own training pairs
                   "failure_path": {m: {k: r.failure_path[m][k] for k in ("flip_share_mean", "flip_share_init_mean",
                                                                          "acts")}
                                    for m in sc.methods if m in r.failure_path}}
    out["settings"] = {"methods": list(sc.methods), "ci_level": sc.ci_level, "ci": "Student-t over seeds",
                       "set": "in-domain test pairs", "size_lms": list(results)}
    return out


def plot_model_size(agg: pd.DataFrame, params: Mapping[str, float], methods: Sequence[str], level: float = 0.95):
    """Figure 5: mean accuracy (left) and STARC (right) per base LM with CI error bars, one line per method."""


    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    order = sorted(params, key=params.get)
    x = np.arange(len(order))
    for j, m in enumerate(methods):
        g = agg[agg["method"] == m].set_index("size_lm").reindex(order)
        for ax, met, color in ((axes[0], "accuracy", "C0"), (axes[1], "starc", "C3")):
            mean = g[f"{met}_mean"].to_numpy(float)
            lo, hi = g[f"{met}_ci_low"].to_numpy(float), g[f"{met}_ci_high"].to_numpy(float)
            err = np.vstack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)])
            ax.errorbar(x + (j - (len(methods) - 1) / 2) * 0.08, mean, yerr=err, marker="os^D"[j % 4], capsize=4,
                        color=color, alpha=1.0 if j == 0 else 0.5, ls="-" if j == 0 else "--",
                        label=METHOD_TITLES.get(m, m))
    labels = [f"{lm}\n{params[lm]:.0f}M" for lm in order]
    axes[0].set(xticks=x, xticklabels=labels, ylabel="test accuracy (higher is better)",
                title=f"Accuracy, mean and {level:.0%} CI over seeds")
    axes[1].set(xticks=x, xticklabels=labels, ylabel="STARC, Eq. 4 (lower is better)",
                title=f"STARC, mean and {level:.0%} CI over seeds")
    for ax in axes:
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def size_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (size, method): parameters, pairs, expert steps, accuracy and STARC with CIs."""
    rows = []
    for lm, m in metrics.items():
        if lm == "settings":
            continue
        for meth, vals in m["by_method"].items():
            rows.append({"size_lm": lm, "method": meth, "params_millions": m["params_millions"],
                         "n_pairs": m["n_pairs"], "rlhf_steps": m["rlhf_steps"],
                         "accuracy_mean": vals["accuracy"]["mean"], "accuracy_ci_low": vals["accuracy"]["ci_low"],
                         "accuracy_ci_high": vals["accuracy"]["ci_high"], "starc_mean": vals["starc"]["mean"],
                         "starc_ci_low": vals["starc"]["ci_low"], "starc_ci_high": vals["starc"]["ci_high"],
                         "n_seeds": vals["accuracy"]["n"]})
    return pd.DataFrame(rows).set_index(["size_lm", "method"])
