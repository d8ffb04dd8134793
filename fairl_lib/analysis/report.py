"""The reproduction report (notebook 11): a ledger of the paper's claims, each set beside what we measured.

The report reads ONLY the metrics files ``results/<profile>/metrics/<stem>.json`` written by the other
notebooks (and links their figures), and only at the key paths :mod:`fairl_lib.analysis.schema`
declares for them (one path per number, one layout per leaf). A missing file makes the claims that need
it "not run"; a file that exists but lacks a key a claim reads stops the report with
:class:`MissingMetrics` naming the notebook and the key path (a stale file: rerun that notebook).

For every claim the ledger records the paper's figure, ours (a mean with a 95% confidence interval),
the smallest effect this run could have detected, and a **verdict computed by a rule** from the numbers;
nothing is hard-coded. A comparative claim (FA-IRL beats IRL, a trend, an ordering) can come out three
ways, so that a run can say no as well as yes:

==================  ========================================================================================
verdict             rule
==================  ========================================================================================
``reproduced``      the 95% interval of the tested quantity lies entirely on the side of the null (0, 1/2,
                    a ratio of 1) the paper claims; if it also stops short of the effect the paper reports,
                    the ledger line says the effect is smaller than the paper's
``contradicted``    the interval excludes the effect the paper reports: its end on the paper's side stops
                    short of it (Table 1 AUC: the upper end of FA-IRL - baseline lies below the paper's
                    +0.028). Where the paper gives no number, the effect is taken as the null: the interval
                    lies entirely on the other side
``inconclusive``    neither: the interval holds the null and the paper's effect alike (this run is too small
                    to tell them apart; see its detectable effect), or it cannot be formed (one seed, no
                    disagreements, too few fractions or sizes)
``not reproduced``  exact claims only (Theorem 1, App. B, checked without statistics): a counterexample
``not run``         the metrics file of a notebook the claim needs is missing
==================  ========================================================================================

A claim with several parts (both families, every subtype, both gaps of an ordering) is reproduced when
every part is, contradicted when any part is, else inconclusive.

Statistics (all 95%, two-sided):

- differences between methods are **paired over seeds** (runs of different methods with the same seed
  share init and minibatch order, ``fairl_lib.irl.grid``): Student-t interval of the mean same-seed
  difference (Table 1 from notebook 05's ``per_seed``; Figure 4's per-seed slopes and STARC); Welch's t
  only where nothing pairs the runs (Figure 5: different base LMs, different pairs);
- counts "only A correct" vs "only B correct" (Tables 2-3): exact (Clopper-Pearson) interval of the
  share ``only_A / (only_A + only_B)`` against 1/2, i.e. the exact sign test (McNemar style). Not
  Wilson's score interval: at a handful of disagreements it is anti-conservative (4 vs 0 gives
  Wilson [0.51, 1.00], a "win", where the exact two-sided sign test gives p = 0.125);
- variances across seeds: F-distribution interval of the variance ratio against 1;
- trends (Figure 4): least-squares slope of STARC against the T->NT fraction with its t interval;
- proportions (re-RLHF toxicity; the audit's before/after rates): Newcombe (Wilson hybrid) interval of a
  difference of two rates, the two samples taken as independent;
- "does not degrade" (the audit's other prompts): a non-inferiority test, the interval of the change
  against a stated margin (``[audit] rate_margin``, ``ppl_margin``) instead of 0.

The audit of notebook 10 tests three claims of Liu et al.'s explainable RLHF (abstract only, no numbers):
its explanation sets are small, unlearning them fixes more unsatisfactory responses than unlearning as many
random or nearest rollouts, and other prompts do not degrade.

**Smallest detectable effect.** Each comparative entry states the minimum detectable effect (MDE) of its
test: the true effect that the two-sided 5% test finds (its interval excludes the null) with 80% power at
this run's size. An "inconclusive" with an MDE far above the paper's effect says the run is too small; a
"contradicted" needs an MDE below it. Formulas (:func:`mde_t`, :func:`mde_z`):

- paired t over n seeds: ``(t_{0.975,n-1} + t_{0.80,n-1}) * sd_diff / sqrt(n)``;
- Welch t: ``(t_{0.975,v} + t_{0.80,v}) * sqrt(s_a^2/n_a + s_b^2/n_b)``, v the Welch-Satterthwaite degrees
  of freedom;
- slope t over n points: ``(t_{0.975,n-2} + t_{0.80,n-2}) * se(slope)``;
- sign test on d disagreements, as a share above 1/2 (normal approximation): ``(z_0.975 + z_0.80) * 0.5 /
  sqrt(d)``;
- difference of two rates: ``(z_0.975 + z_0.80) * sqrt(p (1 - p) (1/n1 + 1/n2))`` with p the pooled rate
  with one toxic and one non-toxic completion added to each arm, ``(k1 + k2 + 2) / (n1 + n2 + 4)``
  (Agresti-Caffo), so that zero counts still give a finite MDE;
- variance ratio (F test, d1 = n_a - 1, d2 = n_b - 1): the ratio ``F_{0.025}(d1, d2) / F_{0.80}(d1, d2)``;
  a true ratio at or below it is found with 80% power.

Which FA-IRL variant and which baseline a claim compares is part of the ledger entry ("compared"): for
Table 1 the best FA-IRL variant on the metric against the best baseline on it (the strongest baseline,
the paper's "outperforms both"), and the paper's effect is the same best-against-best gap of its Table 1;
Tables 2-3 and re-RLHF follow the paper's pairing (ME FA-IRL with IRL margin failures against ME IRL).
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
from fairl_lib.analysis import schema as S
from fairl_lib.artifacts import atomic_write_text
from fairl_lib.irl import BASELINES, FA_METHODS, METHOD_NAMES, method_label

REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
NOT_REPRODUCED, NOT_RUN = "not reproduced", "not run"
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN)
LEVEL = 0.95  # two-sided 95% intervals (tests at 5%)
POWER = 0.80  # the power of the smallest detectable effect

METHOD_LABELS = {m: method_label(m) for m in METHOD_NAMES}

# notebook number -> stem of every metrics file the schema describes (fairl_lib.analysis.schema)
NOTEBOOKS = {stem[:2]: stem for stem in S.NOTEBOOK_STEMS}

# The paper's numbers (fairl_lib.analysis.paper).
PAPER_TABLE1 = paper.TABLE1
PAPER_TABLE2_TEST = paper.TABLE2["jigsaw"]
PAPER_TABLE3_TEST = {("identity_attack" if k == "identity_hate" else k): v[1:] for k, v in paper.TABLE3["jigsaw"].items()}
PAPER_RERLHF = paper.RERLHF_RATES

# the tests, as the ledger names them
PAIRED_T, WELCH_T, ONE_T, SLOPE_T = "paired t", "Welch t", "t", "slope t"
SIGN_TEST, NEWCOMBE, F_RATIO = "exact sign test", "Newcombe", "F"


# ============================================================================ statistics


@dataclass(frozen=True)
class Estimate:
    """A point value with a 95% interval (``lo``/``hi`` None when it cannot be formed), its sample size, the
    test that gave the interval and that test's smallest detectable effect at 80% power (``mde``: an
    effect size in the value's units; for :data:`F_RATIO` the variance ratio found with 80% power)."""

    value: float
    lo: float | None = None
    hi: float | None = None
    n: int = 1
    mde: float | None = None
    test: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": _f(self.value), "ci95": None if self.lo is None else [_f(self.lo), _f(self.hi)], "n": self.n,
                "mde": _f(self.mde), "test": self.test}

    def text(self, fmt: str = ".3f") -> str:
        ci = "" if self.lo is None else f" [{self.lo:{fmt}}, {self.hi:{fmt}}]"
        return f"{self.value:{fmt}}{ci}"

    def mde_text(self, fmt: str = ".3f") -> str:
        """``"0.027 (paired t, n = 5)"``; ``"-"`` when no test could be formed."""
        if self.mde is None or not math.isfinite(self.mde):
            return "-"
        if self.test == F_RATIO:
            return f"ratio {self.mde:.2g} ({self.test}, n = {self.n})"
        return f"{self.mde:{fmt}} ({self.test}, n = {self.n})"


def _f(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _clean(values: Iterable) -> np.ndarray:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64).reshape(-1)
    return v[np.isfinite(v)]


def mde_t(se: float, dof: float, level: float = LEVEL, power: float = POWER) -> float:
    """Smallest effect a two-sided t test at ``1 - level`` finds with probability ``power``:
    ``(t_{(1+level)/2, dof} + t_{power, dof}) * se`` (paired t: ``se = sd_diff / sqrt(n)``, ``dof = n - 1``)."""
    return float((stats.t.ppf(0.5 + level / 2, dof) + stats.t.ppf(power, dof)) * se)


def mde_z(se: float, level: float = LEVEL, power: float = POWER) -> float:
    """The normal-approximation analogue of :func:`mde_t`: ``(z_{(1+level)/2} + z_power) * se``."""
    return float((stats.norm.ppf(0.5 + level / 2) + stats.norm.ppf(power)) * se)


def mean_ci(values: Iterable[float], level: float = LEVEL, test: str = ONE_T) -> Estimate:
    """Mean with a Student-t interval and its MDE (no interval for fewer than 2 values; zero spread is a
    point interval)."""
    v = _clean(values)
    if len(v) == 0:
        raise ValueError("mean_ci needs at least one finite value")
    m = float(v.mean())
    if len(v) < 2:
        return Estimate(m, None, None, len(v), None, test)
    se = float(v.std(ddof=1) / math.sqrt(len(v)))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * se)
    return Estimate(m, m - half, m + half, len(v), mde_t(se, len(v) - 1, level), test)


def paired_ci(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Estimate:
    """mean(a - b) over the positions where both are finite (position = seed), Student-t interval of the
    same-seed differences and its MDE ``(t_{0.975,n-1} + t_{0.80,n-1}) * sd_diff / sqrt(n)``."""
    a = np.asarray([np.nan if x is None else x for x in a], dtype=np.float64)
    b = np.asarray([np.nan if x is None else x for x in b], dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_ci needs one value per seed on both sides ({a.shape} vs {b.shape})")
    keep = np.isfinite(a) & np.isfinite(b)
    if not keep.any():
        raise ValueError("paired_ci needs a seed with finite values on both sides")
    return mean_ci(a[keep] - b[keep], level, test=PAIRED_T)


def _welch(ma: float, va: float, na: int, mb: float, vb: float, nb: int, level: float) -> Estimate:
    """ma - mb with Welch's t interval from means, sample variances (ddof = 1) and sizes."""
    d = ma - mb
    n = min(na, nb)
    if na < 2 or nb < 2:
        return Estimate(d, None, None, n, None, WELCH_T)
    sa, sb = va / na, vb / nb
    se = math.sqrt(sa + sb)
    if se == 0:
        return Estimate(d, d, d, n, 0.0, WELCH_T)
    dof = (sa + sb) ** 2 / (sa ** 2 / (na - 1) + sb ** 2 / (nb - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    return Estimate(d, d - half, d + half, n, mde_t(se, dof, level), WELCH_T)


def diff_ci(a: Sequence[float], b: Sequence[float], paired: bool = True, level: float = LEVEL) -> Estimate:
    """mean(a) - mean(b) with a 95% interval: :func:`paired_ci` when ``paired`` and the lengths match (one
    value per seed on both sides), else Welch's t."""
    if paired and len(a) == len(b):
        return paired_ci(a, b, level)
    a, b = _clean(a), _clean(b)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("diff_ci needs values on both sides")
    return _welch(float(a.mean()), float(a.var(ddof=1)) if len(a) > 1 else math.nan, len(a),
                  float(b.mean()), float(b.var(ddof=1)) if len(b) > 1 else math.nan, len(b), level)


def wilson_ci(k: int, n: int, level: float = LEVEL) -> Estimate:
    """A proportion k/n with the Wilson score interval."""
    if n <= 0:
        raise ValueError("wilson_ci needs n > 0")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n, None, "Wilson")


def sign_test_ci(k: int, n: int, level: float = LEVEL) -> Estimate:
    """A proportion k/n with the exact (Clopper-Pearson) interval: it excludes 1/2 exactly when the
    equal-tailed exact binomial (sign) test rejects p = 1/2 at ``1 - level``. MDE, as a share above 1/2:
    ``(z_0.975 + z_0.80) * 0.5 / sqrt(n)`` (normal approximation)."""
    if n <= 0:
        raise ValueError("sign_test_ci needs n > 0")
    a = 1 - level
    lo = float(stats.beta.ppf(a / 2, k, n - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(1 - a / 2, k + 1, n - k)) if k < n else 1.0
    return Estimate(k / n, lo, hi, n, mde_z(0.5 / math.sqrt(n), level), SIGN_TEST)


def rate_diff_ci(k1: int, n1: int, k2: int, n2: int, level: float = LEVEL) -> Estimate:
    """p1 - p2 with Newcombe's hybrid score interval (method 10). MDE: ``(z_0.975 + z_0.80) * sqrt(p (1 - p)
    (1/n1 + 1/n2))``, p = (k1 + k2 + 2) / (n1 + n2 + 4) (Agresti-Caffo: finite at zero counts)."""
    a, b = wilson_ci(k1, n1, level), wilson_ci(k2, n2, level)
    d = a.value - b.value
    lo = d - math.sqrt((a.value - a.lo) ** 2 + (b.hi - b.value) ** 2)
    hi = d + math.sqrt((a.hi - a.value) ** 2 + (b.value - b.lo) ** 2)
    p = (k1 + k2 + 2) / (n1 + n2 + 4)
    return Estimate(d, lo, hi, min(n1, n2), mde_z(math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2)), level), NEWCOMBE)


def variance_ratio_ci(a: Sequence[float], b: Sequence[float], level: float = LEVEL,
                      power: float = POWER) -> Estimate:
    """var(a) / var(b) over seeds with the F-distribution interval (normal errors assumed). MDE: the ratio
    ``F_{(1-level)/2}(d1, d2) / F_power(d1, d2)`` that the F test finds below 1 with probability ``power``."""
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("variance_ratio_ci needs at least 2 values on each side")
    va, vb = a.var(ddof=1), b.var(ddof=1)
    d1, d2 = len(a) - 1, len(b) - 1
    mde = float(stats.f.ppf(0.5 - level / 2, d1, d2) / stats.f.ppf(power, d1, d2))
    if vb == 0:
        return Estimate(math.inf if va > 0 else 1.0, None, None, min(len(a), len(b)), mde, F_RATIO)
    r = float(va / vb)
    lo = r / float(stats.f.ppf(0.5 + level / 2, d1, d2))
    hi = r / float(stats.f.ppf(0.5 - level / 2, d1, d2))
    return Estimate(r, lo, hi, min(len(a), len(b)), mde, F_RATIO)


def slope_ci(x: Sequence[float], y: Sequence[float], level: float = LEVEL) -> Estimate:
    """Least-squares slope of y on x with its t interval and MDE (needs >= 3 points and >= 2 distinct x)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ValueError("slope_ci needs at least two distinct x values")
    res = stats.linregress(x, y)
    if len(x) < 3:
        return Estimate(float(res.slope), None, None, len(x), None, SLOPE_T)
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 2) * res.stderr)
    return Estimate(float(res.slope), float(res.slope) - half, float(res.slope) + half, len(x),
                    mde_t(float(res.stderr), len(x) - 2, level), SLOPE_T)


@dataclass(frozen=True)
class Sample:
    """One metric over seeds as a summary: ``mean``, sample ``sd`` (ddof = 1) and ``n`` (notebook 07 writes
    these per base LM; nothing pairs two LMs' runs, so their difference is Welch's)."""

    mean: float
    sd: float | None = None
    n: int = 1

    def ci(self, level: float = LEVEL) -> Estimate:
        if self.sd is None or self.n < 2 or not math.isfinite(self.sd):
            return Estimate(self.mean, None, None, self.n, None, ONE_T)
        se = self.sd / math.sqrt(self.n)
        half = float(stats.t.ppf(0.5 + level / 2, self.n - 1) * se)
        return Estimate(self.mean, self.mean - half, self.mean + half, self.n, mde_t(se, self.n - 1, level), ONE_T)


def sample_diff(a: Sample, b: Sample, level: float = LEVEL) -> Estimate:
    """a - b with Welch's t from the summaries (no interval if either side has a single seed)."""
    if a.sd is None or b.sd is None:
        return Estimate(a.mean - b.mean, None, None, min(a.n, b.n), None, WELCH_T)
    return _welch(a.mean, a.sd ** 2, a.n, b.mean, b.sd ** 2, b.n, level)


def _oriented(est: Estimate, null: float, direction: int) -> tuple[float, float]:
    """The interval as distances from ``null`` towards the side the paper claims (positive = its side)."""
    return (est.lo - null, est.hi - null) if direction > 0 else (null - est.hi, null - est.lo)


def _paper_gap(paper_value: float | None, null: float, direction: int) -> float:
    """The paper's effect as a distance from ``null`` on its claimed side (0 when the paper gives none, or
    when its own number is not on that side)."""
    return 0.0 if paper_value is None else max(0.0, (paper_value - null) * direction)


def verdict_from_ci(est: Estimate | None, null: float = 0.0, direction: int = +1,
                    paper_value: float | None = None) -> str:
    """The verdict rule of a comparative claim. ``direction=+1``: the paper claims the quantity is above
    ``null``; ``-1``: below. ``paper_value``: the paper's own value of the quantity (a difference, a share,
    a ratio), None when it gives none.

    Interval entirely on the claimed side -> reproduced; its end on the paper's side short of the paper's
    value (with no value: entirely on the other side) -> contradicted; otherwise, or no interval ->
    inconclusive; no estimate -> not run.
    """
    if est is None:
        return NOT_RUN
    if est.lo is None or est.hi is None:
        return INCONCLUSIVE
    lo, hi = _oriented(est, null, direction)
    if lo > 0:
        return REPRODUCED
    if hi < _paper_gap(paper_value, null, direction):
        return CONTRADICTED
    return INCONCLUSIVE


def below_paper(est: Estimate | None, null: float, direction: int, paper_value: float | None) -> bool:
    """True when the interval lies on the claimed side but stops short of the paper's effect (reproduced
    in direction, smaller in size)."""
    if est is None or est.lo is None or paper_value is None:
        return False
    lo, hi = _oriented(est, null, direction)
    return lo > 0 and hi < _paper_gap(paper_value, null, direction)


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """All parts must hold: any not-run -> not run; any contradicted -> contradicted; any failed exact
    part -> not reproduced; all reproduced -> reproduced; else inconclusive."""
    if not verdicts or NOT_RUN in verdicts:
        return NOT_RUN
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE


# ============================================================================ ledger entries


@dataclass
class Entry:
    """One claim of the ledger. ``paper_effect``: the paper's value of the tested quantity (the effect a
    "contradicted" excludes; None when it gives none); ``detectable``: the smallest effect the claim's
    test could detect in this run (80% power), as text."""

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
    paper_effect: float | None = None
    detectable: str = "-"
    details: dict[str, Any] = field(default_factory=dict)
    figures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "source": self.source, "notebook": self.notebook, "paper": self.paper,
                "ours": self.ours, "estimate": None if self.estimate is None else self.estimate.to_dict(),
                "paper_effect": _f(self.paper_effect), "detectable": self.detectable,
                "verdict": self.verdict, "compared": self.compared, "rule": self.rule,
                "details": _jsonable(self.details), "figures": list(self.figures)}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Estimate):
        return obj.to_dict()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
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


class NotRun(LookupError):
    """A notebook's metrics file is absent: every claim that needs it is "not run"."""


MissingMetrics = S.MissingMetrics  # a file that exists lacks a key a claim reads: the ledger fails, naming it


def _file(mets: Mapping[str, Mapping | None], nb: str) -> Mapping:
    m = mets.get(nb)
    if m is None:
        raise NotRun(f"no metrics file {NOTEBOOKS.get(nb, nb)}.json (notebook not run)")
    return m


def _read(mets: Mapping[str, Mapping | None], nb: str, pattern: str, **values: Any) -> Any:
    """The value at the schema's key path ``pattern`` of notebook ``nb`` (:func:`schema.get`): :class:`NotRun`
    when the file is absent, :class:`MissingMetrics` when the file lacks the key (never caught here)."""
    return S.get(_file(mets, nb), nb, pattern, **values)


def _keys(mets: Mapping[str, Mapping | None], nb: str, placeholder: str) -> list[str]:
    """The keys a schema placeholder stands for in notebook ``nb``'s file (``{size_lm}``: its base LMs)."""
    return S.placeholder_keys(_file(mets, nb), nb, placeholder)


def _num(x: Any) -> float:
    """A numeric leaf as a float; ``null`` (how NaN is written) -> NaN."""
    return math.nan if x is None else float(x)


def _no_numbers(e: Entry, why: str) -> None:
    """The metrics are there but hold nothing this claim can be tested on (too few seeds, fractions or
    sizes, or no finite values): inconclusive at this scale, with the reason."""
    e.verdict, e.ours, e.estimate = INCONCLUSIVE, why, None
    e.details = {"why": why}


def _judge(e: Entry, est: Estimate, null: float, direction: int, paper_value: float | None = None) -> str:
    """Set the entry's estimate, verdict, paper effect and detectable effect from one estimate; returns
    the note to append to ``ours`` when the effect is reproduced but smaller than the paper's."""
    e.estimate, e.paper_effect = est, paper_value
    e.verdict = verdict_from_ci(est, null, direction, paper_value)
    e.detectable = est.mde_text()
    if below_paper(est, null, direction, paper_value):
        e.details["below_paper_effect"] = True
        return f"; smaller than the paper's {paper_value:+.3f}"
    return ""


def _seed_array(values: Sequence[Any]) -> np.ndarray:
    return np.array([_num(x) for x in values], dtype=np.float64)


# --- Table 1 (notebook 05) -------------------------------------------------------------------------


def table1_seed_values(mets: Mapping[str, Mapping | None], metric: str, set_name: str, block: str = "per_seed",
                       ) -> tuple[list[Any], dict[str, np.ndarray]]:
    """``(seeds, {method: values})`` of one Table 1 metric on one set: ``<block>.{set}.{method}.{metric}``
    of notebook 05 (``per_seed``: the paper's hyper-parameters; ``per_seed_best``: best against best), one
    value per entry of ``<block>.seeds`` (NaN where undefined), so that position i of every method is the
    same seed."""
    seeds = list(_read(mets, "05", f"{block}.seeds"))
    out: dict[str, np.ndarray] = {}
    for m in METHOD_NAMES:
        v = _read(mets, "05", block + ".{set}.{method}.{metric}", set=set_name, method=m, metric=metric)
        if len(v) != len(seeds):
            raise S.MetricsLayoutError("05_tables", f"{block}.{set_name}.{m}.{metric}",
                                       f"{len(v)} values for the {len(seeds)} seeds of {block}.seeds")
        out[m] = _seed_array(v)
    return seeds, out


def _mean_of(v: Sample | Sequence[float]) -> float:
    if isinstance(v, Sample):
        return v.mean
    c = _clean(v)
    return float(c.mean()) if len(c) else math.nan


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
    (``{notebook number "03": metrics dict}``, absent notebooks missing); it raises :class:`NotRun` when
    a file it needs is absent and lets :class:`MissingMetrics` through when a file lacks a key.
    ``notebooks`` are the numbers of the files it reads.
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


def _paper_table1_best(metric: str) -> tuple[str, str]:
    higher = metric != "starc"
    fa = (max if higher else min)(FA_METHODS, key=lambda m: PAPER_TABLE1[m][metric][0])
    base = (max if higher else min)(BASELINES, key=lambda m: PAPER_TABLE1[m][metric][0])
    return fa, base


def paper_table1_effect(metric: str) -> float:
    """The paper's Table 1 gap on ``metric``: its best FA-IRL variant - its best baseline (F1 +0.042, AUC
    +0.028, STARC -0.058)."""
    fa, base = _paper_table1_best(metric)
    return round(PAPER_TABLE1[fa][metric][0] - PAPER_TABLE1[base][metric][0], 6)


def _paper_table1(metric: str) -> str:
    fa, base = _paper_table1_best(metric)
    a, b = PAPER_TABLE1[fa][metric][0], PAPER_TABLE1[base][metric][0]
    return f"{METHOD_LABELS[fa]} {a:.3f} vs {METHOD_LABELS[base]} {b:.3f} ({a - b:+.3f})"


def _table1(metric: str, set_name: str = "in_domain", block: str = "per_seed") -> Callable:
    """Table 1's claim on one metric and set. ``block="per_seed_best"`` (best against best) counts as
    FA-IRL only the FA variants whose tuned failure path acts; one that does not is its baseline under
    another name."""
    higher = metric != "starc"
    paper_value = paper_table1_effect(metric) if set_name == "in_domain" else None  # no Jigsaw numbers

    def measure(mets, e: Entry) -> None:
        seeds, vals = table1_seed_values(mets, metric, set_name, block)
        candidates = FA_METHODS
        if block == "per_seed_best":
            candidates = tuple(m for m in FA_METHODS
                               if _read(mets, "05", "per_seed_best.acting.{fa_method}", fa_method=m))
            if not candidates:
                _no_numbers(e, "no FA-IRL variant's tuned failure path acts: every one is its baseline")
                return
        fa, base = _best(vals, candidates, higher), _best(vals, BASELINES, higher)
        if fa is None or base is None:
            _no_numbers(e, f"no finite {metric} of an FA-IRL variant or of a baseline on {set_name}")
            return
        est = paired_ci(vals[fa], vals[base])
        e.notebook, e.compared = "05", f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]}"
        note = _judge(e, est, 0.0, +1 if higher else -1, paper_value)
        e.ours = (f"{mean_ci(vals[fa]).text()} vs {mean_ci(vals[base]).text()}; same-seed difference "
                  f"{est.text('+.3f')} ({est.n} seeds){note}")
        e.details.update({"fa_method": fa, "baseline": base, "interval": PAIRED_T, "seeds": seeds,
                          "differences": vals[fa] - vals[base],
                          "all_methods": {m: mean_ci(v) for m, v in vals.items() if len(_clean(v))}})
    return measure


def _measure_variance(mets, e: Entry) -> None:
    _, vals = table1_seed_values(mets, "starc", "in_domain")
    parts, verdicts = {}, []
    for fam in ("me", "mm"):
        fa, base = f"{fam}_fa_margin", f"{fam}_irl"
        if len(_clean(vals[fa])) >= 2 and len(_clean(vals[base])) >= 2:
            est = variance_ratio_ci(vals[fa], vals[base])
            parts[f"{fa} / {base}"] = est
            verdicts.append(verdict_from_ci(est, 1.0, -1))
    if not parts:
        _no_numbers(e, "fewer than 2 seeds per method: no variance across seeds")
        return
    e.notebook, e.verdict = "05", combine_verdicts(verdicts)
    e.estimate = next(iter(parts.values()))
    e.compared = ", ".join(parts)
    e.ours = "; ".join(f"variance ratio {k} = {v.text('.2f')}" for k, v in parts.items())
    e.detectable = "; ".join(f"{k.split(' / ')[0][:2].upper()}: {v.mde_text()}" for k, v in parts.items())
    e.details = {"variance_ratios": parts, "part_verdicts": verdicts,
                 "seed_dispersion": {m: _read(mets, "05", "seed_dispersion.{method}", method=m) for m in METHOD_NAMES}}


# --- Tables 2-3 (notebook 05): the held-out Jigsaw comments -----------------------------------------


def _share(only_fa: int, only_irl: int) -> float:
    return only_fa / (only_fa + only_irl)


PAPER_TABLE2_SHARE = _share(PAPER_TABLE2_TEST["only_fa"], PAPER_TABLE2_TEST["only_irl"])
PAPER_TABLE3_SHARE = {s: _share(v[1], v[2]) for s, v in paper.TABLE3["jigsaw"].items()}


def _sign(only_fa: int, only_irl: int, paper_share: float | None) -> tuple[Estimate | None, str]:
    n = only_fa + only_irl
    if n == 0:
        return None, INCONCLUSIVE
    est = sign_test_ci(only_fa, n)
    return est, verdict_from_ci(est, 0.5, +1, paper_share)


def _measure_table2(mets, e: Entry) -> None:
    c = {k: int(_read(mets, "05", "table2.{split}.{count}", split="jigsaw", count=k))
         for k in ("only_fa", "only_irl", "both", "neither")}
    e.notebook, e.paper_effect = "05", PAPER_TABLE2_SHARE
    e.compared = f"{METHOD_LABELS['me_fa_margin']} vs {METHOD_LABELS['me_irl']}"
    e.details = {"counts": c}
    est, _ = _sign(c["only_fa"], c["only_irl"], PAPER_TABLE2_SHARE)
    if est is None:
        e.verdict, e.detectable = INCONCLUSIVE, "- (no disagreements)"
        e.ours = f"only FA-IRL {c['only_fa']} vs only IRL {c['only_irl']} (no disagreements)"
        return
    note = _judge(e, est, 0.5, +1, PAPER_TABLE2_SHARE)
    e.detectable = f"share 1/2 + {est.mde_text('.3f')}"
    e.ours = f"only FA-IRL {c['only_fa']} vs only IRL {c['only_irl']} (share {est.text('.2f')}){note}"


def _measure_table3(mets, e: Entry) -> None:
    parts, verdicts = {}, []
    for sub in S.SUBTYPES:
        a = int(_read(mets, "05", "table3.jigsaw.{subtype}.only_fa", subtype=sub))
        b = int(_read(mets, "05", "table3.jigsaw.{subtype}.only_irl", subtype=sub))
        est, v = _sign(a, b, PAPER_TABLE3_SHARE[sub])
        parts[sub] = {"only_fa": a, "only_irl": b, "share": est, "paper_share": PAPER_TABLE3_SHARE[sub], "verdict": v}
        verdicts.append(v)
    e.notebook, e.verdict = "05", combine_verdicts(verdicts)
    e.compared = f"{METHOD_LABELS['me_fa_margin']} vs {METHOD_LABELS['me_irl']}"
    e.ours = "; ".join(f"{k} {p['only_fa']} vs {p['only_irl']} ({p['verdict']})" for k, p in parts.items())
    e.detectable = ("; ".join(f"{k} " + (f"1/2 + {p['share'].mde:.2f} (n = {p['share'].n})" if p["share"] else "-")
                              for k, p in parts.items()) + " (share, exact sign test)"
                    if any(p["share"] for p in parts.values()) else "- (no disagreements)")
    e.details = {"subtypes": parts}


# --- theory toy (notebook 03) ----------------------------------------------------------------------


def _exact_share(key: str, what: str, binds_key: str | None = None) -> Callable:
    def measure(mets, e: Entry) -> None:
        v = float(_read(mets, "03", key))
        e.estimate = Estimate(v, None, None, int(_read(mets, "03", "n_draws") or 0))
        e.verdict = REPRODUCED if v >= 1.0 else NOT_REPRODUCED
        e.detectable = "exact check"
        binds = _read(mets, "03", binds_key) if binds_key else None
        e.ours = f"{what} in {v:.1%} of random draws" + (
            f" (a failure constraint binds in {binds:.1%})" if isinstance(binds, (int, float)) else "")
    return measure


def _exact_bool(key: str) -> Callable:
    def measure(mets, e: Entry) -> None:
        holds = bool(_read(mets, "03", key))
        e.verdict = REPRODUCED if holds else NOT_REPRODUCED
        e.detectable = "exact check"
        e.ours = ("inclusion holds at every grid point" if holds
                  else "counterexample: grid points inside the FA-IRL sublevel set but outside the standard one")
    return measure


# --- pair mix (notebook 06) ------------------------------------------------------------------------


def pair_mix_seed_table(metrics: Mapping[str, Any]) -> dict[str, dict[float, list[float]]]:
    """``{method: {fraction: [training STARC per seed]}}`` of the fractions notebook 06 ran, from its
    metrics dict (``pair_mix.{fraction}.methods.{pm_method}.per_seed``, seeds in order); empty when no
    fraction could be run."""
    out: dict[str, dict[float, list[float]]] = {}
    for frac in S.placeholder_keys(metrics, "06", "fraction"):
        for method in S.placeholder_keys(metrics, "06", "pm_method"):
            seeds = [_num(x) for x in S.get(metrics, "06", "pair_mix.{fraction}.methods.{pm_method}.per_seed",
                                            fraction=frac, pm_method=method)]
            if len(_clean(seeds)):
                out.setdefault(method, {})[float(frac)] = seeds
    return out


MODERATE_FRACTION = 0.5  # "once T->NT pairs are present in moderate quantity": the lowest-STARC claim needs one


def _too_few_fractions(e: Entry, table: Mapping[str, Mapping[float, list[float]]]) -> None:
    """The sweep ran but too few fractions could be filled (scarce T->NT pairs): inconclusive here."""
    fr = sorted({f for v in table.values() for f in v})
    e.verdict = INCONCLUSIVE
    e.ours = (f"only T->NT fraction(s) {', '.join(f'{f:g}' for f in fr)} could be run (too few T->NT pairs): no trend"
              if fr else "no T->NT fraction could be run (too few T->NT pairs)")
    e.details = {"fractions": fr}


def _measure_trend(mets, e: Entry) -> None:
    table = pair_mix_seed_table(_file(mets, "06"))
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
    mdes = sorted(s.mde for s in slopes.values() if s.mde is not None)
    ns = sorted({s.n for s in slopes.values()})
    span = lambda v, fmt: f"{v[0]:{fmt}}" if v[0] == v[-1] else f"{v[0]:{fmt}}-{v[-1]:{fmt}}"
    e.detectable = f"slope {span(mdes, '.3f')} per method ({SLOPE_T}, n = {span(ns, 'd')})" if mdes else "-"
    e.details = {"slopes": slopes, "part_verdicts": verdicts, "fractions": sorted({f for v in table.values() for f in v})}


def _measure_fastest(mets, e: Entry) -> None:
    table = pair_mix_seed_table(_file(mets, "06"))
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
        _no_numbers(e, "no slope of an FA-IRL variant or of a baseline")
        return
    est = diff_ci(per_seed[fa], per_seed[base])
    _judge(e, est, 0.0, -1)
    e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]}"
    e.ours = (f"slope {mean_ci(per_seed[fa]).text('+.3f')} vs {mean_ci(per_seed[base]).text('+.3f')}; "
              f"difference {est.text('+.3f')}")
    e.details = {"per_seed_slopes": per_seed, "fa_method": fa, "baseline": base}


def _measure_lowest_at_top(mets, e: Entry) -> None:
    table = pair_mix_seed_table(_file(mets, "06"))
    if not table:
        _too_few_fractions(e, table)
        return
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
        _no_numbers(e, f"no STARC of an FA-IRL variant or of a baseline at T->NT fraction {top:g}")
        return
    est = diff_ci(vals[fa], vals[base])
    _judge(e, est, 0.0, -1)
    e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]} at T->NT fraction {top:g}"
    e.ours = f"{mean_ci(vals[fa]).text()} vs {mean_ci(vals[base]).text()}; difference {est.text('+.3f')}"
    e.details = {"fraction": top, "fa_method": fa, "baseline": base}


# --- model size (notebook 07) ----------------------------------------------------------------------


def _size_sample(mets, size_lm: str, metric: str) -> Sample | None:
    """The headline method's ``{size_lm}.{metric}``: mean, sample std (ddof = 1) and n over seeds."""
    kw = {"size_lm": size_lm}
    mean = _num(_read(mets, "07", f"{{size_lm}}.{metric}.mean", **kw))
    sd = _num(_read(mets, "07", f"{{size_lm}}.{metric}.std", **kw))
    n = int(_read(mets, "07", f"{{size_lm}}.{metric}.n", **kw) or 1)
    if not math.isfinite(mean):
        return None
    return Sample(mean, sd if math.isfinite(sd) and n >= 2 else None, n)


def _measure_size(mets, e: Entry) -> None:
    sized = sorted(((_num(_read(mets, "07", "{size_lm}.params_millions", size_lm=lm)), lm)
                    for lm in _keys(mets, "07", "size_lm")),
                   key=lambda t: (t[0] if math.isfinite(t[0]) else math.inf, t[1]))
    upto = [t for t in sized if math.isfinite(t[0]) and t[0] <= 360] or sized
    e.details = {"sizes": [t[1] for t in sized]}
    if len(upto) < 2:
        e.verdict = INCONCLUSIVE
        e.ours = (f"only one model size up to 360M ({upto[0][1]}): no trend to test" if upto
                  else "no model size was run")
        return
    (_, small), (_, large) = upto[0], upto[-1]
    parts, verdicts = {}, []
    for metric, direction in (("accuracy", +1), ("starc", -1)):
        a, b = _size_sample(mets, large, metric), _size_sample(mets, small, metric)
        if a and b:
            est = sample_diff(a, b)
            parts[metric] = est
            verdicts.append(verdict_from_ci(est, 0.0, direction))
    if not parts:
        _no_numbers(e, f"no finite accuracy or STARC of {large} and {small}")
        return
    e.verdict = combine_verdicts(verdicts)
    e.compared = f"{large} vs {small}"
    e.ours = "; ".join(f"{k} {large} - {small} = {v.text('+.3f')}" for k, v in parts.items())
    e.estimate = parts.get("accuracy") or parts.get("starc")
    e.detectable = "; ".join(f"{k} {v.mde_text()}" for k, v in parts.items())
    e.details["differences"] = parts


# --- re-RLHF (notebook 08) -------------------------------------------------------------------------


def rerlhf_rates(metrics: Mapping[str, Any]) -> dict[str, tuple[float, int | None, int | None]]:
    """``{arm: (toxicity rate, n_toxic, n)}`` of the three re-RLHF runs, from notebook 08's metrics dict:
    ``{arm}.toxicity_rate_final`` and ``{arm}.n_completions_final`` (``n_toxic`` = rate x n, rounded; None
    without completions)."""
    out = {}
    for arm in S.RERLHF_ARMS:
        rate = _num(S.get(metrics, "08", "{arm}.toxicity_rate_final", arm=arm))
        n = S.get(metrics, "08", "{arm}.n_completions_final", arm=arm)
        n = None if n is None else int(n)
        out[arm] = (rate, round(rate * n) if n and math.isfinite(rate) else None, n)
    return out


RERLHF_GAPS = (("fa_irl", "ground_truth"), ("irl", "fa_irl"))  # the paper's ordering gt < FA-IRL < IRL


def rerlhf_run_spread(metrics: Mapping[str, Any]) -> float:
    """The largest spread between training runs of one arm (max - min final rate; NaN: no arm has two)."""
    spreads = [_num(S.get(metrics, "08", "{arm}.between_run_spread", arm=arm)) for arm in S.RERLHF_ARMS]
    spreads = [x for x in spreads if math.isfinite(x)]
    return max(spreads) if spreads else math.nan


def run_variance_verdict(verdict: str, est: Estimate, paper_gap: float, spread: float) -> str:
    """The Newcombe verdict of a re-RLHF gap, checked against the variation between training runs.

    The interval covers the sampling of completions from *one* trained policy per run; training the
    same arm with another RLHF seed moves its rate too. A gap counts as decided (reproduced) only if it
    also exceeds the largest spread between two training runs of one arm, and as contradicted only if
    the paper's gap is further than that spread from ours; otherwise it is inconclusive. (The ground-truth
    arm has one run: the spread seen in the learned arms, same algorithm and steps, stands for it.)
    """
    if not math.isfinite(spread):
        return verdict
    if verdict == REPRODUCED and est.value <= spread:
        return INCONCLUSIVE
    if verdict == CONTRADICTED and abs(paper_gap - est.value) <= spread:
        return INCONCLUSIVE
    return verdict


def _measure_rerlhf(mets, e: Entry) -> None:
    m8 = _file(mets, "08")
    r, spread = rerlhf_rates(m8), rerlhf_run_spread(m8)
    parts, verdicts, paper_gaps, notes = {}, [], {}, []
    for hi, lo in RERLHF_GAPS:
        (ph, kh, nh), (pl, kl, nl) = r[hi], r[lo]
        est = rate_diff_ci(kh, nh, kl, nl) if None not in (kh, nh, kl, nl) and nh and nl else Estimate(ph - pl)
        key = f"{hi} - {lo}"
        paper_gaps[key] = round(PAPER_RERLHF[hi] - PAPER_RERLHF[lo], 6)
        parts[key] = est
        plain = verdict_from_ci(est, 0.0, +1, paper_gaps[key])
        verdicts.append(run_variance_verdict(plain, est, paper_gaps[key], spread))
        if verdicts[-1] != plain:
            notes.append(f"{key}: {plain} by its interval, but within the {spread:.3f} spread between training runs")
        elif below_paper(est, 0.0, +1, paper_gaps[key]):
            notes.append(f"{key} smaller than the paper's {paper_gaps[key]:+.3f}")
    e.verdict = combine_verdicts(verdicts)
    e.ours = (f"{r['ground_truth'][0]:.1%} / {r['fa_irl'][0]:.1%} / {r['irl'][0]:.1%}; "
              + "; ".join(f"{k} = {v.text('+.3f')}" for k, v in parts.items()) + "".join(f"; {n}" for n in notes))
    e.estimate = parts["irl - fa_irl"]
    e.paper_effect = paper_gaps["irl - fa_irl"]
    e.detectable = "; ".join(f"{k} {v.mde_text()}" for k, v in parts.items())
    if math.isfinite(spread):
        e.detectable += f"; between training runs of one arm the rate moved by up to {spread:.3f}"
    e.details = {"rates": {k: {"rate": v[0], "n_toxic": v[1], "n": v[2]} for k, v in r.items()},
                 "differences": parts, "paper_gaps": paper_gaps, "part_verdicts": verdicts,
                 "between_run_spread": spread}


# --- the audit of the expert (notebook 10; Liu et al., explainable RLHF) ----------------------------


def _audit_counts(mets, model: str, split: str, judge: bool = False) -> tuple[int, int]:
    """``(toxic, n)`` of one model and prompt set of notebook 10's evaluation (ground truth or judge)."""
    kw = {"audit_model": model, "audit_split": split}
    k = _read(mets, "10", "eval.{audit_model}.{audit_split}." + ("k_judge" if judge else "k_toxic"), **kw)
    return int(k), int(_read(mets, "10", "eval.{audit_model}.{audit_split}.n", **kw))


def _pct(k: int, n: int) -> str:
    return f"{k / n:.1%}" if n else "-"


def _measure_audit_small(mets, e: Entry) -> None:
    n, k = int(_read(mets, "10", "targets.n")), int(_read(mets, "10", "explain.n_small"))
    small, tol = int(_read(mets, "10", "explain.small_size")), float(_read(mets, "10", "explain.tol"))
    sizes = [int(s) for s in _read(mets, "10", "explain.sizes")]
    within = sum(bool(w) for w in _read(mets, "10", "explain.within_tol"))
    if n == 0:
        _no_numbers(e, "no targets to explain")
        return
    est = sign_test_ci(k, n)
    _judge(e, est, 0.5, +1)
    e.detectable = f"share 1/2 + {est.mde_text('.3f')}"
    e.ours = (f"{k} of {n} targets explained by <= {small} rollouts within relative residual {tol:g} (share "
              f"{est.text('.2f')}); {within} within the residual at all; median set size {float(np.median(sizes)):g}")
    e.details = {"n_targets": n, "n_small": k, "small_size": small, "tol": tol, "sizes": sizes}


def _measure_audit_fixes(mets, e: Entry) -> None:
    km, nm = _audit_counts(mets, "method", "target")
    parts, verdicts = {}, []
    for c in ("random", "nearest"):
        kc, nc = _audit_counts(mets, c, "target")
        if nc and nm:
            est = rate_diff_ci(kc, nc, km, nm)
            parts[f"{c} - explanation sets"] = est
            verdicts.append(verdict_from_ci(est, 0.0, +1))
    if not parts:
        _no_numbers(e, "no evaluation on the targets' prompts")
        return
    e.verdict = combine_verdicts(verdicts)
    e.estimate = min(parts.values(), key=lambda v: v.value)
    e.compared = "explanation sets vs random and nearest rollouts (same size, same steps)"
    rates = {m: _audit_counts(mets, m, "target") for m in ("expert", "method", "random", "nearest")}
    judge = {m: _audit_counts(mets, m, "target", judge=True) for m in rates}
    e.ours = (f"targets' prompts, toxicity before {_pct(*rates['expert'])}, after: explanation sets "
              f"{_pct(*rates['method'])}, random {_pct(*rates['random'])}, nearest {_pct(*rates['nearest'])} (judge "
              + " / ".join(_pct(*judge[m]) for m in rates) + "); "
              + "; ".join(f"{k} = {v.text('+.3f')}" for k, v in parts.items()))
    e.detectable = "; ".join(f"{k.split(' ')[0]} {v.mde_text()}" for k, v in parts.items())
    e.details = {"counts": rates, "judge_counts": judge, "differences": parts, "part_verdicts": verdicts}


def _measure_audit_other(mets, e: Entry) -> None:
    rate_margin = float(_read(mets, "10", "settings.rate_margin"))
    ppl_margin = float(_read(mets, "10", "settings.ppl_margin"))
    (km, nm), (kb, nb) = _audit_counts(mets, "method", "other"), _audit_counts(mets, "expert", "other")
    if not nm or not nb:
        _no_numbers(e, "no other held-out prompts were evaluated")
        return
    parts = {"toxicity": rate_diff_ci(km, nm, kb, nb)}
    (jm, _), (jb, _) = _audit_counts(mets, "method", "other", True), _audit_counts(mets, "expert", "other", True)
    parts["judge"] = rate_diff_ci(jm, nm, jb, nb)
    margins = {"toxicity": rate_margin, "judge": rate_margin}

    def sample(model: str) -> Sample | None:
        kw = {"audit_model": model}
        mean = _num(_read(mets, "10", "eval.{audit_model}.other.nll_tok_mean", **kw))
        sd = _num(_read(mets, "10", "eval.{audit_model}.other.nll_tok_sd", **kw))
        n = int(_read(mets, "10", "eval.{audit_model}.other.n_rows", **kw) or 0)
        return Sample(mean, sd if math.isfinite(sd) and n >= 2 else None, n) if math.isfinite(mean) else None

    a, b = sample("method"), sample("expert")
    if a and b:
        parts["log perplexity"] = sample_diff(a, b)
        margins["log perplexity"] = math.log1p(ppl_margin)
    verdicts = {k: verdict_from_ci(v, margins[k], -1) for k, v in parts.items()}
    e.verdict = combine_verdicts(list(verdicts.values()))
    e.estimate = parts["toxicity"]
    e.compared = "explanation sets unlearned vs the expert, on held-out prompts without a target"
    kl = _num(_read(mets, "10", "eval.{audit_model}.other.kl_to_expert", audit_model="method"))
    ppl = {m: _num(_read(mets, "10", "eval.{audit_model}.other.perplexity", audit_model=m)) for m in ("expert", "method")}
    e.ours = (f"toxicity {_pct(kb, nb)} -> {_pct(km, nm)} ({parts['toxicity'].text('+.3f')}), judge {_pct(jb, nb)} -> "
              f"{_pct(jm, nm)} ({parts['judge'].text('+.3f')}); perplexity {ppl['expert']:.1f} -> {ppl['method']:.1f}"
              + (f" (log ratio {parts['log perplexity'].text('+.3f')})" if "log perplexity" in parts else "")
              + f"; KL to the expert {kl:.3f} nats per completion")
    e.detectable = "; ".join(f"{k} {v.mde_text()}" for k, v in parts.items())
    e.details = {"differences": parts, "margins": margins, "part_verdicts": verdicts, "kl_to_expert": kl}


BEST_RULE = ("; each method at its best configuration from an equal-budget search on a tuning split of the "
             "training pairs, retrained with the tuning's best_seeds seeds; only FA variants whose failure path acts "
             "count as FA-IRL")


def _t1_rule(metric: str, set_name: str = "in_domain") -> str:
    higher = metric != "starc"
    side, end = ("> 0", "upper end below") if higher else ("< 0", "lower end above")
    head = ("same-seed differences, best FA-IRL variant - best baseline, Student-t 95% interval" if set_name == "in_domain"
            else "as Table 1, on the Jigsaw held-out comments")
    if set_name == "in_domain":
        return f"{head}: {side} reproduced; its {end} the paper's {paper_table1_effect(metric):+.3f} contradicted"
    return f"{head}: {side} reproduced; entirely on the other side of 0 contradicted (no paper number)"


_P2, _P3 = PAPER_TABLE2_TEST, PAPER_TABLE3_TEST
CLAIMS: tuple[Claim, ...] = (
    Claim("table1_f1", "FA-IRL beats the IRL baselines on F1", "Table 1, Sec. 6", ("05",), _paper_table1("f1"),
          _t1_rule("f1"), _table1("f1")),
    Claim("table1_auc", "FA-IRL beats the IRL baselines on ROC-AUC", "Table 1, Sec. 6", ("05",),
          _paper_table1("auc"), _t1_rule("auc"), _table1("auc")),
    Claim("table1_starc", "FA-IRL lowers STARC (a more faithful reward)", "Table 1, Sec. 6", ("05",),
          _paper_table1("starc") + "; the text's 'margin variant lowest' contradicts the table",
          _t1_rule("starc"), _table1("starc")),
    Claim("best_table1_f1", "FA-IRL beats the IRL baselines on F1, each method at its tuned best",
          "Table 1, Sec. 6 (best against best: ours)", ("05",), _paper_table1("f1"), _t1_rule("f1") + BEST_RULE,
          _table1("f1", block="per_seed_best")),
    Claim("best_table1_auc", "FA-IRL beats the IRL baselines on ROC-AUC, each method at its tuned best",
          "Table 1, Sec. 6 (best against best: ours)", ("05",), _paper_table1("auc"), _t1_rule("auc") + BEST_RULE,
          _table1("auc", block="per_seed_best")),
    Claim("best_table1_starc", "FA-IRL lowers STARC, each method at its tuned best",
          "Table 1, Sec. 6 (best against best: ours)", ("05",), _paper_table1("starc"),
          _t1_rule("starc") + BEST_RULE, _table1("starc", block="per_seed_best")),
    Claim("best_jigsaw_auc", "FA-IRL beats the IRL baselines on Jigsaw ROC-AUC, each method at its tuned best",
          "Sec. 6 (best against best: ours)", ("05",), "claimed in the text (no numbers given)",
          _t1_rule("auc", "jigsaw") + BEST_RULE, _table1("auc", "jigsaw", block="per_seed_best")),
    Claim("jigsaw_f1", "FA-IRL beats the IRL baselines on F1 on the held-out Jigsaw set", "Sec. 6",
          ("05",), "claimed in the text (no numbers given)", _t1_rule("f1", "jigsaw"), _table1("f1", "jigsaw")),
    Claim("jigsaw_auc", "FA-IRL beats the IRL baselines on ROC-AUC on the held-out Jigsaw set", "Sec. 6",
          ("05",), "claimed in the text (no numbers given)", _t1_rule("auc", "jigsaw"), _table1("auc", "jigsaw")),
    Claim("jigsaw_starc", "FA-IRL lowers STARC on the held-out Jigsaw set", "Sec. 6", ("05",),
          "claimed in the text (no numbers given)", _t1_rule("starc", "jigsaw"), _table1("starc", "jigsaw")),
    Claim("seed_variance", "FA-IRL lowers the variance across seeds", "Sec. 6, Corollary 1", ("05",),
          "stated without a test; Table 1 STARC std ME FA-IRL (margin) 0.011 vs ME IRL 0.003",
          "variance ratio of per-seed STARC, FA-IRL (margin) / same-family baseline, 95% F interval: < 1 reproduced, "
          "> 1 contradicted; MM and ME must agree", _measure_variance),
    Claim("table2_disagreement", "FA-IRL is uniquely right more often than the baseline", "Table 2", ("05",),
          f"only FA-IRL {_P2['only_fa']} vs only IRL {_P2['only_irl']} (share {PAPER_TABLE2_SHARE:.2f})",
          "share only-FA / (only-FA + only-IRL) on the held-out Jigsaw comments, exact (Clopper-Pearson) 95% "
          f"interval (the exact sign test): > 1/2 reproduced; upper end below the paper's {PAPER_TABLE2_SHARE:.2f} "
          "contradicted", _measure_table2),
    Claim("table3_subtypes", "... and on every toxicity subtype", "Table 3", ("05",),
          "; ".join(f"{k} {a} vs {b}" for k, (a, b) in _P3.items()),
          "per subtype as Table 2, against that subtype's paper share ("
          + ", ".join(f"{k} {v:.2f}" for k, v in PAPER_TABLE3_SHARE.items())
          + "); reproduced only if every subtype is, contradicted if any is", _measure_table3),
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
          "per method: slope of training STARC on the T->NT fraction (all seeds), 95% t interval: < 0 for every "
          "method reproduced; > 0 for any contradicted", _measure_trend, ("fig4_pair_mix_starc",)),
    Claim("fig4_fastest", "FA-IRL improves fastest as T->NT pairs grow", "App. D, Figure 4", ("06",),
          "FA-IRL's curve falls most steeply", "per-seed slopes, steepest FA-IRL variant - steepest baseline, "
          "same-seed 95% t interval: < 0 reproduced; > 0 contradicted", _measure_fastest, ("fig4_pair_mix_starc",)),
    Claim("fig4_lowest", "FA-IRL attains the lowest STARC once T->NT pairs are plentiful", "App. D, Figure 4",
          ("06",), "FA-IRL lowest at the largest fractions", "at the largest fraction run: best FA-IRL - best "
          "baseline STARC, same-seed 95% t interval: < 0 reproduced; > 0 contradicted", _measure_lowest_at_top,
          ("fig4_pair_mix_starc",)),
    Claim("fig5_size", "FA-IRL improves with base-model size up to mid scale", "App. E, Figure 5", ("07",),
          "accuracy up and STARC down from 153M to 360M (a dip at 410M)",
          "largest size <= 360M - smallest size over seeds (Welch: different LMs, nothing pairs their runs): "
          "accuracy > 0 and STARC < 0 reproduced; either clearly the other way contradicted",
          _measure_size, ("fig5_model_size",)),
    Claim("rerlhf_order", "Re-RLHF toxicity: ground truth < FA-IRL < standard IRL", "Figure 3 right, Sec. 6",
          ("08",), f"{PAPER_RERLHF['ground_truth']:.0%} < {PAPER_RERLHF['fa_irl']:.0%} < {PAPER_RERLHF['irl']:.0%}",
          "Newcombe 95% intervals of FA-IRL - ground truth and IRL - FA-IRL (completions pooled over an arm's "
          "training runs): both > 0 reproduced; either upper end below the paper's gap "
          f"(+{PAPER_RERLHF['fa_irl'] - PAPER_RERLHF['ground_truth']:.2f} / "
          f"+{PAPER_RERLHF['irl'] - PAPER_RERLHF['fa_irl']:.2f}) contradicted; a gap within the largest spread "
          "between two training runs of one arm is inconclusive either way", _measure_rerlhf, ("fig3_right_rerlhf",)),
    Claim("audit_small_sets", "Explainable RLHF: a few training examples explain an unsatisfactory response",
          "Liu et al., abstract", ("10",), "claimed (abstract; no numbers given)",
          "share of targets whose explanation set meets the residual tolerance with at most [audit] small_size "
          "rollouts, exact (Clopper-Pearson) 95% interval: > 1/2 reproduced; < 1/2 contradicted",
          _measure_audit_small),
    Claim("audit_unlearning_fixes", "Explainable RLHF: unlearning the explaining data fixes more unsatisfactory "
          "responses than unlearning as many random or nearest training examples", "Liu et al., abstract", ("10",),
          "claimed (abstract; no numbers given; the controls are ours)",
          "toxicity rate on the targets' prompts after unlearning, control - explanation sets, Newcombe 95% "
          "interval, for random and for nearest rollouts: both > 0 reproduced; either < 0 contradicted",
          _measure_audit_fixes, ("fig10_audit_unlearning",)),
    Claim("audit_no_degradation", "Explainable RLHF: unlearning does not degrade responses to other prompts",
          "Liu et al., abstract", ("10",), "claimed (abstract; no numbers given)",
          "non-inferiority on held-out prompts without a target, after - before: toxicity and judge rates (Newcombe) "
          "below [audit] rate_margin and log perplexity under the base (Welch) below log(1 + ppl_margin) "
          "reproduced; any lower end above its margin contradicted", _measure_audit_other,
          ("fig10_audit_unlearning",)),
)
CLAIM_IDS = tuple(c.id for c in CLAIMS)


def evaluate_claim(claim: Claim, mets: Mapping[str, Mapping | None]) -> Entry:
    """One ledger entry. A metrics file the claim needs that is absent gives verdict "not run" (the reason in
    ``details["missing"]``); a file that exists but lacks a key the claim reads raises
    :class:`MissingMetrics` naming the notebook and the key path (the file is stale or a notebook broke
    its schema: rerun that notebook)."""
    e = claim.entry()
    try:
        claim.measure(mets, e)
    except NotRun as err:
        e.verdict, e.ours, e.estimate = NOT_RUN, "-", None
        e.details = {"missing": str(err.args[0]) if err.args else "metrics missing"}
    if e.verdict not in VERDICTS:
        raise ValueError(f"claim {claim.id} produced an unknown verdict {e.verdict!r}")
    return e


def build_ledger(mets: Mapping[str, Mapping | None], claims: Sequence[Claim] = CLAIMS) -> list[Entry]:
    """Every claim evaluated against ``mets`` (``{"03": metrics dict, ...}``; absent notebooks missing)."""
    return [evaluate_claim(c, mets) for c in claims]


def ledger_dict(ledger: Sequence[Entry]) -> dict[str, dict[str, Any]]:
    """``{claim id: {claim, paper, ours, estimate, verdict, ...}}`` (for metrics/11_reproduction_report.json)."""
    return {e.id: e.to_dict() for e in ledger}


def verdict_counts(ledger: Sequence[Entry]) -> dict[str, int]:
    return {v: sum(e.verdict == v for e in ledger) for v in VERDICTS}


# ============================================================================ reading results, writing REPORT.md


def load_metrics(results_dir: str | Path, exclude: Iterable[str] = ("11",)) -> dict[str, dict]:
    """``{notebook number: metrics dict}`` of the files ``<results_dir>/metrics/<stem>.json`` of the
    notebooks in :data:`NOTEBOOKS` that exist (other files are not read; unreadable ones are skipped with
    their error recorded under ``"_errors"``)."""
    folder = Path(results_dir) / "metrics"
    out: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for nb, stem in NOTEBOOKS.items():
        path = folder / f"{stem}.json"
        if nb in exclude or not path.exists():
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


_BADGE = {REPRODUCED: "✅ reproduced", CONTRADICTED: "⛔ contradicted", INCONCLUSIVE: "❔ inconclusive",
          NOT_REPRODUCED: "❌ not reproduced", NOT_RUN: "⏸ not run"}
_LEGEND = {REPRODUCED: "the 95% interval lies on the side the paper claims (exact claims: the statement holds)",
           CONTRADICTED: "the interval excludes the effect the paper reports (or, with no paper number, lies on "
                         "the other side)",
           INCONCLUSIVE: "neither: the interval holds the null and the paper's effect alike, or cannot be formed",
           NOT_REPRODUCED: "an exact claim with a counterexample",
           NOT_RUN: "a metrics file the claim needs is missing"}


def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def why_numbers_differ(mets: Mapping[str, Any]) -> list[str]:
    """Sentences for REPORT.md on why the in-domain and Jigsaw numbers differ from the paper's, read
    from notebook 05's ``in_domain_by_pair_type`` and ``jigsaw_learning_curve`` and notebook 01's KL
    (empty when notebook 05 did not run)."""
    m5 = mets.get("05")
    if not isinstance(m5, Mapping):
        return []
    # blocks with wildcard keys (pair types present, methods run), validated when notebook 05 wrote them
    by_type, lc = m5["in_domain_by_pair_type"], m5["jigsaw_learning_curve"]
    out = []
    n = {t: next(iter(v.values()))["n_pairs"] for t, v in by_type.items() if v}
    total = sum(n.values()) or 1
    acc = {t: [r["pairwise_accuracy"] for r in v.values()] for t, v in by_type.items()}
    gt = {t: next(iter(v.values()))["gt_pairwise_accuracy"] for t, v in by_type.items() if v}
    parts = [f"{t} {n[t]} ({100 * n[t] / total:.0f}%): rewards {min(acc[t]):.2f}-{max(acc[t]):.2f}, "
             f"ground truth {gt[t]:.2f}" for t in by_type if t in n]
    out.append("**In-domain.** Test pairs by type, with the share of pairs each reward ranks the right way "
               "round: " + "; ".join(parts) + ". Only T->NT pairs carry the preference the ground truth "
               "explains; in NT->NT pairs even the ground-truth reward ranks near chance, so the in-domain "
               "numbers are capped by how many T->NT pairs the expert produced.")
    m1 = mets.get("01")
    if isinstance(m1, Mapping) and isinstance(m1.get("kl_final"), (int, float)):
        out[-1] += f" The expert's KL to its base at the end of training: {m1['kl_final']:.2f} nats per completion."
    means = {mth: v["mean"] for mth, v in lc["methods"].items()}
    out.append(f"**Jigsaw.** The rewards are distilled from the ground-truth scorer through the pairs; the scorer "
               f"itself reaches ROC-AUC {lc['ground_truth_auc']:.3f} on the same comments. With "
               f"{lc['n_tnt'][0]} -> {lc['n_tnt'][-1]} T->NT training pairs (plus {lc['n_other']} others) the "
               "rewards' Jigsaw AUC goes " + ", ".join(
                   f"{mth} {v[0]:.3f} -> {v[-1]:.3f}" for mth, v in means.items()) + ".")
    return out


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
              ("95% intervals in brackets: Student-t over same-seed differences (Table 1, Figure 4), Welch's t across "
               "base LMs (Figure 5), exact binomial (sign test) for disagreement counts, F for variance ratios, "
               "Newcombe for rates. *Detectable*: the smallest effect the claim's test finds with 80% power at this "
               "run's size (two-sided 5%; formulas in `fairl_lib/analysis/report.py`): an inconclusive verdict "
               "with a detectable effect above the paper's means the run is too small to tell."), "",
              "; ".join(f"{_BADGE[v]}: {_LEGEND[v]}" for v in VERDICTS) + ".", "",
              "| claim | source | paper | ours | detectable (80% power) | verdict |", "|---|---|---|---|---|---|"]
    for e in ledger:
        ours = e.ours if e.verdict != NOT_RUN else f"- ({e.details.get('missing', 'no metrics')})"
        if e.compared:
            ours = f"{e.compared}: {ours}"
        lines.append(f"| {_md(e.claim)} | {_md(e.source)} | {_md(e.paper)} | {_md(ours)} | {_md(e.detectable)} "
                     f"| {_BADGE[e.verdict]} |")
    why = why_numbers_differ(mets) if mets is not None else []
    if why:
        lines += ["", "## Why the numbers differ from the paper's", ""] + why
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
