"""Sensitivity of FA-IRL to the weight of Eq. 3's failure-path penalty (our analysis, not the paper's).

Eq. 3 trains the dual-path reward R = R_D + R_F with

    L_t = L_base + lambda_t L_fail(S_t) + lambda_t / 2 ||w_F||^2,

so the L2 penalty on the failure head shares lambda_t (lambda_0 = 10, decaying) with the failure loss.
As printed, the penalty can hold R_F near zero and FA-IRL then equals its baseline. We scale the
penalty term by ``c`` (:attr:`fairl_lib.irl.IRLConfig.penalty_scale`: ``c lambda_t / 2
||w_F||^2``; ``c = 1`` is Eq. 3 as printed, ``c = 0`` drops the penalty) and, for each ``c`` in the
profile's ``[penalty_sweep] scales``:

- **trains** all Table 1 methods x ``irl.n_seeds`` seeds with notebook 04's cached grid stage
  (:func:`fairl_lib.stages.irl_grid.grid_stage`, ``irl = cfg.irl`` with ``penalty_scale = c``). The ``c``
  equal to ``cfg.irl.penalty_scale`` has exactly notebook 04's settings, so it is notebook 04's grid,
  read from its cache (never retrained here, even with ``FORCE``); the other scales are cached
  stages of their own (``FORCE`` retrains them). No reward of the sweep is published to
  ``results/<profile>/rewards/`` (those stay notebook 04's).
- **evaluates** every run with the functions behind Table 1 (:func:`fairl_lib.analysis.evaluate.evaluate_grid`:
  in-domain and Jigsaw F1, AUC and Eq. 4 STARC), the training STARC of Appendix D
  (:func:`fairl_lib.stages.pairmix.training_starc`, both outputs of every training pair) and the failure
  path's weight (:func:`fairl_lib.analysis.evaluate.failure_path_share` on the training outputs:
  std(R_F) / std(R_D) and the share of training pairs whose ranking R_F flips). The baselines have
  no failure path (R_F = 0), so their share and flips are exactly 0. Evaluation reads the cached
  rewards and takes seconds, so it is recomputed rather than cached.
- **summarises** mean and std over seeds (population std, as Table 1) per scale and method, and
  states what the numbers say in sentences (:func:`findings`), computed, never written by hand.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fairl_lib.analysis.evaluate import BASELINE_OF, METHOD_TITLES, evaluate_grid, failure_path_share
from fairl_lib.analysis.metrics import mean_std, seed_std_verdict
from fairl_lib.analysis.pairset import PairSet
from fairl_lib.config import section
from fairl_lib.irl import METHOD_NAMES, IRLConfig
from fairl_lib.stages.irl_grid import grid_stage
from fairl_lib.stages.pairmix import training_starc

PAPER_SCALE = 1.0  # Eq. 3 as printed
TABLE1_SETS = ("in_domain", "jigsaw")
TABLE1_KEYS = ("f1", "auc", "starc")
SHARE_KEYS = ("ratio_std_F_over_D", "pairs_flipped_by_R_F")
SWEEP_METRICS = tuple(f"{s}_{k}" for s in TABLE1_SETS for k in TABLE1_KEYS) + ("train_starc",) + SHARE_KEYS
# metric -> (label, direction: +1 higher is better, -1 lower is better, 0 not a quality)
METRIC_INFO: dict[str, tuple[str, int]] = {
    "in_domain_f1": ("in-domain F1", 1), "in_domain_auc": ("in-domain AUC", 1),
    "in_domain_starc": ("in-domain STARC", -1), "jigsaw_f1": ("Jigsaw F1", 1), "jigsaw_auc": ("Jigsaw AUC", 1),
    "jigsaw_starc": ("Jigsaw STARC", -1), "train_starc": ("training STARC", -1),
    "ratio_std_F_over_D": ("std R_F / std R_D", 0), "pairs_flipped_by_R_F": ("pairs flipped by R_F", 0),
}


@section("penalty_sweep")
@dataclass(frozen=True)
class PenaltySweepConfig:
    """The penalty-scale sensitivity analysis of notebook 05 (not in the paper).

    Attributes:
        scales: values of ``c`` in ``c lambda_t / 2 ||w_F||^2`` (Eq. 3 as printed: ``c = 1``; ``c = 0``:
            no penalty). Each one trains the whole Table 1 grid once (cached); the one equal to
            ``irl.penalty_scale`` reuses notebook 04's grid.
    """

    scales: tuple[float, ...] = (1.0, 0.1, 0.01, 0.0)

    def __post_init__(self) -> None:
        s = [float(v) for v in self.scales]
        object.__setattr__(self, "scales", tuple(s))  # TOML integers (1, 0) -> floats
        if not s:
            raise ValueError("penalty_sweep.scales is empty; give at least one scale, e.g. [1.0, 0.01].")
        bad = [v for v in s if not math.isfinite(v) or v < 0]
        if bad:
            raise ValueError(f"penalty_sweep.scales must be finite and >= 0; got {bad}.")
        if len(set(s)) != len(s):
            raise ValueError(f"penalty_sweep.scales has duplicates: {list(self.scales)}.")


def sweep_config(cfg) -> PenaltySweepConfig:
    """``cfg.penalty_sweep`` (the dataclass default when a config has no such section)."""
    return cfg.sections.get("penalty_sweep", PenaltySweepConfig())


def scale_key(scale: float) -> str:
    """The JSON key of a scale (``1.0`` -> ``"1"``, ``0.01`` -> ``"0.01"``)."""
    return f"{float(scale):g}"


def with_penalty_scale(irl: IRLConfig, scale: float) -> IRLConfig:
    """``irl`` with ``penalty_scale = scale``: the weight ``c`` of Eq. 3's ``lambda_t / 2 ||w_F||^2``."""
    return dataclasses.replace(irl, penalty_scale=float(scale))


# =========================================================================== training


def sweep_grids(cfg, ps: PairSet, scales: Sequence[float] | None = None, *, methods: Sequence[str] = METHOD_NAMES,
                label_column: str = "toxic"):
    """One trained grid (:class:`fairl_lib.stages.irl_grid.GridOutput`) per scale, ``{scale: grid}``.

    Each is :func:`fairl_lib.stages.irl_grid.grid_stage` with ``penalty_scale = scale`` (Eq. 3's penalty
    times ``scale``), unpublished. The scale equal to ``cfg.irl.penalty_scale`` has notebook 04's
    settings, so it reads notebook 04's cached grid, and ``FORCE`` does not retrain it here.
    """

    scales = sweep_config(cfg).scales if scales is None else scales
    out = {}
    for s in scales:
        irl = with_penalty_scale(cfg.irl, s)
        stage = "irl_grid" if irl == cfg.irl else "penalty_sweep"  # notebook 04 owns its own grid
        out[float(s)] = grid_stage(cfg, ps, label_column=label_column, methods=methods, publish=False, irl=irl,
                                   stage=stage)
    return out


# =========================================================================== evaluation


def run_metrics(grid, ps: PairSet, heldout=None, *, threshold_labels: str = "toxicity",
                label_column: str = "toxic") -> pd.DataFrame:
    """One row per (method, seed) of one grid: the Table 1 metrics (``{set}_{f1,auc,starc}``, from
    :func:`fairl_lib.analysis.evaluate.evaluate_grid`), ``train_starc`` (Eq. 4 on the training outputs,
    :func:`fairl_lib.stages.pairmix.training_starc`) and the failure path's ``ratio_std_F_over_D`` and
    ``pairs_flipped_by_R_F`` on the training outputs (:func:`fairl_lib.analysis.evaluate.failure_path_share`;
    0 for the baselines, whose R_F is 0). Jigsaw columns are NaN without ``heldout``."""

    ev = evaluate_grid(grid, ps, heldout, threshold_labels=threshold_labels, label_column=label_column)
    table1 = ev.per_run.set_index(["set", "method", "seed"])
    fs = failure_path_share(grid, ps, "train")
    share = fs.set_index(["method", "seed"]) if len(fs) else pd.DataFrame(columns=list(SHARE_KEYS))
    rows = []
    for m, s in ev.scores:  # evaluate_grid's order: methods as trained, then seeds
        row: dict[str, Any] = {"method": m, "seed": int(s)}
        for st in TABLE1_SETS:
            for k in TABLE1_KEYS:
                row[f"{st}_{k}"] = float(table1.loc[(st, m, s), k]) if (st, m, s) in table1.index else math.nan
        row["train_starc"] = training_starc(grid.rewards[(m, s)], ev.train)
        for k in SHARE_KEYS:
            row[k] = float(share.loc[(m, s), k]) if (m, s) in share.index else 0.0
        rows.append(row)
    return pd.DataFrame(rows, columns=["method", "seed", *SWEEP_METRICS])


def summarize_sweep(per_run: pd.DataFrame, metrics: Sequence[str] = SWEEP_METRICS) -> pd.DataFrame:
    """Tidy summary: one row per (scale, method, metric) with mean, std (population, as Table 1) and
    the number of seeds with a finite value; scales and methods keep the order of ``per_run``."""
    rows = []
    for (scale, method), g in per_run.groupby(["scale", "method"], sort=False):
        for k in metrics:
            v = g[k].to_numpy(float)
            v = v[np.isfinite(v)]
            mean, std = mean_std(v) if len(v) else (math.nan, math.nan)
            rows.append({"scale": float(scale), "method": method, "metric": k, "mean": mean, "std": std,
                         "n_seeds": len(v)})
    return pd.DataFrame(rows, columns=["scale", "method", "metric", "mean", "std", "n_seeds"])


@dataclass
class PenaltySweep:
    """The sweep: per-run metrics (column ``scale`` added), their summary and where each grid lives.

    ``main_scale`` is ``cfg.irl.penalty_scale``: its grid is notebook 04's (``folders`` shows the same
    stage folder)."""

    scales: list[float]
    main_scale: float
    methods: list[str]
    seeds: list[int]
    per_run: pd.DataFrame
    summary: pd.DataFrame
    folders: dict[float, str] = field(default_factory=dict)


def sweep_stage(cfg, ps: PairSet, heldout=None, *, scales: Sequence[float] | None = None,
                methods: Sequence[str] = METHOD_NAMES, threshold_labels: str = "toxicity",
                label_column: str = "toxic") -> PenaltySweep:
    """Notebook 05's penalty-scale sweep: :func:`sweep_grids` (cached training, ``cfg.irl`` with
    ``penalty_scale = c`` per ``c``) then :func:`run_metrics` per scale and :func:`summarize_sweep`."""
    scales = [float(s) for s in (sweep_config(cfg).scales if scales is None else scales)]
    grids = sweep_grids(cfg, ps, scales, methods=methods, label_column=label_column)
    frames = []
    for s, grid in grids.items():
        df = run_metrics(grid, ps, heldout, threshold_labels=threshold_labels, label_column=label_column)
        df.insert(0, "scale", s)
        frames.append(df)
    per_run = pd.concat(frames, ignore_index=True)
    seeds = sorted({int(s) for s in per_run["seed"]})
    return PenaltySweep(scales, float(cfg.irl.penalty_scale), list(methods), seeds, per_run,
                        summarize_sweep(per_run), {s: str(g.folder) for s, g in grids.items()})


# =========================================================================== tables, metrics, figure


def _lookup(summary: pd.DataFrame) -> dict[tuple[float, str, str], tuple[float, float]]:
    return {(float(r.scale), r.method, r.metric): (float(r.mean), float(r.std)) for r in summary.itertuples()}


def _fmt(metric: str, mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    f = ".3g" if metric == "ratio_std_F_over_D" else ".3f"
    return f"{mean:{f}} ± {std:{f}}"


def sweep_table(summary: pd.DataFrame, metrics: Sequence[str] = SWEEP_METRICS,
                titles: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The sweep as 'mean ± std' strings: rows (penalty scale c, method), one column per metric."""
    if titles is None:
        titles = METHOD_TITLES
    val = _lookup(summary)
    keys = list(dict.fromkeys(zip(summary["scale"].astype(float), summary["method"])))
    rows = {(scale_key(s), titles.get(m, m)): {METRIC_INFO[k][0]: _fmt(k, *val[(s, m, k)]) for k in metrics
                                                if (s, m, k) in val} for s, m in keys}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["penalty scale c", "method"])
    return df


def sweep_metrics(sw: PenaltySweep) -> dict[str, Any]:
    """The ``penalty_sweep`` entry of ``metrics/05_tables.json``: scales, which one is notebook 04's
    grid, and ``by_scale[c][method][metric] = {mean, std}`` (metrics: :data:`SWEEP_METRICS`)."""
    by_scale: dict[str, Any] = {}
    for r in sw.summary.itertuples():
        by_scale.setdefault(scale_key(r.scale), {}).setdefault(r.method, {})[r.metric] = {"mean": r.mean, "std": r.std}
    return {"scales": sw.scales, "paper_scale": PAPER_SCALE, "main_scale": sw.main_scale,
            "main_scale_is_notebook04_grid": sw.main_scale in sw.scales, "methods": sw.methods,
            "n_seeds": len(sw.seeds), "std": "population std over seeds",
            "share_and_flips": "training outputs; 0 for the baselines (no failure path)", "by_scale": by_scale}


def scale_positions(scales: Sequence[float]) -> dict[float, float]:
    """x position of each scale on a log axis: ``log10(c)`` for ``c > 0``; ``c = 0`` one decade beyond
    the smallest positive scale (drawn apart from the others), or 0 when it is the only scale."""
    pos = sorted(float(s) for s in scales if s > 0)
    out = {s: math.log10(s) for s in pos}
    if any(float(s) == 0.0 for s in scales):
        out[0.0] = math.log10(pos[0]) - 1.0 if pos else 0.0
    return out


def plot_sweep(sw: PenaltySweep, panels: Sequence[str] = ("pairs_flipped_by_R_F", "train_starc", "jigsaw_auc"),
               titles: Mapping[str, str] | None = None):
    """One panel per metric against the penalty scale c (log axis, c = 0 apart on the right, joined by a
    dotted segment), mean over seeds with std error bars, one line per method (baselines dashed).
    The R_F panel shows the FA methods only (the baselines' R_F is 0)."""

    if titles is None:
        titles = METHOD_TITLES
    val = _lookup(sw.summary)
    xpos = scale_positions(sw.scales)
    positive = sorted((s for s in sw.scales if s > 0), reverse=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.4), squeeze=False)
    shown = {metric: [m for m in sw.methods if METRIC_INFO[metric][1] != 0 or "_fa_" in m] for metric in panels}
    for ax, metric in zip(axes[0], panels):
        for j, m in enumerate(shown[metric]):
            i = sw.methods.index(m)  # same colour in every panel
            dx = 0.03 * (j - (len(shown[metric]) - 1) / 2)  # dodge, so the error bars do not hide each other
            ls = "-" if "_fa_" in m else "--"
            pts = [(xpos[s] + dx, *val[(s, m, metric)]) for s in positive if (s, m, metric) in val]
            if pts:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, yerr=e, fmt=ls, marker="o", ms=4, capsize=2, color=f"C{i}", label=titles.get(m, m))
            if (0.0, m, metric) in val:
                y0, e0 = val[(0.0, m, metric)]
                ax.errorbar([xpos[0.0] + dx], [y0], yerr=[e0], fmt="s", ms=5, capsize=2, color=f"C{i}",
                            label=None if pts else titles.get(m, m))
                if pts:
                    ax.plot([x[-1], xpos[0.0] + dx], [y[-1], y0], ":", color=f"C{i}", lw=1)
        ax.set_xticks([xpos[s] for s in sw.scales], [scale_key(s) + (" (Eq. 3)" if s == PAPER_SCALE else "")
                                                     for s in sw.scales])
        if positive and 0.0 in xpos:
            ax.axvline((xpos[0.0] + xpos[positive[-1]]) / 2, color="0.7", ls=(0, (1, 3)), lw=1)
        ax.invert_xaxis()  # c falls from left to right: the penalty weakens
        label, direction = METRIC_INFO[metric]
        ax.set(xlabel="penalty scale c in c·λ_t/2·||w_F||² (log" + ("; 0 apart)" if 0.0 in xpos else ")"),
               ylabel=label + {1: " (higher is better)", -1: " (lower is better)", 0: ""}[direction])
        ax.set_title(label)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Sensitivity to the weight of Eq. 3's failure-path penalty ({len(sw.seeds)} seeds; bars = std)",
                 fontsize=11)
    fig.tight_layout()
    return fig


# =========================================================================== prose from numbers


def _scales_text(scales: Sequence[float]) -> str:
    return ", ".join(scale_key(s) for s in scales)


def findings(summary: pd.DataFrame, metrics: Sequence[str] = ("jigsaw_auc", "train_starc"),
             baseline_of: Mapping[str, str] | None = None, titles: Mapping[str, str] | None = None) -> list[str]:
    """Sentences read off the sweep's summary (:func:`summarize_sweep`): how much R_F acts at each
    scale, each FA method against its baseline at each scale for ``metrics`` (better / worse only
    beyond the larger seed-std), whether any scale makes an FA method beat its baseline, and how
    much the baselines (which have no failure path) move across scales."""
    if baseline_of is None:
        baseline_of = BASELINE_OF
    if titles is None:
        titles = METHOD_TITLES
    val = _lookup(summary)
    scales = list(dict.fromkeys(summary["scale"].astype(float)))
    methods = list(dict.fromkeys(summary["method"]))
    fa = [m for m in methods if baseline_of.get(m, m) != m and baseline_of[m] in methods]
    lines = []
    if fa:
        parts = []
        for s in scales:
            flips = [val[(s, m, "pairs_flipped_by_R_F")][0] for m in fa if (s, m, "pairs_flipped_by_R_F") in val]
            ratios = [val[(s, m, "ratio_std_F_over_D")][0] for m in fa if (s, m, "ratio_std_F_over_D") in val]
            if flips:
                lo, hi = f"{100 * min(flips):.1f}%", f"{100 * max(flips):.1f}%"
                parts.append(f"c = {scale_key(s)}{' (Eq. 3 as printed)' if s == PAPER_SCALE else ''}: "
                             f"{lo if lo == hi else f'{lo} to {hi}'} (std R_F / std R_D up to {max(ratios):.2g})")
        lines.append(f"Share of training pairs whose ranking the failure path R_F flips, mean over seeds, range over "
                     f"the {len(fa)} FA variants: " + "; ".join(parts) + ".")
    wins: dict[str, list[str]] = {k: [] for k in metrics}
    for k in metrics:
        label, direction = METRIC_INFO[k]
        for m in fa:
            b = baseline_of[m]
            have = [s for s in scales if (s, m, k) in val and (s, b, k) in val]
            if not have:
                continue
            verdicts: dict[str, list[float]] = {}
            for s in have:
                (mu, sd), (mb, sb) = val[(s, m, k)], val[(s, b, k)]
                v = seed_std_verdict(mu - mb, max(sd, sb), direction)
                verdicts.setdefault(v, []).append(s)
                if v == "better":
                    wins[k].append(f"{titles.get(m, m)} at c = {scale_key(s)} ({mu:.3f} vs {mb:.3f})")
            base_vals = [val[(s, b, k)][0] for s in have]
            base_txt = (f"{base_vals[0]:.3f} at every c" if max(base_vals) == min(base_vals)
                        else " / ".join(f"{v:.3f}" for v in base_vals))
            lines.append(f"{titles.get(m, m)}, {label} at c = {' / '.join(scale_key(s) for s in have)}: "
                         f"{' / '.join(f'{val[(s, m, k)][0]:.3f}' for s in have)} ({titles.get(b, b)}: {base_txt}); against "
                         f"its baseline: " + "; ".join(f"{v} at c = {_scales_text(ss)}" for v, ss in verdicts.items())
                         + ".")
    for k in metrics:
        label = METRIC_INFO[k][0]
        if wins[k]:
            lines.append(f"Better than its baseline on {label} by more than one seed-std: " + "; ".join(wins[k]) + ".")
        elif fa:
            lines.append(f"At no penalty scale is an FA variant better than its baseline on {label} by more than "
                         f"one seed-std.")
    bases = sorted({baseline_of[m] for m in fa})
    for k in metrics[:1]:
        spread = [max(v) - min(v) for b in bases
                  if len(v := [val[(s, b, k)][0] for s in scales if (s, b, k) in val]) > 1]
        if spread:
            lines.append(f"The baselines have no failure path, so c does not enter their objective: their "
                         f"{METRIC_INFO[k][0]} " + ("is identical at every scale." if max(spread) == 0 else
                                                    f"moves by at most {max(spread):.2g} across scales."))
    return lines
