"""The ledger's statistics in one place: intervals, tests, equivalence (TOST), detectable effects, bootstrap.

Each function states the test it implements and what its interval covers; tests/test_stats.py checks each
against a hand-worked case or against scipy. Where scipy has the test it is used (exact binomial,
Student-t, F, Welch via its t quantiles); what it lacks is written here: Newcombe's hybrid interval of a
difference of two rates, the smallest detectable effects, and a two-level (seeds x clusters) bootstrap.

Conventions: ``level`` is the two-sided coverage (0.95 for the ledger's intervals; 0.90 for TOST, whose two
one-sided 5% tests are equivalent to a 90% interval inside the equivalence margin).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from fairl_lib.config import section

LEVEL = 0.95  # two-sided 95% intervals (tests at 5%)
POWER = 0.80  # the power of the smallest detectable effect
TOST_LEVEL = 0.90  # two one-sided tests at 5% each = a 90% interval inside the margin

# the tests, as the ledger names them
PAIRED_T, WELCH_T, ONE_T, SLOPE_T = "paired t", "Welch t", "t", "slope t"
SIGN_TEST, NEWCOMBE, F_RATIO = "exact sign test", "Newcombe", "F"
BOOTSTRAP = "bootstrap (seeds x clusters)"
PAIRED_RATES = "paired: exact McNemar, bootstrap (seeds x prompts)"


@section("ledger")
@dataclass(frozen=True)
class LedgerConfig:
    """The ledger's rule, fixed before a run reads its test set (section ``[ledger]``).

    The **smallest effect of interest** of each quantity: a difference smaller than it is no effect worth a
    verdict. Reproduced needs the interval on the paper's side *and* an estimate at least this large;
    negligible needs the 90% interval inside +- this (TOST). Defaults: about a third of the paper's own
    effect (Table 1 best-against-best gaps F1 +0.042, AUC +0.028, STARC -0.058; Table 3 +8.1%; re-RLHF's
    3-point FA-vs-IRL gap), rounded:

    Attributes:
        effect_auc: ROC-AUC difference (a third of the paper's +0.028).
        effect_f1: F1 difference (a third of +0.042, rounded down).
        effect_accuracy: accuracy difference (Figure 5).
        effect_starc: STARC difference (a third of -0.058).
        effect_share: Table 2's share only FA / (only FA + only IRL) above 1/2.
        effect_relative: Table 3's relative increase in comments classified right (a third of 8.1%).
        effect_rate: a toxicity rate difference (re-RLHF, the audit): 1 point.
        effect_slope: Figure 4's STARC slope per unit of T->NT fraction.
        effect_variance_ratio: a variance ratio (Corollary 1's spread across seeds) at least this far from 1.
        effect_margin: a change of a recovered reward's standardised margin (the audit's pair method,
            notebook 10 section 6), in standard deviations of the reward: the paper gives no number; a tenth of
            a standard deviation is the smallest move we would call a change of what the reward prefers.
        bootstrap_reps: replicates of every seeds x data bootstrap.
        min_disagreements: Tables 2-3 with fewer disagreements (pooled over seeds) are "underpowered".
    """

    effect_auc: float = 0.01
    effect_f1: float = 0.01
    effect_accuracy: float = 0.01
    effect_starc: float = 0.02
    effect_share: float = 0.05
    effect_relative: float = 0.027
    effect_rate: float = 0.01
    effect_slope: float = 0.1
    effect_variance_ratio: float = 1.5
    effect_margin: float = 0.1
    bootstrap_reps: int = 1000
    min_disagreements: int = 30

    def effect(self, quantity: str) -> float:
        """The effect of interest of ``quantity`` (``auc``, ``f1``, ..., the field name without ``effect_``)."""
        return float(getattr(self, f"effect_{quantity}"))


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




# ============================================================================ equivalence and bootstrap


def is_identical(a: Sequence[float], b: Sequence[float], tol: float = 0.0) -> bool:
    """Whether two arms are the same numbers: every paired value equal within ``tol`` (default exactly).
    A difference of rounding size is "identical", never a verdict."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    return bool(keep.any() and np.all(np.abs(a[keep] - b[keep]) <= tol))


def tost_negligible(est90: Estimate, margin: float, null: float = 0.0) -> bool:
    """Two one-sided tests (TOST) at 5% each: the effect is negligible when the 90% interval ``est90`` lies
    strictly inside ``null +- margin`` (Schuirmann 1987; equivalent to rejecting both ``effect <= -margin``
    and ``effect >= margin``)."""
    if est90.lo is None or est90.hi is None or margin <= 0:
        return False
    return bool(null - margin < est90.lo and est90.hi < null + margin)


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Exact McNemar test on the discordant pairs (two-sided binomial test of only_a against
    Binomial(only_a + only_b, 1/2), :func:`scipy.stats.binomtest`); 1.0 with no discordant pair."""
    n = int(only_a) + int(only_b)
    return 1.0 if n == 0 else float(stats.binomtest(int(only_a), n, 0.5).pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control over the given tests)."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p)
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def two_level_bootstrap(statistic: Callable[[np.ndarray, np.ndarray], float], n_seeds: int,
                        clusters: Sequence[Any], *, reps: int = 1000, seed: int = 0,
                        level: float = LEVEL, tost_level: float = TOST_LEVEL) -> tuple[Estimate, Estimate]:
    """Percentile bootstrap over seeds and data clusters together: each replicate draws ``n_seeds`` seeds
    with replacement and as many clusters (e.g. test prompts) as there are with replacement, expands the
    clusters to their rows, and evaluates ``statistic(seed_idx, row_idx)``. The interval so covers the
    variation between training seeds *and* the draw of the evaluation data (its prompts), not the expert's
    own training randomness.

    Returns ``(estimate at level, estimate at tost_level)``; the point value is ``statistic`` on all seeds
    and rows; MDE ``(z_{(1+level)/2} + z_0.80) * sd_boot``.
    """
    rng = np.random.default_rng(seed)
    cl = np.asarray(clusters)
    uniq, inv = np.unique(cl, return_inverse=True)
    rows_of = [np.flatnonzero(inv == k) for k in range(len(uniq))]
    all_seeds, all_rows = np.arange(n_seeds), np.arange(len(cl))
    value = float(statistic(all_seeds, all_rows))
    draws = np.empty(reps)
    for r in range(reps):
        s = rng.integers(0, n_seeds, n_seeds)
        c = rng.integers(0, len(uniq), len(uniq))
        draws[r] = statistic(s, np.concatenate([rows_of[k] for k in c]))
    draws = draws[np.isfinite(draws)]
    if len(draws) < max(10, reps // 2):
        return Estimate(value, None, None, n_seeds, None, BOOTSTRAP), Estimate(value, None, None, n_seeds, None, BOOTSTRAP)
    sd = float(draws.std(ddof=1))
    mde = mde_z(sd, level)

    def at(lv: float) -> Estimate:
        lo, hi = np.quantile(draws, [0.5 - lv / 2, 0.5 + lv / 2])
        return Estimate(value, float(lo), float(hi), n_seeds, mde, BOOTSTRAP)

    return at(level), at(tost_level)


# ============================================================================ paired rates (McNemar)


def mcnemar_mde(n: int, discordance: float, level: float = LEVEL, power: float = POWER) -> float:
    """Smallest difference of two paired rates that the two-sided McNemar test at ``1 - level`` finds with
    probability ``power`` over ``n`` pairs whose discordant share (toxic in exactly one arm) is ``discordance``
    (Connor 1987, normal approximation): the ``d`` solving ``sqrt(n) d = z_{(1+level)/2} sqrt(psi) + z_power
    sqrt(psi - d^2)``. At a small ``d`` it is ``(z_a + z_b) sqrt(psi / n)``: pairs that agree cost nothing, so
    the fewer discordant pairs the arms leave, the smaller the detectable effect. ``nan`` when no ``d <= psi``
    solves it (too few pairs) or ``n`` is 0."""
    psi = float(discordance)
    if n <= 0 or not 0 < psi <= 1:
        return math.nan
    za, zb = float(stats.norm.ppf(0.5 + level / 2)), float(stats.norm.ppf(power))
    f = lambda d: math.sqrt(n) * d - za * math.sqrt(psi) - zb * math.sqrt(max(psi - d * d, 0.0))
    if f(psi) < 0:
        return math.nan
    return float(optimize.brentq(f, 0.0, psi))


@dataclass(frozen=True)
class PairedRates:
    """``rate(a) - rate(b)`` over pairs (the same prompt, sample index and unlearning seed in both arms).

    ``estimate``: the difference with the 95% percentile bootstrap interval over unlearning seeds and prompts
    (:func:`two_level_bootstrap`; prompts as clusters, so a prompt's samples move together) and its MDE
    ``(z_0.975 + z_0.80) * sd_boot``; with no discordant pair the bootstrap is a point, and the interval is
    +- the exact upper end of the discordant share instead (no MDE); ``estimate90``: the same at 90% (TOST); ``only_a`` / ``only_b``: the
    discordant pairs; ``p_value``: the exact McNemar test on them (:func:`mcnemar_exact_p`, pairs taken as
    independent); ``mde_mcnemar``: :func:`mcnemar_mde` at the observed discordance (the same, pairs taken as
    independent: the bootstrap's MDE is the one that counts when prompts cluster)."""

    estimate: Estimate
    estimate90: Estimate
    only_a: int
    only_b: int
    n: int
    p_value: float
    mde_mcnemar: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.estimate.to_dict(), "ci90": self.estimate90.to_dict()["ci95"], "only_a": self.only_a,
                "only_b": self.only_b, "n_pairs": self.n, "p_mcnemar": _f(self.p_value),
                "mde_mcnemar": _f(self.mde_mcnemar)}


def paired_rates(a: np.ndarray, b: np.ndarray, clusters: Sequence[Any], *, reps: int = 1000, seed: int = 0,
                 level: float = LEVEL) -> PairedRates:
    """Paired comparison of two arms' binary outcomes (:class:`PairedRates`).

    ``a``, ``b``: ``(n_seeds, n)`` (or ``(n,)``) booleans, entry ``[s, i]`` the same pair in both arms (seed ``s``,
    row ``i``); ``clusters``: ``n`` labels (the prompt of row ``i``; the same rows in every seed).
    """
    a, b = np.atleast_2d(np.asarray(a, dtype=bool)), np.atleast_2d(np.asarray(b, dtype=bool))
    if a.shape != b.shape or a.shape[1] != len(clusters) or a.size == 0:
        raise ValueError(f"paired_rates needs two (seeds, rows) arrays of one shape with a cluster per row, got "
                         f"{a.shape}, {b.shape} and {len(clusters)} clusters")
    d = a.astype(np.float64) - b.astype(np.float64)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    e95, e90 = two_level_bootstrap(lambda s, idx: float(d[np.ix_(s, idx)].mean()), d.shape[0], clusters,
                                   reps=reps, seed=seed, level=level)
    e95 = dataclasses.replace(e95, n=d.size, test=PAIRED_RATES)
    e90 = dataclasses.replace(e90, n=d.size, test=PAIRED_RATES)
    if only_a + only_b == 0:  # every pair agrees: the bootstrap is a point; |difference| <= the discordance
        e95, e90 = (dataclasses.replace(e, lo=-_no_discordance_bound(d.size, lv), hi=_no_discordance_bound(d.size, lv),
                                        mde=None) for e, lv in ((e95, level), (e90, TOST_LEVEL)))
    return PairedRates(e95, e90, only_a, only_b, d.size, mcnemar_exact_p(only_a, only_b),
                       mcnemar_mde(d.size, (only_a + only_b) / d.size, level))


def _no_discordance_bound(n: int, level: float) -> float:
    """The exact (Clopper-Pearson) upper end of a discordant share when none of ``n`` pairs is discordant,
    ``1 - ((1 - level) / 2)^(1/n)``: the difference of the paired rates lies within +- it."""
    return float(1 - ((1 - level) / 2) ** (1 / n))


def fisher_exact_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact test of ``k1 / n1`` against ``k2 / n2`` (:func:`scipy.stats.fisher_exact` on the
    2 x 2 table); 1.0 when either sample is empty."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    return float(stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


# ============================================================================ rates over training runs

RANDOM_EFFECTS = "random effects (runs)"


def between_run_variance(groups: Sequence[Sequence[tuple[int, int]]]) -> tuple[float, int]:
    """DerSimonian-Laird estimate of the between-run variance tau^2 of a rate, pooled over groups (arms):
    each group is a list of ``(k_toxic, n)`` runs that share one true mean rate; runs differ by tau^2 beyond
    their binomial sampling. Returns ``(tau2, df)`` with ``df = sum(runs - 1)``; ``(nan, 0)`` when no group has
    two runs. Rates use (k + 1/2) / (n + 1) so that a run with no toxic completion keeps a finite variance."""
    q = c = 0.0
    df = 0
    for runs in groups:
        if len(runs) < 2:
            continue
        p = np.array([(k + 0.5) / (n + 1) for k, n in runs])
        w = np.array([n / (pi * (1 - pi)) for pi, (_, n) in zip(p, runs)])
        mean = float((w * p).sum() / w.sum())
        q += float((w * (p - mean) ** 2).sum())
        c += float(w.sum() - (w ** 2).sum() / w.sum())
        df += len(runs) - 1
    if df == 0:
        return math.nan, 0
    return max(0.0, (q - df) / c) if c > 0 else 0.0, df


def random_effects_rate_diff(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]], tau2: float,
                             level: float = LEVEL) -> Estimate:
    """Rate of arm ``a`` - rate of arm ``b``, each the random-effects mean of its training runs
    (``(k_toxic, n)`` each): weights 1 / (v_i + tau2), v_i the run's binomial variance. The interval is normal
    with se = sqrt(var_a + var_b); it covers the sampling of completions *and* the variation between training
    runs (``tau2``, :func:`between_run_variance`), so the unit is the run. ``tau2`` NaN (not estimable) is
    taken as 0 and the caller must say so. MDE ``(z_{(1+level)/2} + z_0.80) * se``."""
    t2 = 0.0 if not math.isfinite(tau2) else tau2

    def arm(runs: Sequence[tuple[int, int]]) -> tuple[float, float]:
        p = np.array([k / n for k, n in runs])
        ps = np.array([(k + 0.5) / (n + 1) for k, n in runs])
        w = 1.0 / (np.array([pi * (1 - pi) / n for pi, (_, n) in zip(ps, runs)]) + t2)
        return float((w * p).sum() / w.sum()), float(1.0 / w.sum())

    (ma, va), (mb, vb) = arm(a), arm(b)
    d, se = ma - mb, math.sqrt(va + vb)
    half = float(stats.norm.ppf(0.5 + level / 2) * se)
    return Estimate(d, d - half, d + half, min(len(a), len(b)), mde_z(se, level), RANDOM_EFFECTS)
