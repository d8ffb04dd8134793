"""Pair-mix sensitivity (paper Appendix D, Figure 4): training STARC against the share of T->NT pairs.

Design (App. D): "We fix the total number of pairs and sweep the pair mix, the fraction of T->NT pairs
(lower values imply mostly NT->NT). For each mix we train all methods and report Training STARC."

- **Pairs.** From the ``train`` split of the pair artifact (:mod:`fairl_lib.analysis.pairset`), only the two types
  the design names: ``T->NT`` (base output toxic, expert's not: learnable) and ``NT->NT`` (neither toxic).
  ``NT->T`` and ``T->T`` pairs are not used.
- **Mix.** For fraction ``f`` and total ``N``: ``round(f N)`` T->NT pairs (half up) and the rest NT->NT.
  The draw is nested: each type is shuffled once (seed ``cfg.seed``) and a mix takes the first pairs of
  each shuffled pool, so neighbouring fractions share most of their pairs (common random numbers: the
  curve's shape is not confounded with which pairs were drawn).
- **Not enough pairs of a type.** The artifact may hold fewer T->NT (or NT->NT) pairs than a fraction
  needs at ``total_pairs``. We never resample with replacement. :func:`plan_mix` applies a ``policy``:

  ``"common_total"`` (default)
      keep the total fixed *across* fractions (the design's premise) by lowering it, for every
      fraction, to the largest total that all kept fractions can fill; a fraction that cannot be filled
      even at ``min_total`` (default a quarter of ``total_pairs``) is skipped instead of dragging every
      mix down.
  ``"skip"``
      keep ``total_pairs``; skip each fraction it cannot fill.
  ``"cap"``
      each fraction gets the largest total it can fill (the totals then differ between fractions, so
      fraction and data size are confounded; reported per fraction).

  Every reduced or skipped fraction carries a note (shown in the notebook, written in the table and
  the metrics); nothing is silently changed.
- **Training.** All Table 1 methods x ``irl.n_seeds`` seeds per kept fraction, in one batched ensemble
  (:func:`fairl_lib.irl.train_grid`) on :func:`fairl_lib.analysis.pairset.preference_data` of the mix
  (o+ = o_post, o- = o_pre, y = +1 non-toxic / -1 toxic for the ``*_fa_gt`` failures).
- **Training STARC.** Eq. 4 (:func:`fairl_lib.analysis.metrics.starc_distance`) between the learned reward and
  the ground-truth reward (``{side}_reward``) on the *training outputs* of the mix: both sides of its
  pairs. The run's seed changes the reward's init, minibatch order and failure sampling; the pairs of a
  mix are the same for every seed (the paper does not say which it varies).
- **Does the failure path act on the mix?** Each FA run's flip shares on the mix's own pairs
  (:func:`fairl_lib.analysis.failure_path.flip_shares`): a configuration whose R_F acts on notebook 02's pairs
  may not act on 1,000 pairs with few T->NT ones, and then FA-IRL is its baseline under another name there.

The whole sweep is one cached stage, ``pair_mix`` (keyed by the pairs' fingerprint, the plan, the
``[irl]`` settings, methods and seeds).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fairl_lib.analysis import evaluate, metrics, paper
from fairl_lib.analysis.evaluate import METHOD_TITLES
from fairl_lib.analysis.failure_path import acts, failure_path_summary, flip_shares
from fairl_lib.analysis.pairset import PairSet, count_pair_types, pairset_fingerprint, preference_data
from fairl_lib.cache import cached_stage
from fairl_lib.irl import METHOD_NAMES, IRLConfig, train_grid
from fairl_lib.stages.tuning import best_stage

T_NT, NT_NT = "T->NT", "NT->NT"
POLICIES = ("common_total", "skip", "cap")
STAGE, STAGE_VERSION = "pair_mix", "3"  # 3: each FA run records its flip shares
N_RANDOM_REWARDS = 20  # random linear rewards per mix: the STARC an uninformed reward gets on the same outputs
OK, REDUCED, SKIPPED = "ok", "reduced", "skipped"
RANDOM = "random_reward"  # per_run rows of the random-reward control (not a method)


# =========================================================================== the plan


def mix_counts(fraction: float, total: int) -> tuple[int, int]:
    """``(n T->NT, n NT->NT)`` of a mix: ``round(fraction * total)`` (half up) and the rest."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"pair-mix fraction must be in [0, 1], got {fraction}")
    n_t = math.floor(fraction * total + 0.5)
    return n_t, total - n_t


def feasible_total(fraction: float, n_avail_t: int, n_avail_nt: int, cap: int) -> int:
    """The largest total ``N <= cap`` whose mix needs at most the available pairs of each type."""
    for n in range(int(cap), 0, -1):
        n_t, n_nt = mix_counts(fraction, n)
        if n_t <= n_avail_t and n_nt <= n_avail_nt:
            return n
    return 0


@dataclass(frozen=True)
class MixPlan:
    """One fraction of the sweep: how many pairs of each type it uses, and why (``note``)."""

    fraction: float
    n_t_nt: int
    n_nt_nt: int
    status: str
    note: str = ""

    @property
    def total(self) -> int:
        return self.n_t_nt + self.n_nt_nt

    @property
    def key(self) -> str:
        return fraction_key(self.fraction)


def fraction_key(f: float) -> str:
    """The JSON key of a fraction (``0.25`` -> ``"0.25"``, ``1.0`` -> ``"1"``)."""
    return f"{float(f):g}"


def _shortage(f: float, total: int, avail: Mapping[str, int]) -> str:
    n_t, n_nt = mix_counts(f, total)
    parts = [f"{n} {t} pairs but the train split has {avail[t]}"
             for t, n in ((T_NT, n_t), (NT_NT, n_nt)) if n > avail[t]]
    return f"needs {' and '.join(parts)} at a total of {total}"


def plan_mix(available: Mapping[str, int], fractions: Sequence[float], total_pairs: int,
             policy: str = "common_total", min_total: int | None = None) -> list[MixPlan]:
    """The pairs each fraction uses, given ``available`` counts of ``T->NT`` / ``NT->NT`` training pairs.

    See the module docstring for the policies. ``min_total`` (default ``ceil(total_pairs / 4)``) is the
    smallest total a fraction may be run at before it is skipped (``common_total`` and ``cap``).
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown pair-mix policy {policy!r}; choose one of {POLICIES}.")
    if total_pairs < 1:
        raise ValueError(f"pairmix.total_pairs must be >= 1, got {total_pairs}")
    avail = {T_NT: int(available.get(T_NT, 0)), NT_NT: int(available.get(NT_NT, 0))}
    min_total = max(1, math.ceil(total_pairs / 4) if min_total is None else int(min_total))
    fracs = sorted(dict.fromkeys(float(f) for f in fractions))
    feas = {f: feasible_total(f, avail[T_NT], avail[NT_NT], total_pairs) for f in fracs}
    floor_ = total_pairs if policy == "skip" else min_total
    kept = [f for f in fracs if feas[f] >= floor_]
    if policy == "common_total" and kept:
        common = min(feas[f] for f in kept)
        limiting = [fraction_key(f) for f in kept if feas[f] == common]
    plans = []
    for f in fracs:
        if f not in kept:
            plans.append(MixPlan(f, 0, 0, SKIPPED, f"skipped: {_shortage(f, floor_, avail)}"))
            continue
        n = total_pairs if policy == "skip" else (common if policy == "common_total" else feas[f])
        n_t, n_nt = mix_counts(f, n)
        if n == total_pairs:
            plans.append(MixPlan(f, n_t, n_nt, OK))
        elif policy == "common_total":
            plans.append(MixPlan(f, n_t, n_nt, REDUCED,
                                 f"total lowered from {total_pairs} to {n} for every fraction (fixed total across "
                                 f"the sweep), limited by fraction {', '.join(limiting)}: "
                                 f"{_shortage(float(limiting[0]), total_pairs, avail)}"))
        else:
            plans.append(MixPlan(f, n_t, n_nt, REDUCED, f"total lowered from {total_pairs} to {n}: "
                                 f"{_shortage(f, total_pairs, avail)}"))
    return plans


def draw_mix(df: pd.DataFrame, plan: MixPlan, seed: int) -> np.ndarray:
    """Row positions of ``df`` (the train split) forming one mix: the first ``n_t_nt`` of the seeded
    shuffle of T->NT rows and the first ``n_nt_nt`` of the NT->NT shuffle (nested across fractions)."""
    types = df["pair_type"].to_numpy()
    out = []
    for k, (t, n) in enumerate(((T_NT, plan.n_t_nt), (NT_NT, plan.n_nt_nt))):
        pos = np.flatnonzero(types == t)
        if n > len(pos):
            raise ValueError(f"mix {plan.key} needs {n} {t} pairs, only {len(pos)} exist (plan_mix prevents this)")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 6000, k]))
        out.append(pos[rng.permutation(len(pos))[:n]])
    return np.sort(np.concatenate(out)).astype(int)


# =========================================================================== training and STARC


def training_starc(reward, ps: PairSet) -> float:
    """Eq. 4 STARC of ``reward`` against the ground truth on both outputs of every pair of ``ps``."""
    r_hat = np.concatenate([reward(ps.emb_post), reward(ps.emb_pre)])
    gt = np.concatenate([ps.df["post_reward"].to_numpy(float), ps.df["pre_reward"].to_numpy(float)])
    return metrics.starc_distance(r_hat, gt)


def random_reward_starc(ps: PairSet, n: int = N_RANDOM_REWARDS, seed: int = 0) -> float:
    """Mean Eq. 4 STARC of ``n`` random linear rewards ``theta^T h(o)`` (theta ~ N(0, I), seeded) on the
    outputs of ``ps``: a control showing how far the metric alone moves with the mix. When the mix
    holds almost no toxic outputs the ground-truth reward is nearly flat, its canonical form is mostly
    noise and any reward scores near this value."""
    h = np.concatenate([ps.emb_post, ps.emb_pre]).astype(np.float64)
    gt = np.concatenate([ps.df["post_reward"].to_numpy(float), ps.df["pre_reward"].to_numpy(float)])
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 6001]))
    thetas = rng.standard_normal((h.shape[1], n))
    return float(np.mean([metrics.starc_distance(h @ thetas[:, k], gt) for k in range(n)]))


@dataclass
class SweepResult:
    """The pair-mix sweep: the plan, one row per (fraction, method, seed) and the inputs' counts."""

    plans: list[MixPlan]
    per_run: pd.DataFrame
    available: dict[str, int]
    total_pairs: int
    policy: str
    methods: list[str]
    seeds: list[int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> list[MixPlan]:
        return [p for p in self.plans if p.status != SKIPPED]


def run_sweep(train: PairSet, plans: Sequence[MixPlan], irl: IRLConfig, methods: Sequence[str] = METHOD_NAMES,
              seeds: Sequence[int] | None = None, draw_seed: int = 0,
              log: Callable[[str], None] = print,
              irl_by_method: Mapping[str, IRLConfig] | None = None) -> pd.DataFrame:
    """Train every method x seed on each kept mix; one row per run with its training STARC.

    ``irl_by_method`` trains each method with its own configuration (best against best, notebook 04's
    tuning) instead of ``irl`` for all; the seeds are the same for every method either way."""

    seeds = list(range(irl.n_seeds) if seeds is None else seeds)
    rows = []
    for plan in plans:
        if plan.status == SKIPPED:
            continue
        sub = train.subset(draw_mix(train.df, plan, draw_seed))
        data = preference_data(sub, split=None)
        if irl_by_method:
            grids = [train_grid(data, irl_by_method[m], methods=[m], seeds=seeds) for m in methods]
        else:
            grids = [train_grid(data, irl, methods=methods, seeds=seeds)]
        runs = [run for g in grids for run in g.runs]
        log(f"[pair_mix] fraction {plan.key}: {plan.n_t_nt} T->NT + {plan.n_nt_nt} NT->NT, "
            f"{len(runs)} runs in {sum(g.seconds for g in grids):.1f} s")
        for run in runs:
            fs = (flip_shares(run.reward, sub, seed=run.seed) if run.reward.failure is not None
                  else {"flip_share": math.nan, "flip_share_init": math.nan})  # a baseline has no R_F
            rows.append({"fraction": plan.fraction, "method": run.method, "seed": run.seed,
                         "starc": training_starc(run.reward, sub), "n_t_nt": plan.n_t_nt, "n_nt_nt": plan.n_nt_nt,
                         "epochs_run": run.epochs_run, "best_epoch": run.best_epoch,
                         "flip_share": fs["flip_share"], "flip_share_init": fs["flip_share_init"]})
        rows.append({"fraction": plan.fraction, "method": RANDOM, "seed": -1,
                     "starc": random_reward_starc(sub, seed=draw_seed), "n_t_nt": plan.n_t_nt,
                     "n_nt_nt": plan.n_nt_nt, "epochs_run": 0, "best_epoch": 0})
    return pd.DataFrame(rows, columns=["fraction", "method", "seed", "starc", "n_t_nt", "n_nt_nt", "epochs_run",
                                       "best_epoch", "flip_share", "flip_share_init"])


def available_counts(train: PairSet) -> dict[str, int]:
    """Training pairs of each type the mix can use."""

    c = count_pair_types(train.df)
    return {T_NT: c[T_NT], NT_NT: c[NT_NT]}


def sweep_stage(cfg, ps: PairSet, policy: str = "common_total", min_total: int | None = None,
                methods: Sequence[str] = METHOD_NAMES, log: Callable[[str], None] = print,
                irl_by_method: Mapping[str, IRLConfig] | None = None) -> SweepResult:
    """Notebook 06's cached stage: plan the mixes from ``ps``'s train split and ``cfg.pairmix``, train,
    score. Keyed by the pairs' fingerprint, the plan, ``cfg.irl`` (or each method's configuration in
    ``irl_by_method``), methods, seeds and ``cfg.seed``."""

    train = ps.split("train")
    avail = available_counts(train)
    pm = cfg.pairmix
    plans = plan_mix(avail, pm.fractions, pm.total_pairs, policy, min_total)
    seeds = list(range(cfg.irl.n_seeds))
    settings = {"pairs": pairset_fingerprint(ps), "plans": [asdict(p) for p in plans], "irl": cfg.irl,
                "methods": list(methods), "seeds": seeds, "draw_seed": cfg.seed}
    if irl_by_method:
        settings["irl_by_method"] = {m: irl_by_method[m] for m in methods}

    def compute(workdir: Path) -> None:
        per_run = run_sweep(train, plans, cfg.irl, methods, seeds, cfg.seed, log, irl_by_method)
        per_run.to_csv(workdir / "per_run.csv", index=False)

    folder = cached_stage(cfg, STAGE, settings, compute, version=STAGE_VERSION,
                       log=log)
    receipt = json.loads((folder / "_stage.json").read_text())
    rows = pd.read_csv(folder / "per_run.csv")
    control = rows[rows["method"] == RANDOM].set_index("fraction")["starc"]
    per_run = rows[rows["method"] != RANDOM].reset_index(drop=True)
    return SweepResult(plans, per_run, avail, pm.total_pairs, policy, list(methods), seeds,
                       {"folder": str(folder), "compute_seconds": receipt.get("compute_seconds"),
                        "random_reward_starc": {float(f): float(v) for f, v in control.items()}})


# =========================================================================== Table 1 at the paper's mix


def paper_mix_mask(df: pd.DataFrame, share: float, seed: int) -> np.ndarray:
    """Rows of a pair table at the paper's T->NT share, split by split: every pair that is not NT->NT is
    kept and NT->NT pairs are drawn (without replacement, ``seed``) so that T->NT pairs are ``share`` of the
    split. A split with too few NT->NT pairs for that keeps them all (its share is then higher)."""
    keep = np.zeros(len(df), bool)
    rng = np.random.default_rng(seed)
    for split in pd.unique(df["split"]):
        rows = df["split"].to_numpy() == split
        types = df["pair_type"].to_numpy()
        n_tnt = int((rows & (types == T_NT)).sum())
        ntnt = np.flatnonzero(rows & (types == NT_NT))
        other = rows & (types != NT_NT)
        want = max(0, round(n_tnt / share) - int(other.sum())) if share > 0 else len(ntnt)
        keep |= other
        keep[rng.choice(ntnt, size=min(want, len(ntnt)), replace=False)] = True
    return keep


def paper_mix_table1(cfg, ps: PairSet, heldout, fa: str, base: str, tuned, *, share: float = paper.TNT_SHARE,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Table 1 at the paper's mix (about 36% T->NT, Figure 3 middle): the pairs of ``ps`` thinned to ``share``
    T->NT in train and test (:func:`paper_mix_mask`, seed ``cfg.seed``), every method trained at its tuned
    configuration (``tuned``, notebook 04's search, which saw the full pairs) on ``tuning.best_seeds`` seeds
    (:func:`fairl_lib.stages.tuning.best_stage`, cached, not published), then the preregistered ``fa`` -
    ``base`` comparison of notebook 05 on both sets (:func:`fairl_lib.analysis.evaluate.compare_methods`) and
    whether ``fa``'s failure path acts on these pairs."""
    sub = ps.subset(paper_mix_mask(ps.df, share, cfg.seed))
    counts = {sp: count_pair_types(sub.split(sp).df) for sp in ("train", "test")}
    log(f"[pair_mix] Table 1 at {share:.0%} T->NT: {len(sub.split('train'))} training and "
        f"{len(sub.split('test'))} test pairs")
    grid = best_stage(cfg, sub, tuned, log=log, publish=False)
    ev = evaluate.evaluate_grid(grid, sub, heldout)
    path = failure_path_summary(grid, sub).get(fa, {})
    reps = cfg.ledger.bootstrap_reps
    return {"share": share, "pair_types": counts,
            "tnt_share": {sp: counts[sp].get(T_NT, 0) / max(1, sum(counts[sp].values())) for sp in counts},
            "fa_method": fa, "baseline": base,
            "acting": bool(path.get("acts", False)), "flip_share": path.get("flip_share_mean"),
            "flip_share_init": path.get("flip_share_init_mean"),
            "comparisons": {st: {mt: evaluate.compare_methods(ev, fa, base, st, mt, reps=reps, seed=cfg.seed)
                                 for mt in ("f1", "auc", "starc")} for st in ("in_domain", "jigsaw")}}


# =========================================================================== summaries, metrics, plot


def summary_frame(res: SweepResult) -> pd.DataFrame:
    """One row per (fraction, method): the mix, its status and note, STARC mean / min / max over seeds.

    Skipped fractions appear once per method with empty STARC, so the table shows them."""
    g = res.per_run.groupby(["fraction", "method"])["starc"]
    stats = pd.DataFrame({"starc_mean": g.mean(), "starc_min": g.min(), "starc_max": g.max(), "n_seeds": g.count()})
    rows = []
    for p in res.plans:
        for m in res.methods:
            s = stats.loc[(p.fraction, m)] if (p.fraction, m) in stats.index else None
            rows.append({"fraction": p.fraction, "method": m, "n_t_nt": p.n_t_nt, "n_nt_nt": p.n_nt_nt,
                         "total": p.total, "status": p.status,
                         "starc_mean": float(s["starc_mean"]) if s is not None else math.nan,
                         "starc_min": float(s["starc_min"]) if s is not None else math.nan,
                         "starc_max": float(s["starc_max"]) if s is not None else math.nan,
                         "n_seeds": int(s["n_seeds"]) if s is not None else 0, "note": p.note})
    return pd.DataFrame(rows)


def pair_mix_metrics(res: SweepResult) -> dict[str, Any]:
    """``metrics/06_pair_mix.json``: the plan, availability notes and per fraction per method STARC.

    ``pair_mix[fraction] = {status, note, n_t_nt, n_nt_nt, total, methods: {method: {mean, min, max,
    per_seed}}}`` (``methods`` empty for skipped fractions); ``notes`` lists every reduced / skipped one. An FA
    method's block also has ``flip_share``, ``flip_share_init`` (means over seeds, on that mix's own pairs) and
    ``acts`` (:func:`fairl_lib.analysis.failure_path.acts`): whether its failure path acts on those pairs.
    """
    out: dict[str, Any] = {}
    for p in res.plans:
        block: dict[str, Any] = {"status": p.status, "note": p.note, "n_t_nt": p.n_t_nt, "n_nt_nt": p.n_nt_nt,
                                 "total": p.total, "methods": {}}
        for m in res.methods:
            g = res.per_run[(res.per_run["fraction"] == p.fraction) & (res.per_run["method"] == m)].sort_values("seed")
            if len(g):
                v = g["starc"].to_numpy(float)
                block["methods"][m] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
                                       "per_seed": [float(x) for x in v]}
                if "flip_share" in g and g["flip_share"].notna().all():  # an FA method: does R_F act on this mix?
                    share, init = float(g["flip_share"].mean()), float(g["flip_share_init"].mean())
                    block["methods"][m].update({"flip_share": share, "flip_share_init": init,
                                                "acts": acts(share, init)})
        out[p.key] = block
    used = sorted({p.total for p in res.kept})
    return {
        "policy": res.policy, "total_pairs_configured": res.total_pairs,
        "total_pairs_used": used[0] if len(used) == 1 else used,
        "available_train_pairs": res.available, "fractions_run": [p.fraction for p in res.kept],
        "fractions_skipped": [p.fraction for p in res.plans if p.status == SKIPPED],
        "notes": [f"fraction {p.key}: {p.note}" for p in res.plans if p.note],
        "methods": res.methods, "n_seeds": len(res.seeds), "starc": "eq4, training outputs (both sides of the mix)",
        "random_reward_starc": {fraction_key(f): v for f, v in res.info.get("random_reward_starc", {}).items()},
        "pair_mix": out,
    }


def plot_pair_mix(res: SweepResult, labels: Mapping[str, str] | None = None):
    """Figure 4: training STARC against the T->NT fraction, mean over seeds (line) and min-max (band),
    one line per method; skipped fractions are marked on the axis."""

    if labels is None:
        labels = METHOD_TITLES
    summ = summary_frame(res)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for i, m in enumerate(res.methods):
        g = summ[(summ["method"] == m) & (summ["status"] != SKIPPED)].sort_values("fraction")
        style = "-" if "_fa_" in m else "--"
        ax.plot(g["fraction"], g["starc_mean"], style, marker="o", ms=4, color=f"C{i}", label=labels.get(m, m))
        ax.fill_between(g["fraction"], g["starc_min"], g["starc_max"], color=f"C{i}", alpha=0.15, lw=0)
        ax.vlines(g["fraction"], g["starc_min"], g["starc_max"], color=f"C{i}", alpha=0.4, lw=1)  # visible for one x
    ctrl = sorted(res.info.get("random_reward_starc", {}).items())
    if ctrl:
        ax.plot([f for f, _ in ctrl], [v for _, v in ctrl], ":", color="0.45", marker="x", ms=4,
                label=f"random linear reward (mean of {N_RANDOM_REWARDS})")
    skipped = [p.fraction for p in res.plans if p.status == SKIPPED]
    for f in skipped:
        ax.axvline(f, color="0.6", ls=":", lw=1)
        ax.annotate("skipped", (f, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -12),
                    textcoords="offset points", fontsize=8, color="0.4", rotation=90, va="top")
    totals = sorted({p.total for p in res.kept})
    tot = f"{totals[0]} pairs per mix" if len(totals) == 1 else f"{min(totals)}-{max(totals)} pairs per mix"
    ax.set(xlabel="fraction of T->NT pairs (rest NT->NT)", ylabel="training STARC, Eq. 4 (lower is better)",
           title=f"Pair-mix sensitivity ({tot}, {len(res.seeds)} seeds; band = min-max)")
    ax.set_xlim(-0.03, 1.03)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def findings(summary: pd.DataFrame, res: SweepResult) -> list[str]:
    """Point-estimate sentences read off the sweep (trend per method, steepest FA-IRL vs baseline,
    lowest STARC at both ends, the random-reward control). Computed from the numbers, never
    written by hand; notebook 09 gives the intervals and verdicts."""
    wide = summary[summary.status != "skipped"].pivot(index="fraction", columns="method", values="starc_mean")
    lines = []
    if len(wide) >= 2:
        lo, hi = wide.index.min(), wide.index.max()
        change = wide.loc[hi] - wide.loc[lo]
        falls = [m for m in wide.columns if change[m] < 0]
        lines.append(f"From T->NT fraction {lo:g} to {hi:g}, mean training STARC falls for {len(falls)} of "
                     f"{len(wide.columns)} methods (" + ", ".join(f"{m} {change[m]:+.3f}" for m in wide.columns) + ").")
        fa = [m for m in wide.columns if "_fa_" in m]
        base = [m for m in wide.columns if "_fa_" not in m]
        steep_fa, steep_base = min(fa, key=lambda m: change[m]), min(base, key=lambda m: change[m])
        lines.append(f"Steepest FA-IRL variant: {steep_fa} ({change[steep_fa]:+.3f}); steepest baseline: "
                     f"{steep_base} ({change[steep_base]:+.3f}).")
        for f in (lo, hi):
            best = wide.loc[f].idxmin()
            lines.append(f"Lowest mean STARC at fraction {f:g}: {best} ({wide.loc[f, best]:.3f}); best baseline "
                         f"{wide.loc[f, base].min():.3f}.")
    else:
        lines.append("Fewer than two fractions could be run: no trend to read (see the availability notes).")
    ctrl = res.info.get("random_reward_starc", {})
    if ctrl:
        lines.append("Random linear rewards on the same outputs: " + ", ".join(
            f"{f:g}: {v:.3f}" for f, v in sorted(ctrl.items())) + " (the yardstick's own change with the mix).")
    return lines
