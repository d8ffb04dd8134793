"""The reproduction report (notebook 09): a ledger of the paper's claims, each set beside what we measured.

The report reads ONLY the metrics files ``results/<profile>/metrics/NN_name.json`` written by the other
notebooks (and links their figures). For every claim it records the paper's figure, ours (a mean with a
95% confidence interval over seeds where seeds exist) and a **verdict computed by a rule** from the
numbers; nothing is hard-coded:

=================  =========================================================================================
verdict            rule
=================  =========================================================================================
``reproduced``     the 95% CI of the tested quantity lies entirely on the side the paper claims
``not reproduced`` the 95% CI lies entirely on the other side (a clear loss), or an exact statement fails
``inconclusive``   the CI overlaps the null value (or there are too few seeds to form one) at this scale
``not run``        the notebook's metrics file is missing, or lacks the numbers the claim needs
=================  =========================================================================================

Statistics (all 95%, two-sided):

- differences between methods are **paired over seeds** (runs of different methods with the same seed
  share init and minibatch order, ``irl.train``), Student-t interval of the mean paired difference;
  unpaired (Welch) when the seeds differ;
- counts "only A correct" vs "only B correct" (Tables 2-3): exact (Clopper-Pearson) interval of the
  share ``only_A / (only_A + only_B)`` against 1/2, i.e. the exact sign test (McNemar style). Not
  Wilson's score interval: at a handful of disagreements it is anti-conservative (4 vs 0 gives
  Wilson [0.51, 1.00], a "win", where the exact two-sided sign test gives p = 0.125);
- variances across seeds: F-distribution interval of the variance ratio against 1;
- trends (Figure 4): least-squares slope of STARC against the T->NT fraction with its t interval;
- proportions (re-RLHF toxicity): Newcombe (Wilson hybrid) interval of a difference of two rates.

Which FA-IRL variant and which baseline a claim compares is part of the ledger entry ("compared"): for
Table 1 the best FA-IRL variant on the metric against the best baseline on it (the strongest baseline,
the paper's "outperforms both"); Tables 2-3 and re-RLHF follow the paper's pairing (ME FA-IRL with IRL
margin failures against ME IRL) when the metrics say so.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from fairl_lib.analysis import paper
from fairl_lib.artifacts import atomic_write_text

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = "reproduced", "not reproduced", "inconclusive", "not run"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)
LEVEL = 0.95

BASELINES = ("mm_irl", "me_irl")
FA_METHODS = ("mm_fa_gt", "me_fa_gt", "mm_fa_margin", "me_fa_margin")
METHOD_LABELS = {"mm_irl": "Max-Margin IRL", "me_irl": "Max-Entropy IRL",
                 "mm_fa_gt": "MM FA-IRL (GT failures)", "me_fa_gt": "ME FA-IRL (GT failures)",
                 "mm_fa_margin": "MM FA-IRL (margin failures)", "me_fa_margin": "ME FA-IRL (margin failures)"}

# notebook stems whose metrics the ledger reads
NOTEBOOKS = {"03": "03_theory_toy", "04": "04_irl_training", "05": "05_evaluation", "06": "06_pair_mix",
             "07": "07_model_size", "08": "08_rerlhf"}

# The paper's numbers (fairl_lib.analysis.paper).
PAPER_TABLE1 = paper.TABLE1
PAPER_TABLE2_TEST = paper.TABLE2["jigsaw"]
PAPER_TABLE3_TEST = {("identity_attack" if k == "identity_hate" else k): v[1:] for k, v in paper.TABLE3["jigsaw"].items()}
PAPER_RERLHF = paper.RERLHF_RATES


# ============================================================================ statistics


@dataclass(frozen=True)
class Estimate:
    """A point value with a 95% interval (``lo``/``hi`` None when it cannot be formed) and its sample size."""

    value: float
    lo: float | None = None
    hi: float | None = None
    n: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"value": _f(self.value), "ci95": None if self.lo is None else [_f(self.lo), _f(self.hi)], "n": self.n}

    def text(self, fmt: str = ".3f") -> str:
        ci = "" if self.lo is None else f" [{self.lo:{fmt}}, {self.hi:{fmt}}]"
        return f"{self.value:{fmt}}{ci}"


def _f(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _clean(values: Iterable) -> np.ndarray:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64).reshape(-1)
    return v[np.isfinite(v)]


def mean_ci(values: Iterable[float], level: float = LEVEL) -> Estimate:
    """Mean over seeds with a Student-t interval (no interval for fewer than 2 values or zero spread
    is a point interval)."""
    v = _clean(values)
    if len(v) == 0:
        raise ValueError("mean_ci needs at least one finite value")
    m = float(v.mean())
    if len(v) < 2:
        return Estimate(m, None, None, len(v))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return Estimate(m, m - half, m + half, len(v))


def diff_ci(a: Sequence[float], b: Sequence[float], paired: bool = True, level: float = LEVEL) -> Estimate:
    """mean(a) - mean(b) with a 95% interval: paired t over seeds when ``paired`` and the lengths match,
    else Welch's t."""
    a, b = _clean(a), _clean(b)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("diff_ci needs values on both sides")
    if paired and len(a) == len(b):
        return mean_ci(a - b, level)
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Estimate(d, None, None, min(len(a), len(b)))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(d, d, d, min(len(a), len(b)))
    dof = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1)) + (vb ** 2 / (len(b) - 1))) if va + vb > 0 else 1
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    return Estimate(d, d - half, d + half, min(len(a), len(b)))


def wilson_ci(k: int, n: int, level: float = LEVEL) -> Estimate:
    """A proportion k/n with the Wilson score interval."""
    if n <= 0:
        raise ValueError("wilson_ci needs n > 0")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def sign_test_ci(k: int, n: int, level: float = LEVEL) -> Estimate:
    """A proportion k/n with the exact (Clopper-Pearson) interval: it excludes 1/2 exactly when the
    equal-tailed exact binomial (sign) test rejects p = 1/2 at ``1 - level``."""
    if n <= 0:
        raise ValueError("sign_test_ci needs n > 0")
    a = 1 - level
    lo = float(stats.beta.ppf(a / 2, k, n - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(1 - a / 2, k + 1, n - k)) if k < n else 1.0
    return Estimate(k / n, lo, hi, n)


def rate_diff_ci(k1: int, n1: int, k2: int, n2: int, level: float = LEVEL) -> Estimate:
    """p1 - p2 with Newcombe's hybrid score interval (method 10)."""
    a, b = wilson_ci(k1, n1, level), wilson_ci(k2, n2, level)
    d = a.value - b.value
    lo = d - math.sqrt((a.value - a.lo) ** 2 + (b.hi - b.value) ** 2)
    hi = d + math.sqrt((a.hi - a.value) ** 2 + (b.value - b.lo) ** 2)
    return Estimate(d, lo, hi, min(n1, n2))


def variance_ratio_ci(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Estimate:
    """var(a) / var(b) over seeds with the F-distribution interval (normal errors assumed)."""
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("variance_ratio_ci needs at least 2 values on each side")
    va, vb = a.var(ddof=1), b.var(ddof=1)
    if vb == 0:
        return Estimate(math.inf if va > 0 else 1.0, None, None, min(len(a), len(b)))
    r = float(va / vb)
    d1, d2 = len(a) - 1, len(b) - 1
    lo = r / float(stats.f.ppf(0.5 + level / 2, d1, d2))
    hi = r / float(stats.f.ppf(0.5 - level / 2, d1, d2))
    return Estimate(r, lo, hi, min(len(a), len(b)))


def slope_ci(x: Sequence[float], y: Sequence[float], level: float = LEVEL) -> Estimate:
    """Least-squares slope of y on x with its t interval (needs >= 3 points and >= 2 distinct x)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ValueError("slope_ci needs at least two distinct x values")
    res = stats.linregress(x, y)
    if len(x) < 3:
        return Estimate(float(res.slope), None, None, len(x))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 2) * res.stderr)
    return Estimate(float(res.slope), float(res.slope) - half, float(res.slope) + half, len(x))


@dataclass(frozen=True)
class Sample:
    """One metric of one method over seeds: the per-seed ``values`` when a notebook wrote them, else a
    summary (``mean``, sample ``sd`` with ddof=1, ``n``). Summaries give Welch / F intervals; per-seed
    values also allow paired differences."""

    mean: float
    sd: float | None = None
    n: int = 1
    values: tuple[float, ...] | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Sample:
        v = _clean(values)
        if len(v) == 0:
            raise ValueError("Sample.of needs at least one finite value")
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None, len(v), tuple(map(float, v)))

    def ci(self, level: float = LEVEL) -> Estimate:
        if self.values is not None:
            return mean_ci(self.values, level)
        if self.sd is None or self.n < 2 or not math.isfinite(self.sd):
            return Estimate(self.mean, None, None, self.n)
        half = float(stats.t.ppf(0.5 + level / 2, self.n - 1) * self.sd / math.sqrt(self.n))
        return Estimate(self.mean, self.mean - half, self.mean + half, self.n)


def sample_diff(a: Sample, b: Sample, paired: bool = True, level: float = LEVEL) -> Estimate:
    """a - b: paired over seeds when both have per-seed values of equal length (and ``paired``), else
    Welch's t from the summaries (no interval if either side has a single seed)."""
    if paired and a.values is not None and b.values is not None and len(a.values) == len(b.values):
        return diff_ci(a.values, b.values, paired=True, level=level)
    d = a.mean - b.mean
    if a.sd is None or b.sd is None or a.n < 2 or b.n < 2:
        return Estimate(d, None, None, min(a.n, b.n))
    va, vb = a.sd ** 2 / a.n, b.sd ** 2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(d, d, d, min(a.n, b.n))
    dof = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    return Estimate(d, d - half, d + half, min(a.n, b.n))


def sample_variance_ratio(a: Sample, b: Sample, level: float = LEVEL) -> Estimate:
    """var(a) / var(b) over seeds with the F interval (needs >= 2 seeds each)."""
    if a.sd is None or b.sd is None or a.n < 2 or b.n < 2:
        raise ValueError("sample_variance_ratio needs at least 2 seeds on each side")
    va, vb = a.sd ** 2, b.sd ** 2
    if vb == 0:
        return Estimate(math.inf if va > 0 else 1.0, None, None, min(a.n, b.n))
    r = float(va / vb)
    lo = r / float(stats.f.ppf(0.5 + level / 2, a.n - 1, b.n - 1))
    hi = r / float(stats.f.ppf(0.5 - level / 2, a.n - 1, b.n - 1))
    return Estimate(r, lo, hi, min(a.n, b.n))


def verdict_from_ci(est: Estimate | None, null: float = 0.0, direction: int = +1) -> str:
    """The verdict rule. ``direction=+1``: the paper claims the quantity is above ``null``; ``-1``: below.

    Interval entirely on the claimed side -> reproduced; entirely on the other side -> not reproduced;
    otherwise (or no interval) -> inconclusive; no estimate -> not run.
    """
    if est is None:
        return NOT_RUN
    if est.lo is None or est.hi is None:
        return INCONCLUSIVE
    lo, hi = (est.lo - null, est.hi - null) if direction > 0 else (null - est.hi, null - est.lo)
    if lo > 0:
        return REPRODUCED
    if hi < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """All parts must hold: any not-run -> not run; any clear loss -> not reproduced; all clear wins ->
    reproduced; else inconclusive."""
    if not verdicts or NOT_RUN in verdicts:
        return NOT_RUN
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE


# ============================================================================ ledger entries


@dataclass
class Entry:
    """One claim of the ledger."""

    id: str
    claim: str
    source: str
    notebook: str
    paper: str
    verdict: str = NOT_RUN
    ours: str = "-"
    compared: str = ""
    rule: str = ""
    estimate: Estimate | None = None
    details: dict[str, Any] = field(default_factory=dict)
    figures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "source": self.source, "notebook": self.notebook, "paper": self.paper,
                "ours": self.ours, "estimate": None if self.estimate is None else self.estimate.to_dict(),
                "verdict": self.verdict, "compared": self.compared, "rule": self.rule,
                "details": _jsonable(self.details), "figures": list(self.figures)}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Estimate):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return _f(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


class MissingMetrics(KeyError):
    """A metrics file, or a number inside it, that a claim needs is absent."""


def _get(d: Mapping | None, *path: str, nb: str = "") -> Any:
    """``d[path[0]][path[1]]...`` or :class:`MissingMetrics` naming what is absent."""
    if d is None:
        raise MissingMetrics(f"no metrics file of notebook {nb} (not run)")
    cur: Any = d
    for i, k in enumerate(path):
        if not isinstance(cur, Mapping) or k not in cur:
            raise MissingMetrics(f"metrics of notebook {nb} have no {'.'.join(path[:i + 1])}")
        cur = cur[k]
    return cur


def _first(d: Mapping | None, paths: Sequence[Sequence[str]], nb: str) -> Any:
    """The first of several accepted key paths that exists (metrics formats of other notebooks)."""
    err = None
    for p in paths:
        try:
            return _get(d, *p, nb=nb)
        except MissingMetrics as e:
            err = err or e
    raise err  # type: ignore[misc]


# --- per-seed method metrics (notebooks 04/05) ------------------------------------------------------


METRIC_ALIASES = {"f1": ("f1", "F1"), "auc": ("auc", "roc_auc", "AUC"), "starc": ("starc", "STARC"),
                  "accuracy": ("accuracy", "acc")}


def _as_seed_list(v: Any) -> list[float] | None:
    """A per-seed list from ``[...]``, ``{"per_seed": [...]}``, ``{"values": [...]}`` or ``{seed: x}``."""
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) or x is None for x in v):
        return [np.nan if x is None else float(x) for x in v]
    if isinstance(v, Mapping):
        for k in ("per_seed", "values", "seeds"):
            if k in v:
                return _as_seed_list(v[k])
        if v and all(str(k).lstrip("-").isdigit() for k in v):
            return [float(v[k]) if v[k] is not None else np.nan for k in sorted(v, key=lambda s: int(s))]
    return None


def sample_from_leaf(leaf: Any, n_default: int | None = None, std_ddof: int = 0) -> Sample | None:
    """A :class:`Sample` from a metrics leaf: per-seed values (list, ``{"per_seed": ...}``, ``{seed: x}``),
    or a summary ``{"mean", "std"|"sd", "n"}`` (``n`` else ``n_default``; ``std`` is taken as population
    std (ddof=0, as ``metrics.mean_std``) unless ``std_ddof=1`` or the leaf says ``"std_ddof": 1`` or
    carries ``ci_low`` (Student-t summaries use ddof=1)), or a bare number (one seed)."""
    seeds = _as_seed_list(leaf)
    if seeds is not None and len(_clean(seeds)):
        return Sample.of(seeds)
    if isinstance(leaf, Mapping) and isinstance(leaf.get("mean"), (int, float)) and math.isfinite(leaf["mean"]):
        n = leaf.get("n", leaf.get("n_seeds", n_default))
        sd = leaf.get("sd", leaf.get("std"))
        n = int(n) if isinstance(n, (int, float)) and n else 1
        if not isinstance(sd, (int, float)) or not math.isfinite(sd) or n < 2:
            return Sample(float(leaf["mean"]), None, n)
        ddof = 1 if ("sd" in leaf or "ci_low" in leaf or leaf.get("std_ddof") == 1 or std_ddof == 1) else 0
        sd = float(sd) * (math.sqrt(n / (n - 1)) if ddof == 0 else 1.0)
        return Sample(float(leaf["mean"]), sd, n)
    if isinstance(leaf, (int, float)) and not isinstance(leaf, bool) and math.isfinite(leaf):
        return Sample(float(leaf), None, 1)
    return None


def _n_seeds(metrics: Mapping | None, default: int | None) -> int | None:
    if isinstance(metrics, Mapping):
        for k in ("n_seeds", "seeds"):
            v = metrics.get(k)
            if isinstance(v, int) and not isinstance(v, bool):
                return v
            if isinstance(v, list):
                return len(v)
        for sec, key in (("irl", "n_seeds"), ("n", "seeds")):  # notebook 05 writes n.seeds
            block = metrics.get(sec)
            if isinstance(block, Mapping) and isinstance(block.get(key), int):
                return block[key]
    return default


# the set Table 1 reports: in-domain test pairs (paper: "the Pythia-410M preference pair test set")
TABLE1_SETS = ("in_domain", "test")


def method_seed_values(metrics: Mapping | None, metric: str, sets: Sequence[str] = TABLE1_SETS, nb: str = "05",
                       n_default: int | None = None) -> dict[str, Sample]:
    """``{method: Sample}`` of one Table 1 metric from a notebook's metrics.

    Accepted layouts (first found wins), for each set name in ``sets``: ``per_seed[set][method][metric]``,
    ``table1[set][method][metric]``, ``summary[set][method][metric]``, ``[set][method][metric]``; then
    without a set: ``table1[method][metric]``, ``per_seed[...]``, ``methods[...]``. A leaf is a per-seed
    list or ``{"mean", "std", "n"}`` (:func:`sample_from_leaf`; ``n`` else the file's ``n_seeds``).
    """
    if metrics is None:
        raise MissingMetrics(f"no metrics file of notebook {nb} (not run)")
    n_default = _n_seeds(metrics, n_default)
    roots = [r + (st,) for st in sets for r in (("per_seed",), ("table1",), ("summary",), ())]
    roots += [("table1",), ("per_seed",), ("summary",), ("methods",)]
    for root in roots:
        try:
            block = _get(metrics, *root, nb=nb) if root else None
        except MissingMetrics:
            continue
        if not isinstance(block, Mapping):
            continue
        out: dict[str, Sample] = {}
        for method, vals in block.items():
            if method not in METHOD_LABELS or not isinstance(vals, Mapping):
                continue
            alias = next((a for a in METRIC_ALIASES.get(metric, (metric,)) if a in vals), None)
            if alias is not None:
                smp = sample_from_leaf(vals[alias], n_default)
                if smp is not None:
                    out[method] = smp
        if out:
            return out
    raise MissingMetrics(f"metrics of notebook {nb} have no per-method {metric!r} values ({'/'.join(sets)})")


def _mean_of(v: Sample | Sequence[float]) -> float:
    return v.mean if isinstance(v, Sample) else float(np.mean(_clean(v)))


def _best(values: Mapping[str, Sample | Sequence[float]], methods: Iterable[str], higher: bool) -> str | None:
    """The method of ``methods`` with the highest (``higher``) or lowest mean."""
    cands = [m for m in methods if m in values and math.isfinite(_mean_of(values[m]))]
    if not cands:
        return None
    return (max if higher else min)(cands, key=lambda m: _mean_of(values[m]))


# ============================================================================ the claims


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: its descriptive fields and the function that measures it.

    ``measure(mets, entry)`` fills ``entry`` (verdict, ours, estimate, details) from ``mets``
    (``{notebook number "03": metrics dict or None}``) or raises :class:`MissingMetrics`.
    ``notebooks`` are the numbers whose metrics may hold the numbers (first found wins).
    """

    id: str
    claim: str
    source: str
    notebooks: tuple[str, ...]
    paper: str
    rule: str
    measure: Callable[[Mapping[str, Mapping | None], Entry], None]
    figures: tuple[str, ...] = ()

    def entry(self) -> Entry:
        return Entry(self.id, self.claim, self.source, self.notebooks[0], self.paper, rule=self.rule,
                     figures=self.figures)


def _nb_metrics(mets: Mapping[str, Mapping | None], nbs: Sequence[str], getter: Callable[[Mapping, str], Any]):
    """``(notebook, getter(metrics, notebook))`` for the first notebook of ``nbs`` whose metrics work."""
    if all(mets.get(nb) is None for nb in nbs):
        raise MissingMetrics(f"no metrics file of notebook {' / '.join(nbs)} (not run)")
    err = None
    for nb in nbs:
        try:
            return nb, getter(mets.get(nb), nb)
        except MissingMetrics as e:
            err = err or e
    raise err if err else MissingMetrics("no notebook given")


def _table1(metric: str, sets: Sequence[str] = TABLE1_SETS) -> Callable:
    higher = metric != "starc"

    def measure(mets, e: Entry) -> None:
        nb, vals = _nb_metrics(mets, ("05", "04"), lambda m, nb: method_seed_values(
            m, metric, sets=sets, nb=nb, n_default=mets.get("_n_seeds")))
        fa, base = _best(vals, FA_METHODS, higher), _best(vals, BASELINES, higher)
        if fa is None or base is None:
            raise MissingMetrics(f"metrics of notebook {nb}: FA-IRL or baseline {metric} values missing")
        est = sample_diff(vals[fa], vals[base])
        e.notebook, e.estimate, e.verdict = nb, est, verdict_from_ci(est, 0.0, +1 if higher else -1)
        e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]}"
        how = "paired" if vals[fa].values is not None and vals[base].values is not None else "Welch"
        e.ours = (f"{vals[fa].ci().text()} vs {vals[base].ci().text()}; difference "
                  f"{est.text('+.3f')} ({est.n} seeds, {how})")
        e.details = {"fa_method": fa, "baseline": base, "interval": how,
                     "all_methods": {m: v.ci() for m, v in vals.items()}}
    return measure


def _paper_table1(metric: str) -> str:
    higher = metric != "starc"
    fa = (max if higher else min)(FA_METHODS, key=lambda m: PAPER_TABLE1[m][metric][0])
    base = (max if higher else min)(BASELINES, key=lambda m: PAPER_TABLE1[m][metric][0])
    a, b = PAPER_TABLE1[fa][metric][0], PAPER_TABLE1[base][metric][0]
    return f"{METHOD_LABELS[fa]} {a:.3f} vs {METHOD_LABELS[base]} {b:.3f} ({a - b:+.3f})"


def _measure_variance(mets, e: Entry) -> None:
    def getter(m, nb):
        return method_seed_values(m, "starc", nb=nb, n_default=mets.get("_n_seeds"))

    nb, vals = _nb_metrics(mets, ("05", "04"), getter)
    parts, verdicts = {}, []
    for fam in ("me", "mm"):
        fa, base = f"{fam}_fa_margin", f"{fam}_irl"
        if fa in vals and base in vals and vals[fa].n >= 2 and vals[base].n >= 2 and vals[fa].sd is not None \
                and vals[base].sd is not None:
            est = sample_variance_ratio(vals[fa], vals[base])
            parts[f"{fa} / {base}"] = est
            verdicts.append(verdict_from_ci(est, 1.0, -1))
    if not parts:
        raise MissingMetrics(f"metrics of notebook {nb}: fewer than 2 seeds per method, no variance across seeds")
    e.notebook, e.verdict = nb, combine_verdicts(verdicts)
    e.estimate = next(iter(parts.values()))
    e.compared = ", ".join(parts)
    e.ours = "; ".join(f"variance ratio {k} = {v.text('.2f')}" for k, v in parts.items())
    e.details = {"variance_ratios": parts, "part_verdicts": verdicts,
                 "seed_dispersion": (mets.get(nb) or {}).get("seed_dispersion")}


HELDOUT_SETS = ("jigsaw", "test")  # Tables 2-3: the held-out Jigsaw test set


def _disagreement(metrics: Mapping | None, nb: str) -> dict[str, int]:
    block = _first(metrics, [(k, st) for st in HELDOUT_SETS for k in ("table2", "disagreement")]
                   + [("table2",), ("disagreement",)], nb)
    if not isinstance(block, Mapping):
        raise MissingMetrics(f"metrics of notebook {nb}: disagreement counts are not a mapping")
    aliases = {"only_fa": ("only_fa", "only_a", "only_fa_irl"), "only_irl": ("only_irl", "only_b", "only_baseline"),
               "both": ("both",), "neither": ("neither",)}
    out = {}
    for key, names in aliases.items():
        for n in names:
            if n in block:
                out[key] = int(block[n])
                break
    if "only_fa" not in out or "only_irl" not in out:
        raise MissingMetrics(f"metrics of notebook {nb}: disagreement counts lack only_fa / only_irl")
    return out


def _sign(only_fa: int, only_irl: int) -> tuple[Estimate | None, str]:
    n = only_fa + only_irl
    if n == 0:
        return None, INCONCLUSIVE
    est = sign_test_ci(only_fa, n)
    return est, verdict_from_ci(est, 0.5, +1)


def _measure_table2(mets, e: Entry) -> None:
    nb, c = _nb_metrics(mets, ("05", "04"), _disagreement)
    est, v = _sign(c["only_fa"], c["only_irl"])
    e.notebook, e.estimate, e.verdict = nb, est, v
    e.compared = f"{METHOD_LABELS['me_fa_margin']} vs {METHOD_LABELS['me_irl']}"
    e.ours = f"only FA-IRL {c['only_fa']} vs only IRL {c['only_irl']}" + (
        f" (share {est.text('.2f')})" if est else " (no disagreements)")
    e.details = {"counts": c}


def _subtype_counts(metrics: Mapping | None, nb: str) -> dict[str, tuple[int, int]]:
    block = _first(metrics, [(k, st) for st in HELDOUT_SETS for k in ("table3", "subtypes")] + [("table3",)], nb)
    out = {}
    for sub, c in (block.items() if isinstance(block, Mapping) else ()):
        if isinstance(c, Mapping):
            fa = next((c[k] for k in ("only_fa", "only_a", "fa_only") if k in c), None)
            irl = next((c[k] for k in ("only_irl", "only_b", "irl_only") if k in c), None)
            if fa is not None and irl is not None:
                out[str(sub)] = (int(fa), int(irl))
    if not out:
        raise MissingMetrics(f"metrics of notebook {nb}: no per-subtype disagreement counts")
    return out


def _measure_table3(mets, e: Entry) -> None:
    nb, counts = _nb_metrics(mets, ("05", "04"), _subtype_counts)
    parts, verdicts = {}, []
    for sub, (a, b) in counts.items():
        est, v = _sign(a, b)
        parts[sub] = {"only_fa": a, "only_irl": b, "share": est, "verdict": v}
        verdicts.append(v)
    e.notebook, e.verdict = nb, combine_verdicts(verdicts)
    e.compared = f"{METHOD_LABELS['me_fa_margin']} vs {METHOD_LABELS['me_irl']}"
    e.ours = "; ".join(f"{k} {p['only_fa']} vs {p['only_irl']} ({p['verdict']})" for k, p in parts.items())
    e.details = {"subtypes": parts}


# --- theory toy (notebook 03) ----------------------------------------------------------------------


def _exact_share(key: str, what: str, binds_key: str = "frac_binds") -> Callable:
    def measure(mets, e: Entry) -> None:
        m = mets.get("03")
        v = float(_get(m, key, nb="03"))
        e.estimate = Estimate(v, None, None, int(m.get("n_draws", 0) or 0))
        e.verdict = REPRODUCED if v >= 1.0 else NOT_REPRODUCED
        binds = m.get(binds_key)
        e.ours = f"{what} in {v:.1%} of random draws" + (
            f" (a failure constraint binds in {binds:.1%})" if isinstance(binds, (int, float)) and key.startswith("strict")
            else "")
    return measure


def _exact_bool(key: str) -> Callable:
    def measure(mets, e: Entry) -> None:
        holds = bool(_get(mets.get("03"), key, nb="03"))
        e.verdict = REPRODUCED if holds else NOT_REPRODUCED
        e.ours = ("inclusion holds at every grid point" if holds
                  else "counterexample: grid points inside the FA-IRL sublevel set but outside the standard one")
    return measure


# --- pair mix (notebook 06) ------------------------------------------------------------------------


def pair_mix_seed_table(metrics: Mapping | None, nb: str = "06") -> dict[str, dict[float, list[float]]]:
    """``{method: {fraction: [training STARC per seed]}}`` of the fractions notebook 06 ran."""
    block = _get(metrics, "pair_mix", nb=nb)
    out: dict[str, dict[float, list[float]]] = {}
    for frac, row in block.items():
        if not isinstance(row, Mapping) or row.get("status") == "skipped":
            continue
        for method, s in (row.get("methods") or {}).items():
            seeds = _as_seed_list(s)
            if seeds:
                out.setdefault(method, {})[float(frac)] = seeds
    if not out:
        raise MissingMetrics(f"metrics of notebook {nb}: no pair-mix fraction was run")
    return out


MODERATE_FRACTION = 0.5  # "once T->NT pairs are present in moderate quantity": the lowest-STARC claim needs one


def _too_few_fractions(e: Entry, table: Mapping[str, Mapping[float, list[float]]]) -> None:
    """The sweep ran but too few fractions could be filled (scarce T->NT pairs): inconclusive here."""
    fr = sorted({f for v in table.values() for f in v})
    e.verdict = INCONCLUSIVE
    e.ours = f"only T->NT fraction(s) {', '.join(f'{f:g}' for f in fr)} could be run (too few T->NT pairs): no trend"
    e.details = {"fractions": fr}


def _measure_trend(mets, e: Entry) -> None:
    table = pair_mix_seed_table(mets.get("06"))
    slopes = {}
    for method, by_frac in table.items():
        xs = [f for f, v in by_frac.items() for _ in _clean(v)]
        ys = [y for v in by_frac.values() for y in _clean(v)]
        if len(set(xs)) >= 2:
            slopes[method] = slope_ci(xs, ys)
    if not slopes:
        _too_few_fractions(e, table)
        return
    verdicts = {m: verdict_from_ci(s, 0.0, -1) for m, s in slopes.items()}
    e.verdict = combine_verdicts(list(verdicts.values()))
    e.estimate = mean_ci([s.value for s in slopes.values()])
    e.ours = "; ".join(f"{m} {s.text('+.3f')}" for m, s in slopes.items())
    e.details = {"slopes": slopes, "part_verdicts": verdicts, "fractions": sorted({f for v in table.values() for f in v})}


def _measure_fastest(mets, e: Entry) -> None:
    table = pair_mix_seed_table(mets.get("06"))
    per_seed: dict[str, list[float]] = {}
    for method, by_frac in table.items():
        fracs = sorted(by_frac)
        if len(fracs) < 2:
            continue
        n = min(len(by_frac[f]) for f in fracs)
        per_seed[method] = [float(np.polyfit(fracs, [by_frac[f][s] for f in fracs], 1)[0]) for s in range(n)]
    if not per_seed:
        _too_few_fractions(e, table)
        return
    fa, base = _best(per_seed, FA_METHODS, False), _best(per_seed, BASELINES, False)
    if fa is None or base is None:
        raise MissingMetrics("metrics of notebook 06: FA-IRL or baseline slopes missing")
    est = diff_ci(per_seed[fa], per_seed[base])
    e.estimate, e.verdict = est, verdict_from_ci(est, 0.0, -1)
    e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]}"
    e.ours = (f"slope {mean_ci(per_seed[fa]).text('+.3f')} vs {mean_ci(per_seed[base]).text('+.3f')}; "
              f"difference {est.text('+.3f')}")
    e.details = {"per_seed_slopes": per_seed, "fa_method": fa, "baseline": base}


def _measure_lowest_at_top(mets, e: Entry) -> None:
    table = pair_mix_seed_table(mets.get("06"))
    top = max(f for v in table.values() for f in v)
    if top < MODERATE_FRACTION:
        e.verdict = INCONCLUSIVE
        e.ours = (f"the largest T->NT fraction that could be run is {top:g} (< {MODERATE_FRACTION:g}): too few "
                  "T->NT pairs at this scale to test the claim")
        e.details = {"fraction": top}
        return
    vals = {m: v[top] for m, v in table.items() if top in v}
    fa, base = _best(vals, FA_METHODS, False), _best(vals, BASELINES, False)
    if fa is None or base is None:
        raise MissingMetrics("metrics of notebook 06: FA-IRL or baseline STARC missing at the largest fraction")
    est = diff_ci(vals[fa], vals[base])
    e.estimate, e.verdict = est, verdict_from_ci(est, 0.0, -1)
    e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]} at T->NT fraction {top:g}"
    e.ours = f"{mean_ci(vals[fa]).text()} vs {mean_ci(vals[base]).text()}; difference {est.text('+.3f')}"
    e.details = {"fraction": top, "fa_method": fa, "baseline": base}


# --- model size (notebook 07) ----------------------------------------------------------------------


def _size_block(metrics: Mapping | None, nb: str) -> dict[str, Mapping]:
    """``{size_lm: row}``: rows under ``sizes``/``by_size``/``per_size``, else the top-level entries that
    hold ``accuracy`` or ``starc`` (notebook 07 writes ``{size_lm: {params_millions, accuracy, starc, ...}}``)."""
    if metrics is None:
        raise MissingMetrics(f"no metrics file of notebook {nb} (not run)")
    try:
        block = _first(metrics, [("sizes",), ("by_size",), ("per_size",)], nb)
    except MissingMetrics:
        block = metrics
    rows = {str(k): v for k, v in (block or {}).items()
            if isinstance(v, Mapping) and any(a in v for a in ("accuracy", "acc", "starc"))}
    if not rows:
        raise MissingMetrics(f"metrics of notebook {nb}: no per-size accuracy / STARC")
    return rows


def params_millions(name: str, row: Mapping) -> float:
    """A model's size in millions of parameters: ``params_m``/``params`` in its row, else from its
    name (``smollm2-135m`` -> 135)."""
    for k in ("params_millions", "params_m", "size_m"):
        if isinstance(row.get(k), (int, float)):
            return float(row[k])
    for k in ("params", "n_params"):
        if isinstance(row.get(k), (int, float)):
            v = float(row[k])
            return v / 1e6 if v > 1e4 else v
    tail = name.lower().split("-")[-1]
    num = tail[:-1] if tail.endswith(("m", "b")) else tail
    try:
        return float(num) * (1000 if tail.endswith("b") else 1)
    except ValueError:
        return math.nan


def _leaf_sample(row: Mapping, metric: str) -> Sample | None:
    for alias in METRIC_ALIASES.get(metric, (metric,)):
        if alias in row:
            return sample_from_leaf(row[alias])
    return None


def _measure_size(mets, e: Entry) -> None:
    block = _size_block(mets.get("07"), "07")
    sized = sorted(((params_millions(k, v), k, v) for k, v in block.items()),
                   key=lambda t: (t[0] if math.isfinite(t[0]) else math.inf, t[1]))
    upto = [t for t in sized if math.isfinite(t[0]) and t[0] <= 360] or sized
    e.details = {"sizes": [t[1] for t in sized]}
    if len(upto) < 2:
        e.verdict = INCONCLUSIVE
        e.ours = f"only one model size up to 360M ({upto[0][1]}): no trend to test"
        return
    (_, small, rs), (_, large, rl) = upto[0], upto[-1]
    parts, verdicts = {}, []
    for metric, direction in (("accuracy", +1), ("starc", -1)):
        a, b = _leaf_sample(rl, metric), _leaf_sample(rs, metric)
        if a and b:
            est = sample_diff(a, b, paired=False)
            parts[metric] = est
            verdicts.append(verdict_from_ci(est, 0.0, direction))
    if not parts:
        raise MissingMetrics("metrics of notebook 07: per-size accuracy / STARC missing")
    e.verdict = combine_verdicts(verdicts)
    e.compared = f"{large} vs {small}"
    e.ours = "; ".join(f"{k} {large} - {small} = {v.text('+.3f')}" for k, v in parts.items())
    e.estimate = parts.get("accuracy") or parts.get("starc")
    e.details["differences"] = parts


# --- re-RLHF (notebook 08) -------------------------------------------------------------------------


RERLHF_ARMS = {"ground_truth": ("ground_truth", "gt", "ground-truth"), "fa_irl": ("fa_irl", "fa", "me_fa_margin"),
               "irl": ("irl", "me_irl", "standard_irl")}


def rerlhf_rates(metrics: Mapping | None, nb: str = "08") -> dict[str, tuple[float, int | None, int | None]]:
    """``{arm: (toxicity rate, n_toxic, n)}`` of the three re-RLHF arms (counts None if only a rate)."""
    if metrics is None:
        raise MissingMetrics(f"no metrics file of notebook {nb} (not run)")
    try:
        block = _first(metrics, [("toxicity",), ("arms",), ("rerlhf",), ("final_toxicity",)], nb)
    except MissingMetrics:
        block = metrics  # notebook 08 writes {kind: {toxicity_rate_final, n_completions_final, ...}}
    out = {}
    for arm, names in RERLHF_ARMS.items():
        name = next((n for n in names if isinstance(block, Mapping) and n in block), None)
        if name is None:
            continue
        v = block[name]
        if isinstance(v, Mapping):
            rate = next((v[k] for k in ("toxicity_rate_final", "toxicity_rate", "rate", "toxic_rate") if k in v), None)
            cnt, tot = v.get("n_toxic"), next((v[k] for k in ("n_completions_final", "n", "n_completions", "n_samples") if k in v), None)
            if rate is None and cnt is not None and tot:
                rate = cnt / tot
            if cnt is None and rate is not None and tot:
                cnt = round(float(rate) * tot)
            if rate is None:
                continue
            out[arm] = (float(rate), None if cnt is None else int(cnt), None if tot is None else int(tot))
        elif isinstance(v, (int, float)):
            out[arm] = (float(v), None, None)
    if len(out) < 3:
        raise MissingMetrics(f"metrics of notebook {nb}: re-RLHF toxicity of {sorted(set(RERLHF_ARMS) - set(out))} missing")
    return out


def _measure_rerlhf(mets, e: Entry) -> None:
    r = rerlhf_rates(mets.get("08"))
    parts, verdicts = {}, []
    for hi, lo in (("fa_irl", "ground_truth"), ("irl", "fa_irl")):
        (ph, kh, nh), (pl, kl, nl) = r[hi], r[lo]
        est = rate_diff_ci(kh, nh, kl, nl) if None not in (kh, nh, kl, nl) and nh and nl else Estimate(ph - pl)
        parts[f"{hi} - {lo}"] = est
        verdicts.append(verdict_from_ci(est, 0.0, +1))
    e.verdict = combine_verdicts(verdicts)
    e.ours = (f"{r['ground_truth'][0]:.1%} / {r['fa_irl'][0]:.1%} / {r['irl'][0]:.1%}; "
              + "; ".join(f"{k} = {v.text('+.3f')}" for k, v in parts.items()))
    e.estimate = parts["irl - fa_irl"]
    e.details = {"rates": {k: {"rate": v[0], "n_toxic": v[1], "n": v[2]} for k, v in r.items()},
                 "differences": parts, "part_verdicts": verdicts}


_P2, _P3 = PAPER_TABLE2_TEST, PAPER_TABLE3_TEST
CLAIMS: tuple[Claim, ...] = (
    Claim("table1_f1", "FA-IRL beats the IRL baselines on F1", "Table 1, Sec. 6", ("05", "04"), _paper_table1("f1"),
          "paired difference over seeds, best FA-IRL variant - best baseline: 95% t interval > 0",
          _table1("f1")),
    Claim("table1_auc", "FA-IRL beats the IRL baselines on ROC-AUC", "Table 1, Sec. 6", ("05", "04"),
          _paper_table1("auc"), "paired difference over seeds, best FA-IRL variant - best baseline: 95% t interval > 0",
          _table1("auc")),
    Claim("table1_starc", "FA-IRL lowers STARC (a more faithful reward)", "Table 1, Sec. 6", ("05", "04"),
          _paper_table1("starc") + "; the text's 'margin variant lowest' contradicts the table",
          "paired difference over seeds, best FA-IRL variant - best baseline: 95% t interval < 0",
          _table1("starc")),
    Claim("jigsaw_f1", "FA-IRL beats the IRL baselines on F1 on the held-out Jigsaw set", "Sec. 6",
          ("05", "04"), "claimed in the text (no numbers given)",
          "as Table 1, on the Jigsaw held-out comments: 95% t interval > 0", _table1("f1", ("jigsaw",))),
    Claim("jigsaw_auc", "FA-IRL beats the IRL baselines on ROC-AUC on the held-out Jigsaw set", "Sec. 6",
          ("05", "04"), "claimed in the text (no numbers given)",
          "as Table 1, on the Jigsaw held-out comments: 95% t interval > 0", _table1("auc", ("jigsaw",))),
    Claim("jigsaw_starc", "FA-IRL lowers STARC on the held-out Jigsaw set", "Sec. 6", ("05", "04"),
          "claimed in the text (no numbers given)",
          "as Table 1, on the Jigsaw held-out comments: 95% t interval < 0", _table1("starc", ("jigsaw",))),
    Claim("seed_variance", "FA-IRL lowers the variance across seeds", "Sec. 6, Corollary 1", ("05", "04"),
          "stated without a test; Table 1 STARC std ME FA-IRL (margin) 0.011 vs ME IRL 0.003",
          "variance ratio of per-seed STARC, FA-IRL (margin) / same-family baseline: 95% F interval < 1 "
          "(MM and ME must agree)", _measure_variance),
    Claim("table2_disagreement", "FA-IRL is uniquely right more often than the baseline", "Table 2", ("05", "04"),
          f"only FA-IRL {_P2['only_fa']} vs only IRL {_P2['only_irl']} "
          f"(share {_P2['only_fa'] / (_P2['only_fa'] + _P2['only_irl']):.2f})",
          "share only-FA / (only-FA + only-IRL) on the held-out test set: 95% exact (Clopper-Pearson) interval > 1/2 (the exact sign test)",
          _measure_table2),
    Claim("table3_subtypes", "... and on every toxicity subtype", "Table 3", ("05", "04"),
          "; ".join(f"{k} {a} vs {b}" for k, (a, b) in _P3.items()),
          "per subtype as Table 2; reproduced only if every subtype is a clear win, not reproduced if any is a "
          "clear loss", _measure_table3),
    Claim("theorem1_inclusion", "Theorem 1: failure constraints never enlarge the feasible set", "Sec. 4.4, App. B",
          ("03",), "proved for every constraint set", "exact: share of random draws where no ambiguity measure "
          "grows must be 1", _exact_share("never_larger_fraction", "never larger"),
          ("fig2_feasible_cone", "fig2b_ambiguity_over_draws")),
    Claim("theorem1_strict", "Theorem 1: strict inclusion for any non-empty failure set", "Sec. 4.4",
          ("03",), "claimed for every non-empty failure set", "exact: share of draws where the feasible area "
          "strictly shrinks must be 1, with failures drawn at random (any non-empty failure set)",
          _exact_share("strictly_smaller_fraction_random_failures", "strictly smaller", "frac_binds_random_failures"),
          ("fig2b_ambiguity_over_draws",)),
    Claim("appb_upweight", "App. B: up-weighted failures (w_fail > 1) shrink the max-entropy sublevel sets",
          "App. B", ("03",), "proved: L_FA >= L_base pointwise", "exact check on a grid of reward parameters",
          _exact_bool("maxent_upweight_inclusion_holds"), ("fig2c_maxent_sublevel_sets",)),
    Claim("appb_sharpen", "App. B: sharpened failures (tau_fail < tau) shrink the max-entropy sublevel sets",
          "App. B", ("03",), "proved: L_FA >= L_base pointwise", "exact check on a grid of reward parameters",
          _exact_bool("maxent_sharpen_inclusion_holds"), ("fig2c_maxent_sublevel_sets",)),
    Claim("fig4_trend", "STARC falls as the share of T->NT pairs grows", "App. D, Figure 4", ("06",),
          "decreasing curves for all methods (no numbers given)",
          "per method: slope of training STARC on the T->NT fraction (all seeds), 95% t interval < 0; "
          "every method must be clear", _measure_trend, ("fig4_pair_mix_starc",)),
    Claim("fig4_fastest", "FA-IRL improves fastest as T->NT pairs grow", "App. D, Figure 4", ("06",),
          "FA-IRL's curve falls most steeply", "per-seed slopes, steepest FA-IRL variant - steepest baseline: "
          "paired 95% t interval < 0", _measure_fastest, ("fig4_pair_mix_starc",)),
    Claim("fig4_lowest", "FA-IRL attains the lowest STARC once T->NT pairs are plentiful", "App. D, Figure 4",
          ("06",), "FA-IRL lowest at the largest fractions", "at the largest fraction run: best FA-IRL - best "
          "baseline STARC, paired 95% t interval < 0", _measure_lowest_at_top, ("fig4_pair_mix_starc",)),
    Claim("fig5_size", "FA-IRL improves with base-model size up to mid scale", "App. E, Figure 5", ("07",),
          "accuracy up and STARC down from 153M to 360M (a dip at 410M)",
          "largest size <= 360M - smallest size over seeds (Welch): accuracy > 0 and STARC < 0, both clear",
          _measure_size, ("fig5_model_size",)),
    Claim("rerlhf_order", "Re-RLHF toxicity: ground truth < FA-IRL < standard IRL", "Figure 3 right, Sec. 6",
          ("08",), f"{PAPER_RERLHF['ground_truth']:.0%} < {PAPER_RERLHF['fa_irl']:.0%} < {PAPER_RERLHF['irl']:.0%}",
          "Newcombe 95% intervals of FA-IRL - ground truth > 0 and IRL - FA-IRL > 0, both clear",
          _measure_rerlhf, ("fig3_right_rerlhf",)),
)
CLAIM_IDS = tuple(c.id for c in CLAIMS)


def evaluate_claim(claim: Claim, mets: Mapping[str, Mapping | None]) -> Entry:
    """One ledger entry; metrics that are missing give verdict "not run" and the reason in ``details``."""
    e = claim.entry()
    try:
        claim.measure(mets, e)
    except MissingMetrics as err:
        e.verdict, e.ours, e.estimate = NOT_RUN, "-", None
        e.details = {"missing": str(err.args[0]) if err.args else "metrics missing"}
    except (KeyError, TypeError, ValueError, IndexError) as err:  # a metrics layout this ledger cannot read
        e.verdict, e.ours, e.estimate = NOT_RUN, "-", None
        e.details = {"missing": f"metrics of notebook {'/'.join(claim.notebooks)} unreadable here "
                                f"({type(err).__name__}: {err})"}
    if e.verdict not in VERDICTS:
        raise ValueError(f"claim {claim.id} produced an unknown verdict {e.verdict!r}")
    return e


def build_ledger(mets: Mapping[str, Mapping | None], claims: Sequence[Claim] = CLAIMS) -> list[Entry]:
    """Every claim evaluated against ``mets`` (``{"03": metrics dict, ...}``; absent notebooks missing)."""
    return [evaluate_claim(c, mets) for c in claims]


def ledger_dict(ledger: Sequence[Entry]) -> dict[str, dict[str, Any]]:
    """``{claim id: {claim, paper, ours, estimate, verdict, ...}}`` (for metrics/09_reproduction_report.json)."""
    return {e.id: e.to_dict() for e in ledger}


def verdict_counts(ledger: Sequence[Entry]) -> dict[str, int]:
    return {v: sum(e.verdict == v for e in ledger) for v in VERDICTS}


# ============================================================================ reading results, writing REPORT.md


def load_metrics(results_dir: str | Path, exclude: Iterable[str] = ("09",)) -> dict[str, dict]:
    """``{notebook number: metrics dict}`` from ``<results_dir>/metrics/NN_*.json`` (the newest stem per
    number wins; unreadable files are skipped with their error recorded under ``"_errors"``)."""
    folder = Path(results_dir) / "metrics"
    out: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for path in sorted(folder.glob("[0-9][0-9]_*.json")):
        nb = path.name[:2]
        if nb in exclude:
            continue
        try:
            out[nb] = json.loads(path.read_text())
            out[nb]["_file"] = path.name
        except (OSError, json.JSONDecodeError) as err:
            errors[path.name] = str(err)
    if errors:
        out["_errors"] = errors  # type: ignore[assignment]
    return out


def run_context(cfg, results_dir: str | Path | None = None) -> dict[str, Any]:
    """What the report rests on: profile, models, data sizes, seeds (config) and the run record (run.json)."""
    res = Path(results_dir or cfg.results_dir)
    run = {}
    if (res / "run.json").exists():
        try:
            run = json.loads((res / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            run = {}
    m, d, p, pm, irl = cfg.models, cfg.data, cfg.pairs, cfg.pairmix, cfg.irl
    return {
        "profile": cfg.profile, "description": cfg.description, "seed": cfg.seed,
        "models": {"base_lm": m.base_lm, "size_lms": list(m.size_lms), "ground_truth": m.ground_truth,
                   "judge": m.judge, "subtypes": m.subtypes, "embedder": m.embedder},
        "data": {"n_pairs": p.n_pairs, "test_fraction": p.test_fraction, "jigsaw_n_toxic": d.jigsaw_n_toxic,
                 "jigsaw_n_nontoxic": d.jigsaw_n_nontoxic, "pair_prompt_toxicity": d.pair_prompt_toxicity,
                 "ppo_prompt_toxicity": d.ppo_prompt_toxicity, "pairmix_total_pairs": pm.total_pairs,
                 "pairmix_fractions": list(pm.fractions)},
        "irl": {"n_seeds": irl.n_seeds, "head": irl.head, "max_epochs": irl.max_epochs,
                "batch_size": irl.batch_size},
        "run": {"git_commit": run.get("git_commit"), "status": run.get("status"), "started": run.get("started"),
                "finished": run.get("finished"),
                "notebooks": {k: {"status": v.get("status"), "seconds": v.get("seconds")}
                              for k, v in (run.get("notebooks") or {}).items()}},
    }


_BADGE = {REPRODUCED: "✅ reproduced", NOT_REPRODUCED: "❌ not reproduced", INCONCLUSIVE: "❔ inconclusive",
          NOT_RUN: "⏸ not run"}


def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(ledger: Sequence[Entry], context: Mapping[str, Any], results_dir: str | Path | None = None,
                    mets: Mapping[str, Any] | None = None) -> str:
    """The REPORT.md text: what it rests on, the ledger table, per-claim notes and the figures (relative
    links ``figures/<name>.png``, only those that exist when ``results_dir`` is given)."""
    res = Path(results_dir) if results_dir else None
    c = verdict_counts(ledger)
    mdl, data, irl, run = context["models"], context["data"], context["irl"], context["run"]
    lines = [f"# Reproduction report · profile `{context['profile']}`", "",
             (f"*{context.get('description', '')}*. Every verdict below is computed by a rule from the metrics "
             "files of this run (`fairl_lib/analysis/report.py`); none is written by hand. Numbers from the `smoke` "
             "profile only prove that the pipeline runs: they are not results."), "",
             "**Summary:** " + ", ".join(f"{n} {v}" for v, n in c.items()) + f" (of {len(ledger)} claims).", "",
             "## What this rests on", "",
             (f"- Profile `{context['profile']}`, seed {context['seed']}; IRL: {irl['n_seeds']} seed(s) per method, "
             f"{irl['head']} head, up to {irl['max_epochs']} epochs, batch {irl['batch_size']}."),
             (f"- Models: base LM `{mdl['base_lm']}` (sizes compared: {', '.join(f'`{s}`' for s in mdl['size_lms'])}); "
             f"ground truth `{mdl['ground_truth']}`, judge `{mdl['judge']}`, subtypes `{mdl['subtypes']}`, "
             f"embedder `{mdl['embedder']}`."),
             (f"- Data: {data['n_pairs']} preference pairs targeted (test share {data['test_fraction']}), pair prompts "
             f"with toxicity > {data['pair_prompt_toxicity']}; Jigsaw held-out {data['jigsaw_n_toxic']} toxic + "
             f"{data['jigsaw_n_nontoxic']} non-toxic; pair mix: {data['pairmix_total_pairs']} pairs at T->NT "
             f"fractions {data['pairmix_fractions']}."),
             (f"- Run: commit `{run.get('git_commit') or 'unknown'}`, started {run.get('started') or '?'}, "
              + (f"status {run.get('status') or 'unknown'}, finished {run.get('finished')}."
                 if run.get("finished") else "in progress when this report was written (it is the run's last step)."))]
    if run.get("notebooks"):
        lines.append("- Notebooks: " + ", ".join(
            f"{k} ({v.get('status')}, {v.get('seconds')} s)" for k, v in sorted(run["notebooks"].items())) + ".")
    if mets is not None:
        present = sorted(k for k in mets if not k.startswith("_"))
        lines.append(f"- Metrics files read: {', '.join(mets[k].get('_file', k) for k in present) or 'none'}.")
    lines += ["", "## The ledger", "",
              "95% intervals in brackets: over seeds (t), exact binomial (sign test) for disagreement counts, Newcombe for rates.", "",
              "| claim | source | paper | ours | verdict |", "|---|---|---|---|---|"]
    for e in ledger:
        ours = e.ours if e.verdict != NOT_RUN else f"- ({e.details.get('missing', 'no metrics')})"
        if e.compared:
            ours = f"{e.compared}: {ours}"
        lines.append(f"| {_md(e.claim)} | {_md(e.source)} | {_md(e.paper)} | {_md(ours)} | {_BADGE[e.verdict]} |")
    lines += ["", "## Rules", ""]
    lines += [f"- **{_md(e.claim)}**: {_md(e.rule)}." for e in ledger]
    figs = []
    for e in ledger:
        for f in e.figures:
            if f not in figs and (res is None or (res / "figures" / f"{f}.png").exists()):
                figs.append(f)
    if figs:
        lines += ["", "## Figures", ""]
        lines += [f"![{f}](figures/{f}.png)" for f in figs]
    return "\n".join(lines) + "\n"


def write_report(cfg, results_dir: str | Path | None = None) -> tuple[list[Entry], str, Path]:
    """Build the ledger from ``results/<profile>/metrics`` and write ``results/<profile>/REPORT.md``."""

    res = Path(results_dir or cfg.results_dir)
    mets = load_metrics(res)
    ledger = build_ledger(mets)
    text = render_markdown(ledger, run_context(cfg, res), res, mets)
    path = atomic_write_text(res / "REPORT.md", text)
    return ledger, text, path
