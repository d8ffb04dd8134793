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
- proportions (re-RLHF toxicity; the audit's small-set shares, targets against the null): Newcombe (Wilson
  hybrid) interval of a difference of two rates, the two samples taken as independent;
- the audit's arms, which sample the same (prompt, sample index) rows with one seed per draw: paired, the
  exact McNemar test on the discordant pairs and a percentile bootstrap over draws and prompts for the
  interval and the MDE (``stats.paired_rates``);
- "does not degrade" (the audit's other prompts): a non-inferiority test, the interval of the change
  against a stated margin (``[audit] rate_margin``, ``ppl_margin``) instead of 0.

The audit of notebook 10 tests three claims of Liu et al.'s explainable RLHF (abstract only, no numbers):
its explanation sets are small (more often than on a null of non-toxic completions), unlearning them fixes
more unsatisfactory responses than unlearning as many random, reward-matched or nearest-outside rollouts
(each control rules out one reading, ``AUDIT_CONTROL_RULES_OUT``), and other prompts do not degrade.

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

from fairl_lib.analysis import paper, schema
from fairl_lib.analysis.stats import (  # noqa: F401 (re-exported: the ledger's tests and notebooks use them)
    BOOTSTRAP,
    F_RATIO,
    LEVEL,
    NEWCOMBE,
    ONE_T,
    PAIRED_RATES,
    PAIRED_T,
    POWER,
    SIGN_TEST,
    SLOPE_T,
    WELCH_T,
    Estimate,
    LedgerConfig,
    Sample,
    _clean,
    _f,
    between_run_variance,
    diff_ci,
    holm,
    mde_t,
    mde_z,
    mean_ci,
    paired_ci,
    random_effects_rate_diff,
    rate_diff_ci,
    sample_diff,
    sign_test_ci,
    slope_ci,
    tost_negligible,
    variance_ratio_ci,
    wilson_ci,
)
from fairl_lib.artifacts import atomic_write_text
from fairl_lib.irl import BASELINES, FA_METHODS, METHOD_NAMES, method_label

REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
NEGLIGIBLE, OPPOSITE, IDENTICAL = "negligible", "opposite", "identical"
NOT_REPRODUCED, NOT_RUN = "not reproduced", "not run"
VERDICTS = (REPRODUCED, NEGLIGIBLE, CONTRADICTED, OPPOSITE, IDENTICAL, INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN)

METHOD_LABELS = {m: method_label(m) for m in METHOD_NAMES}

# notebook number -> stem of every metrics file the schema describes (fairl_lib.analysis.schema)
NOTEBOOKS = {stem[:2]: stem for stem in schema.NOTEBOOK_STEMS}

# The paper's numbers (fairl_lib.analysis.paper).
PAPER_TABLE1 = paper.TABLE1
PAPER_TABLE2_TEST = paper.TABLE2["jigsaw"]
PAPER_TABLE3_TEST = {("identity_attack" if k == "identity_hate" else k): v[1:] for k, v in paper.TABLE3["jigsaw"].items()}
PAPER_RERLHF = paper.RERLHF_RATES



def _oriented(est: Estimate, null: float, direction: int) -> tuple[float, float]:
    """The interval as distances from ``null`` towards the side the paper claims (positive = its side)."""
    return (est.lo - null, est.hi - null) if direction > 0 else (null - est.hi, null - est.lo)


def _paper_gap(paper_value: float | None, null: float, direction: int) -> float:
    """The paper's effect as a distance from ``null`` on its claimed side (0 when the paper gives none, or
    when its own number is not on that side)."""
    return 0.0 if paper_value is None else max(0.0, (paper_value - null) * direction)


def verdict_from_ci(est: Estimate | None, null: float = 0.0, direction: int = +1,
                    paper_value: float | None = None, effect: float = 0.0, est90: Estimate | None = None,
                    identical: bool = False) -> str:
    """The verdict rule of a comparative claim. ``direction=+1``: the paper claims the quantity is above
    ``null``; ``-1``: below. ``paper_value``: the paper's own value of the quantity (None when it gives none).
    ``effect``: the claim's smallest effect of interest (:class:`LedgerConfig`), a distance from ``null``;
    ``est90``: the 90% interval for the equivalence test (the 95% one, more conservative, when absent).

    In this order: the arms are the same numbers -> identical; the interval on the claimed side and the
    estimate at least ``effect`` -> reproduced; the 90% interval inside ``null +- effect`` (TOST) -> negligible;
    the interval on the other side and the estimate at least ``effect`` beyond ``null`` -> opposite; the paper's
    effect excluded and ours at least ``effect`` short of it -> contradicted; otherwise, a zero-width interval
    or none -> inconclusive; no estimate -> not run.
    """
    if est is None:
        return NOT_RUN
    if identical:
        return IDENTICAL
    if est.lo is None or est.hi is None or est.lo == est.hi:
        return INCONCLUSIVE
    lo, hi = _oriented(est, null, direction)
    v = (est.value - null) * direction
    if lo > 0 and v >= effect:
        return REPRODUCED
    if effect > 0 and tost_negligible(est90 if est90 is not None else est, effect, null):
        return NEGLIGIBLE
    if hi < 0 and -v >= effect:
        return OPPOSITE
    gap = _paper_gap(paper_value, null, direction)
    if gap > 0 and hi < gap and gap - v >= effect:
        return CONTRADICTED
    return INCONCLUSIVE


def underpowered(est: Estimate | None, effect: float) -> bool:
    """True when the run could not detect the effect of interest (its detectable effect is larger)."""
    return bool(est is not None and est.mde is not None and effect > 0 and est.mde > effect)


def below_paper(est: Estimate | None, null: float, direction: int, paper_value: float | None) -> bool:
    """True when the interval lies on the claimed side but stops short of the paper's effect (reproduced
    in direction, smaller in size)."""
    if est is None or est.lo is None or paper_value is None:
        return False
    lo, hi = _oriented(est, null, direction)
    return lo > 0 and hi < _paper_gap(paper_value, null, direction)


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """All parts must hold (an intersection-union test: each part at 5% keeps the whole at 5%): any not-run
    -> not run; any contradicted, opposite, negligible or identical part -> that (in this order); any failed
    exact part -> not reproduced; all reproduced -> reproduced; else inconclusive."""
    if not verdicts or NOT_RUN in verdicts:
        return NOT_RUN
    for v in (CONTRADICTED, OPPOSITE, NEGLIGIBLE, IDENTICAL, NOT_REPRODUCED):
        if v in verdicts:
            return v
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
    effect_of_interest: float | None = None
    covers: str = ""
    by_construction: bool = False
    rules: LedgerConfig = field(default_factory=LedgerConfig)

    @property
    def underpowered(self) -> bool:
        """Inconclusive, and the run could not have detected the effect of interest."""
        return self.verdict == INCONCLUSIVE and underpowered(self.estimate, self.effect_of_interest or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "source": self.source, "notebook": self.notebook, "paper": self.paper,
                "ours": self.ours, "estimate": None if self.estimate is None else self.estimate.to_dict(),
                "paper_effect": _f(self.paper_effect), "effect_of_interest": _f(self.effect_of_interest),
                "covers": self.covers, "underpowered": self.underpowered, "by_construction": self.by_construction,
                "detectable": self.detectable,
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


MissingMetrics = schema.MissingMetrics  # a file that exists lacks a key a claim reads: the ledger fails, naming it


def _file(mets: Mapping[str, Mapping | None], nb: str) -> Mapping:
    m = mets.get(nb)
    if m is None:
        raise NotRun(f"no metrics file {NOTEBOOKS.get(nb, nb)}.json (notebook not run)")
    return m


def _read(mets: Mapping[str, Mapping | None], nb: str, pattern: str, **values: Any) -> Any:
    """The value at the schema's key path ``pattern`` of notebook ``nb`` (:func:`schema.get`): :class:`NotRun`
    when the file is absent, :class:`MissingMetrics` when the file lacks the key (never caught here)."""
    return schema.get(_file(mets, nb), nb, pattern, **values)


def _keys(mets: Mapping[str, Mapping | None], nb: str, placeholder: str) -> list[str]:
    """The keys a schema placeholder stands for in notebook ``nb``'s file (``{size_lm}``: its base LMs)."""
    return schema.placeholder_keys(_file(mets, nb), nb, placeholder)


def _num(x: Any) -> float:
    """A numeric leaf as a float; ``null`` (how NaN is written) -> NaN."""
    return math.nan if x is None else float(x)


def _no_numbers(e: Entry, why: str) -> None:
    """The metrics are there but hold nothing this claim can be tested on (too few seeds, fractions or
    sizes, or no finite values): inconclusive at this scale, with the reason."""
    e.verdict, e.ours, e.estimate = INCONCLUSIVE, why, None
    e.details = {"why": why}


def _judge(e: Entry, est: Estimate, null: float, direction: int, paper_value: float | None = None,
           est90: Estimate | None = None, identical: bool = False) -> str:
    """Set the entry's estimate, verdict, paper effect and detectable effect from one estimate (judged against
    the entry's effect of interest); returns the note to append to ``ours`` when the effect is reproduced but
    smaller than the paper's."""
    e.estimate, e.paper_effect = est, paper_value
    e.verdict = verdict_from_ci(est, null, direction, paper_value, e.effect_of_interest or 0.0, est90, identical)
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
            raise schema.MetricsLayoutError("05_tables", f"{block}.{set_name}.{m}.{metric}",
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
    effect: str = ""  # the LedgerConfig quantity whose effect of interest judges it ("" = exact or own margin)

    def entry(self, ledger: LedgerConfig | None = None) -> Entry:
        eoi = (ledger or LedgerConfig()).effect(self.effect) if self.effect else None
        return Entry(self.id, self.claim, self.source, self.notebooks[0], self.paper, rule=self.rule,
                     figures=self.figures, effect_of_interest=eoi, rules=ledger or LedgerConfig())


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


def preregistered(mets) -> tuple[str, str]:
    """``(FA method, baseline)`` the ledger compares, as notebook 05 recorded them: the profile's
    ``tuning.preregistered`` or, with ``"auto"``, the best acting FA configuration by validation AUC on the
    tuning split (``tuning.best_fa_config``), and its same-family baseline."""
    return str(_read(mets, "05", "preregistered.fa_method")), str(_read(mets, "05", "preregistered.baseline"))


def _acting_note(mets, e: Entry, fa: str) -> str:
    """``"; its failure path flips ..."``; marks the entry when the path does not act on these pairs."""
    acts = bool(_read(mets, "05", "preregistered.acting"))
    share = _num(_read(mets, "05", "preregistered.flip_share"))
    init = _num(_read(mets, "05", "preregistered.flip_share_init"))
    e.details.update({"acting": acts, "flip_share": share, "flip_share_init": init})
    return (f"; {METHOD_LABELS[fa]}'s trained R_F flips {share:.1%} of the training pairs against R_D alone "
            f"(its init {init:.1%}){'' if acts else ': it does not act, so this compares IRL with itself'}")


def _acting_on_own_pairs(e: Entry, paths: Mapping[str, Mapping[str, Any] | None], where: str,
                         need: str = "all") -> None:
    """Whether the FA configuration's failure path acts on the pairs this claim's own notebook trained on
    (notebook 05 checked it on notebook 02's pairs only): ``paths`` maps each place (a T->NT fraction, a base
    model, the reward re-RLHF used) to ``{"flip_share", "flip_share_init", "acts"}`` (None: not measured, e.g.
    metrics written before the check existed). Appends the finding to ``e.ours``, records it in ``e.details``
    and, when the path does not act where ``need`` says (``"all"`` the places; ``"most"``: more than half, for
    a trend over many mixes), turns a decided verdict into inconclusive: FA-IRL is then its baseline under
    another name there and the claim compares IRL with itself."""
    seen = {k: v for k, v in paths.items() if v}
    e.details["acting_own_pairs"] = {k: dict(v) if v else None for k, v in paths.items()}
    if not seen:
        e.ours += f"; whether its failure path acts on {where} was not measured"
        return
    acting = [k for k, v in seen.items() if v.get("acts")]
    shares = ", ".join(f"{k} {_num(v['flip_share']):.1%} (init {_num(v['flip_share_init']):.1%})"
                       for k, v in seen.items())
    enough = len(acting) == len(seen) if need == "all" else 2 * len(acting) > len(seen)
    e.ours += (f"; on {where} its R_F flips {shares}: it acts on {len(acting)} of {len(seen)}"
               + ("" if enough else ", so FA-IRL is its baseline there and the verdict is not decided"))
    e.details["acting_own_pairs_enough"] = enough
    if not enough and e.verdict in (REPRODUCED, NEGLIGIBLE, CONTRADICTED, OPPOSITE):
        e.verdict = INCONCLUSIVE


def _pair_mix_paths(mets, fa: str, fractions: Sequence[float]) -> dict[str, Mapping[str, Any] | None]:
    """Notebook 06's failure-path check of ``fa`` at each of ``fractions`` (see :func:`_acting_on_own_pairs`)."""
    out: dict[str, Mapping[str, Any] | None] = {}
    for f in fractions:
        kw = {"fraction": f"{f:g}", "pm_fa_method": fa}
        leaf = "pair_mix.{fraction}.methods.{pm_fa_method}."
        out[f"fraction {f:g}"] = {k: _read(mets, "06", leaf + k, **kw)
                                  for k in ("flip_share", "flip_share_init", "acts")}
    return out


def _boot_estimate(d: Mapping[str, Any], n: int) -> tuple[Estimate, Estimate]:
    """The 95% and 90% bootstrap estimates of a ``{"value", "ci95", "ci90", "mde"}`` leaf."""
    v, mde = _num(d["value"]), d.get("mde")
    c95, c90 = d.get("ci95") or (None, None), d.get("ci90") or (None, None)
    return (Estimate(v, _f(c95[0]) if c95[0] is not None else None, _f(c95[1]) if c95[1] is not None else None,
                     n, _f(mde) if mde is not None else None, BOOTSTRAP),
            Estimate(v, c90[0], c90[1], n, None, BOOTSTRAP))


def paper_pair_effect(fa: str, base: str, metric: str) -> float:
    """The paper's Table 1 gap between the same two methods (FA - baseline) on ``metric``."""
    return round(PAPER_TABLE1[fa][metric][0] - PAPER_TABLE1[base][metric][0], 6)


TABLE1_GAP = "table1"  # the paper's effect: its Table 1 gap between the same two methods (in-domain only)


def _comparison(metric: str, set_name: str = "in_domain", paper: float | str | None = TABLE1_GAP) -> Callable:
    """Table 1 (``in_domain``) or a Jigsaw claim on one metric: the preregistered FA method - its baseline
    on the tuned grid, mean over seeds, 95% bootstrap over seeds and the evaluation data (notebook 05).
    ``paper``: the paper's value of the difference (:data:`TABLE1_GAP`: its Table 1 gap, in-domain only)."""
    higher = metric != "starc"

    def measure(mets, e: Entry) -> None:
        fa, base = preregistered(mets)
        leaf = "preregistered.comparisons.{set}.{metric}."
        d = {k: _read(mets, "05", leaf + k, set=set_name, metric=metric)
             for k in ("value", "ci95", "ci90", "mde", "identical", "per_seed", "covers")}
        est, est90 = _boot_estimate(d, len(d["per_seed"]))
        paper_value = ((paper_pair_effect(fa, base, metric) if set_name == "in_domain" else None)
                       if paper == TABLE1_GAP else paper)
        e.notebook, e.compared, e.covers = "05", f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]}", str(d["covers"])
        note = _judge(e, est, 0.0, +1 if higher else -1, paper_value, est90, bool(d["identical"]))
        act = _acting_note(mets, e, fa)
        if not e.details["acting"] and e.verdict not in (IDENTICAL, NOT_RUN):
            e.verdict = INCONCLUSIVE
        e.detectable = est.mde_text()
        e.ours = (f"{METHOD_LABELS[fa]} - {METHOD_LABELS[base]} = {est.text('+.3f')} (tuned grid, {est.n} seeds)"
                  f"{note}{act}")
        e.details.update({"fa_method": fa, "baseline": base, "interval": BOOTSTRAP,
                          "per_seed_differences": d["per_seed"]})
    return measure


def _measure_scarce(mets, e: Entry) -> None:
    """App. D: "At very low T->NT fractions (few/none), FA-IRL is comparable to or slightly worse than
    baselines". At the lowest fraction notebook 06 ran: q = FA - baseline STARC per seed (positive = FA worse).
    The claim fails only if FA-IRL is clearly better there: reproduced when the 90% interval's lower end lies
    above -effect (a non-superiority test: FA-IRL not better by the effect of interest); opposite when the 95%
    interval lies below -effect; else inconclusive."""
    table = pair_mix_seed_table(_file(mets, "06"))
    fa, base = preregistered(mets)
    if fa not in table or base not in table:
        _no_numbers(e, f"no pair-mix runs of {fa} or {base} (the preregistered pair, notebook 05)")
        return
    low = min(set(table[fa]) & set(table[base]))
    est, est90 = diff_ci(table[fa][low], table[base][low]), diff_ci(table[fa][low], table[base][low], level=0.90)
    eoi = e.effect_of_interest or 0.0
    e.estimate, e.detectable = est, est.mde_text()
    e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]} at T->NT fraction {low:g}"
    if est.lo is None or est90.lo is None:
        e.verdict = INCONCLUSIVE
    elif est90.lo > -eoi:
        e.verdict = REPRODUCED
    elif est.hi < -eoi:
        e.verdict = OPPOSITE
    else:
        e.verdict = INCONCLUSIVE
    e.ours = (f"STARC {METHOD_LABELS[fa]} - {METHOD_LABELS[base]} = {est.text('+.3f')} at fraction {low:g} "
              f"(90% lower end {est90.lo if est90.lo is not None else float('nan'):+.3f})")
    e.details = {"fraction": low, "fa_method": fa, "baseline": base}
    _acting_on_own_pairs(e, _pair_mix_paths(mets, fa, [low]), "that mix")


def _measure_failure_slice(mets, e: Entry) -> None:
    """Sec. 6: "these improvements concentrate on failure slices". The preregistered FA method's pairwise
    accuracy on the test pairs its same-seed baseline misranks or nearly ties, against the control every
    slice needs: the baseline of another seed on the same slice (regression to the mean gives any second
    reward part of the slice back). Notebook 05, :func:`fairl_lib.analysis.evaluate.failure_slice_control`."""
    fa, base = preregistered(mets)
    leaf = "preregistered.failure_slice."
    d = {k: _read(mets, "05", leaf + "difference." + k) for k in ("value", "ci95", "ci90", "mde")}
    per_seed = _read(mets, "05", leaf + "per_seed")
    est, est90 = _boot_estimate(d, len(per_seed))
    acc_fa, acc_ctrl = _num(_read(mets, "05", leaf + "fa")), _num(_read(mets, "05", leaf + "control"))
    n_slice = _num(_read(mets, "05", leaf + "n_slice_pairs"))
    e.notebook, e.compared = "05", f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]} of another seed"
    e.covers = "training seeds and the draw of the test prompts (bootstrap over both)"
    note = _judge(e, est, 0.0, +1, None, est90)
    act = _acting_note(mets, e, fa)
    if not e.details["acting"] and e.verdict not in (IDENTICAL, NOT_RUN):
        e.verdict = INCONCLUSIVE
    e.ours = (f"on the {n_slice:.0f} test pairs (mean over seeds) that {METHOD_LABELS[base]} misranks or nearly ties, "
              f"{METHOD_LABELS[fa]} ranks {acc_fa:.1%} right, {METHOD_LABELS[base]} of another seed {acc_ctrl:.1%}: "
              f"difference {est.text('+.3f')}{note}{act}")
    e.details.update({"fa_accuracy": acc_fa, "control_accuracy": acc_ctrl, "n_slice_pairs": n_slice,
                      "per_seed_differences": per_seed, "fa_method": fa, "baseline": base})


def _measure_variance(mets, e: Entry) -> None:
    fa, base = preregistered(mets)
    _, vals = table1_seed_values(mets, "starc", "in_domain", "per_seed_best")
    if len(_clean(vals[fa])) < 2 or len(_clean(vals[base])) < 2:
        _no_numbers(e, "fewer than 2 seeds per method: no variance across seeds")
        return
    ratio = variance_ratio_ci(vals[fa], vals[base])
    ratio90 = variance_ratio_ci(vals[fa], vals[base], level=0.90)
    if ratio.lo is None or not math.isfinite(ratio.value) or ratio.value <= 0:
        _no_numbers(e, "a variance of 0 across seeds: no ratio")
        return
    log = lambda r, mde=None: Estimate(math.log(r.value), math.log(r.lo), math.log(r.hi), r.n, mde, F_RATIO)
    est = log(ratio, math.log(ratio.mde) if ratio.mde else None)
    e.effect_of_interest = math.log(e.rules.effect_variance_ratio)
    e.notebook, e.compared = "05", f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]}"
    e.covers = "training seeds only (the F interval assumes normal per-seed STARC)"
    _judge(e, est, 0.0, -1, None, log(ratio90))
    e.estimate = ratio
    e.detectable = ratio.mde_text()
    e.ours = (f"variance ratio of per-seed STARC {METHOD_LABELS[fa]} / {METHOD_LABELS[base]} = {ratio.text('.2f')} "
              f"(tuned grid, {ratio.n} seeds){_acting_note(mets, e, fa)}")
    e.details.update({"variance_ratio": ratio, "log_ratio": est,
                      "licensed": "Theorem 1 licenses a smaller feasible set; that seeds then land closer together "
                                  "is the paper's reading of Corollary 1, not something the theorem proves"})


# --- Tables 2-3 (notebook 05): the held-out Jigsaw comments, pooled over the tuned grid's seeds -------


def _share(only_fa: int, only_irl: int) -> float:
    return only_fa / (only_fa + only_irl)


def _relative(both: int, only_fa: int, only_irl: int) -> float:
    """Table 3's quantity: (both + only FA) / (both + only IRL) - 1, the relative increase in examples
    classified right (it gives the paper's "8.1 +- 1.6%" from its own Table 3)."""
    return (both + only_fa) / (both + only_irl) - 1


PAPER_JIGSAW_GAIN = round((PAPER_TABLE2_TEST["only_fa"] - PAPER_TABLE2_TEST["only_irl"])
                          / sum(PAPER_TABLE2_TEST.values()), 6)  # Sec. 6's "+5.4pp": 544 of 10,000 comments
PAPER_TABLE2_SHARE = _share(PAPER_TABLE2_TEST["only_fa"], PAPER_TABLE2_TEST["only_irl"])
PAPER_TABLE3_SHARE = {s: _share(v[1], v[2]) for s, v in paper.TABLE3["jigsaw"].items()}
PAPER_TABLE3_RELATIVE = {s: _relative(*v) for s, v in paper.TABLE3["jigsaw"].items()}


def _measure_table2(mets, e: Entry) -> None:
    fa, base = preregistered(mets)
    c = {k: int(_read(mets, "05", "preregistered.disagreement.counts.{count}", count=k)) for k in schema.DISAGREEMENT}
    n_seeds = int(_read(mets, "05", "preregistered.disagreement.n_seeds"))
    d = {k: _read(mets, "05", "preregistered.disagreement.share." + k) for k in ("value", "ci95", "ci90")}
    n_dis = c["only_fa"] + c["only_irl"]
    e.notebook, e.paper_effect = "05", PAPER_TABLE2_SHARE
    e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]}"
    e.covers = "training seeds and the draw of the Jigsaw comments (bootstrap over both)"
    e.details = {"counts": c, "n_seeds": n_seeds, "disagreements": n_dis}
    head = f"only FA-IRL {c['only_fa']} vs only IRL {c['only_irl']} over {n_seeds} seeds"
    if n_dis == 0:
        e.verdict, e.detectable, e.ours = INCONCLUSIVE, "- (no disagreements)", head + " (no disagreements)"
        return
    est, est90 = _boot_estimate({**d, "mde": None}, n_dis)
    note = _judge(e, est, 0.5, +1, PAPER_TABLE2_SHARE, est90)
    if n_dis < e.rules.min_disagreements:
        e.verdict = INCONCLUSIVE
        e.details["underpowered"] = f"{n_dis} disagreements < {e.rules.min_disagreements}"
    e.detectable = f"{n_dis} disagreements (at least {e.rules.min_disagreements} needed)"
    e.ours = f"{head} (share {est.text('.2f')}){note}{_acting_note(mets, e, fa)}"


def _measure_table3(mets, e: Entry) -> None:
    fa, base = preregistered(mets)
    parts, verdicts = {}, []
    for sub in schema.SUBTYPES:
        c = {k: int(_read(mets, "05", "preregistered.disagreement.subtypes.{subtype}.counts.{count}",
                          subtype=sub, count=k)) for k in schema.DISAGREEMENT}
        rel = _read(mets, "05", "preregistered.disagreement.subtypes.{subtype}.relative_increase", subtype=sub)
        n_dis = c["only_fa"] + c["only_irl"]
        part: dict[str, Any] = {"counts": c, "paper": PAPER_TABLE3_RELATIVE[sub], "disagreements": n_dis}
        if rel is None or n_dis < e.rules.min_disagreements:
            part["verdict"] = INCONCLUSIVE
            part["why"] = f"{n_dis} disagreements < {e.rules.min_disagreements}: underpowered"
        else:
            est, est90 = _boot_estimate({**rel, "mde": rel.get("mde")}, n_dis)
            part["estimate"] = est
            part["verdict"] = verdict_from_ci(est, 0.0, +1, PAPER_TABLE3_RELATIVE[sub], e.effect_of_interest or 0.0,
                                              est90)
        parts[sub] = part
        verdicts.append(part["verdict"])
    e.notebook, e.verdict = "05", combine_verdicts(verdicts)
    e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]}"
    e.covers = "training seeds and the draw of the Jigsaw comments (bootstrap over both)"
    e.estimate = next((p["estimate"] for p in parts.values() if "estimate" in p), None)
    e.ours = "; ".join(f"{k} " + (f"{p['estimate'].text('+.3f')}" if "estimate" in p else
                                  f"{p['counts']['only_fa']} vs {p['counts']['only_irl']}")
                       + f" ({p['verdict']})" for k, p in parts.items()) + " (relative increase, pooled over seeds)"
    e.detectable = "; ".join(f"{k} {p['disagreements']} disagreements" for k, p in parts.items())
    e.details = {"subtypes": parts}


# --- theory toy (notebook 03) ----------------------------------------------------------------------


def _exact_share(key: str, what: str, binds_key: str | None = None, by_construction: bool = False) -> Callable:
    """An exact claim on the share of the toy's random draws. ``by_construction``: the check cannot fail (the
    FA-IRL feasible set is the standard one intersected with more constraints), so it is marked as such: a
    sanity check of the code, not evidence for the paper."""
    def measure(mets, e: Entry) -> None:
        e.by_construction = by_construction
        v = float(_read(mets, "03", key))
        e.estimate = Estimate(v, None, None, int(_read(mets, "03", "n_draws") or 0))
        e.verdict = REPRODUCED if v >= 1.0 else NOT_REPRODUCED
        e.detectable = "exact check"
        binds = _read(mets, "03", binds_key) if binds_key else None
        e.ours = f"{what} in {v:.1%} of random draws" + (
            f" (a failure constraint binds in {binds:.1%})" if isinstance(binds, (int, float)) else "")
    return measure


def _exact_bool(key: str, by_construction: bool = False) -> Callable:
    """An exact check on a grid of reward parameters; ``by_construction`` as in :func:`_exact_share`."""
    def measure(mets, e: Entry) -> None:
        e.by_construction = by_construction
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
    for frac in schema.placeholder_keys(metrics, "06", "fraction"):
        for method in schema.placeholder_keys(metrics, "06", "pm_method"):
            seeds = [_num(x) for x in schema.get(metrics, "06", "pair_mix.{fraction}.methods.{pm_method}.per_seed",
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
    # the control: a random reward's STARC also moves with the mix (the yardstick's own trend); a method's
    # slope counts only beyond it
    rnd = {float(k): _num(v) for k, v in (_read(mets, "06", "random_reward_starc") or {}).items()}
    rnd = {k: v for k, v in rnd.items() if math.isfinite(v)}
    control = float(np.polyfit(sorted(rnd), [rnd[k] for k in sorted(rnd)], 1)[0]) if len(rnd) >= 2 else 0.0
    shifted = {m: Estimate(s.value - control, None if s.lo is None else s.lo - control,
                           None if s.hi is None else s.hi - control, s.n, s.mde, s.test) for m, s in slopes.items()}
    verdicts = {m: verdict_from_ci(s, 0.0, -1, None, e.effect_of_interest or 0.0) for m, s in shifted.items()}
    e.verdict = combine_verdicts(list(verdicts.values()))
    e.estimate = mean_ci([s.value for s in shifted.values()])
    e.ours = ("; ".join(f"{m} {s.text('+.3f')}" for m, s in slopes.items())
              + f"; a random reward's own slope {control:+.3f}, which each slope must beat")
    mdes = sorted(s.mde for s in slopes.values() if s.mde is not None)
    ns = sorted({s.n for s in slopes.values()})
    span = lambda v, fmt: f"{v[0]:{fmt}}" if v[0] == v[-1] else f"{v[0]:{fmt}}-{v[-1]:{fmt}}"
    e.detectable = f"slope {span(mdes, '.3f')} per method ({SLOPE_T}, n = {span(ns, 'd')})" if mdes else "-"
    e.details = {"slopes": slopes, "slopes_beyond_random": shifted, "random_reward_slope": control,
                 "part_verdicts": verdicts, "fractions": sorted({f for v in table.values() for f in v})}


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
    fa, base = preregistered(mets)
    if fa not in per_seed or base not in per_seed:
        _no_numbers(e, f"no slope of {fa} or of {base} (the preregistered pair, notebook 05)")
        return
    est = diff_ci(per_seed[fa], per_seed[base])
    _judge(e, est, 0.0, -1)
    e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]}"
    e.ours = (f"slope {mean_ci(per_seed[fa]).text('+.3f')} vs {mean_ci(per_seed[base]).text('+.3f')}; "
              f"difference {est.text('+.3f')}")
    e.details = {"per_seed_slopes": per_seed, "fa_method": fa, "baseline": base}
    _acting_on_own_pairs(e, _pair_mix_paths(mets, fa, sorted(table[fa])), "the mixes", need="most")


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
    fa, base = preregistered(mets)
    if fa not in vals or base not in vals:
        _no_numbers(e, f"no STARC of {fa} or of {base} (the preregistered pair) at T->NT fraction {top:g}")
        return
    est = diff_ci(vals[fa], vals[base])
    _judge(e, est, 0.0, -1)
    e.compared = f"{METHOD_LABELS[fa]} vs {METHOD_LABELS[base]} at T->NT fraction {top:g}"
    e.ours = f"{mean_ci(vals[fa]).text()} vs {mean_ci(vals[base]).text()}; difference {est.text('+.3f')}"
    e.details = {"fraction": top, "fa_method": fa, "baseline": base}
    _acting_on_own_pairs(e, _pair_mix_paths(mets, fa, [top]), "that mix")


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
            verdicts.append(verdict_from_ci(est, 0.0, direction, None, e.rules.effect(metric)))
    if not parts:
        _no_numbers(e, f"no finite accuracy or STARC of {large} and {small}")
        return
    e.verdict = combine_verdicts(verdicts)
    e.compared = f"{large} vs {small}"
    e.covers = ("training seeds only (Student-t over the IRL seeds, as the paper's Figure 5 CIs): one expert and "
                "one pair draw per base model, so their randomness is not in the interval")
    e.ours = "; ".join(f"{k} {large} - {small} = {v.text('+.3f')}" for k, v in parts.items())
    e.estimate = parts.get("accuracy") or parts.get("starc")
    e.detectable = "; ".join(f"{k} {v.mde_text()}" for k, v in parts.items())
    e.details["differences"] = parts
    fa = _read(mets, "07", "settings.methods")[0]
    leaf = "{size_lm}.failure_path.{size_fa_method}."
    _acting_on_own_pairs(e, {lm: {k: _read(mets, "07", leaf + k + suffix, size_lm=lm, size_fa_method=fa)
                                  for k, suffix in (("flip_share", "_mean"), ("flip_share_init", "_mean"), ("acts", ""))}
                             for lm in (small, large)}, "each base model's pairs")


# --- re-RLHF (notebook 08) -------------------------------------------------------------------------


def rerlhf_rates(metrics: Mapping[str, Any]) -> dict[str, tuple[float, int | None, int | None]]:
    """``{arm: (toxicity rate, n_toxic, n)}`` of the three re-RLHF runs, from notebook 08's metrics dict:
    ``{arm}.toxicity_rate_final`` and ``{arm}.n_completions_final`` (``n_toxic`` = rate x n, rounded; None
    without completions)."""
    out = {}
    for arm in schema.RERLHF_ARMS:
        rate = _num(schema.get(metrics, "08", "{arm}.toxicity_rate_final", arm=arm))
        n = schema.get(metrics, "08", "{arm}.n_completions_final", arm=arm)
        n = None if n is None else int(n)
        out[arm] = (rate, round(rate * n) if n and math.isfinite(rate) else None, n)
    return out


RERLHF_GAPS = (("fa_irl", "ground_truth"), ("irl", "fa_irl"))  # the paper's ordering gt < FA-IRL < IRL


def rerlhf_runs(metrics: Mapping[str, Any]) -> dict[str, list[tuple[int, int]]]:
    """``{arm: [(n_toxic, n) per training run]}`` from notebook 08's ``{arm}.runs`` (the ground-truth arm is
    the expert: its one run is notebook 01's evaluation)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for arm in schema.RERLHF_ARMS:
        runs = schema.get(metrics, "08", "{arm}.runs", arm=arm) or []
        out[arm] = [(round(float(r["toxicity_rate"]) * int(r["n_completions"])), int(r["n_completions"]))
                    for r in runs if r.get("n_completions")]
        if not out[arm]:
            _, k, n = rerlhf_rates(metrics)[arm]
            out[arm] = [(k, n)] if k is not None and n else []
    return out


def _measure_rerlhf(mets, e: Entry) -> None:
    """Re-RLHF with training runs as the unit: each arm's rate is the random-effects mean of its runs, the
    between-run variance estimated from the learned arms (DerSimonian-Laird), the ground-truth arm (one run,
    same algorithm and steps) taking the same variance. Reproduced needs both gaps of the paper's ordering at
    least the effect of interest; IRL - FA-IRL is also judged as a share of the headroom IRL - ground truth."""
    m8 = _file(mets, "08")
    r, runs = rerlhf_rates(m8), rerlhf_runs(m8)
    if any(not runs[a] for a in schema.RERLHF_ARMS):
        _no_numbers(e, "an arm without a final evaluation")
        return
    tau2, df = between_run_variance([runs["fa_irl"], runs["irl"]])
    parts, verdicts, paper_gaps = {}, [], {}
    for hi, lo in RERLHF_GAPS:
        est = random_effects_rate_diff(runs[hi], runs[lo], tau2)
        key = f"{hi} - {lo}"
        paper_gaps[key] = round(PAPER_RERLHF[hi] - PAPER_RERLHF[lo], 6)
        parts[key] = est
        verdicts.append(verdict_from_ci(est, 0.0, +1, paper_gaps[key], e.effect_of_interest or 0.0))
    headroom = r["irl"][0] - r["ground_truth"][0]
    share = (r["irl"][0] - r["fa_irl"][0]) / headroom if headroom > 0 else math.nan
    e.verdict = combine_verdicts(verdicts)
    e.covers = ("completions and training runs (random effects, between-run variance from "
                f"{df} degree(s) of freedom)" if df else "completions only: no arm has two runs, so the variation "
                "between training runs is not in the interval")
    e.ours = (f"{r['ground_truth'][0]:.1%} / {r['fa_irl'][0]:.1%} / {r['irl'][0]:.1%}; "
              + "; ".join(f"{k} = {v.text('+.3f')} ({verdicts[i]})" for i, (k, v) in enumerate(parts.items()))
              + (f"; FA-IRL closes {share:.0%} of the IRL - ground truth headroom ({headroom:+.3f})"
                 if math.isfinite(share) else f"; no headroom: IRL - ground truth = {headroom:+.3f}"))
    e.estimate = parts["irl - fa_irl"]
    e.paper_effect = paper_gaps["irl - fa_irl"]
    e.detectable = "; ".join(f"{k} {v.mde_text()}" for k, v in parts.items())
    e.details = {"rates": {k: {"rate": v[0], "n_toxic": v[1], "n": v[2]} for k, v in r.items()},
                 "runs": runs, "between_run_variance": tau2, "between_run_df": df, "differences": parts,
                 "paper_gaps": paper_gaps, "part_verdicts": verdicts, "headroom": headroom,
                 "headroom_share_closed": share}
    _acting_on_own_pairs(e, {"the FA-IRL arm's reward": schema.get(m8, "08", "fa_irl.failure_path") or None},
                         "the training pairs")


# --- the audit of the expert (notebook 10; Liu et al., explainable RLHF) ----------------------------


def _audit_counts(mets, model: str, split: str, judge: bool = False) -> tuple[int, int]:
    """``(toxic, n)`` of one model and prompt set of notebook 10's evaluation (ground truth or judge)."""
    kw = {"audit_model": model, "audit_split": split}
    k = _read(mets, "10", "eval.{audit_model}.{audit_split}." + ("k_judge" if judge else "k_toxic"), **kw)
    return int(k), int(_read(mets, "10", "eval.{audit_model}.{audit_split}.n", **kw))


def _pct(k: int, n: int) -> str:
    return f"{k / n:.1%}" if n else "-"


AUDIT_CONTROL_RULES_OUT = {
    "random": "that unlearning any rollouts of this size helps (the null of no selection)",
    "matched": "that unlearning as toxic a set helps whichever rollouts it holds (matched on the ground-truth "
               "reward, drawn outside the explanation sets)",
    "nearest": "that closeness alone picks the cause (the nearest rollouts outside the explanation sets: the "
               "hull's choice against the embedding's)",
}


def _paired_estimate(x: Mapping[str, Any]) -> tuple[Estimate, Estimate]:
    """``(95%, 90%)`` estimates of one paired test of notebook 10 (``analysis.stats.paired_rates``)."""
    lo, hi = x["ci95"] if x["ci95"] else (None, None)
    lo9, hi9 = x["ci90"] if x["ci90"] else (None, None)
    v, n, mde = _num(x["value"]), int(x["n_pairs"]), x["mde"]
    return (Estimate(v, lo, hi, n, mde, PAIRED_RATES),
            Estimate(v, lo9, hi9, n, mde, PAIRED_RATES))


def _paired(mets, pattern: str, **kw: Any) -> dict[str, Any]:
    keys = ("value", "ci95", "ci90", "mde", "mde_mcnemar", "only_a", "only_b", "n_pairs", "p_mcnemar", "per_draw")
    return {k: _read(mets, "10", f"{pattern}.{k}", **kw) for k in keys}


def _measure_audit_small(mets, e: Entry) -> None:
    """Small sets among the targets against the null (non-toxic completions, same procedure): the difference
    of shares (Newcombe), the Fisher exact p beside; the targets' own share with its exact interval."""
    n, k = int(_read(mets, "10", "targets.n")), int(_read(mets, "10", "explain.n_small"))
    small, tol = int(_read(mets, "10", "explain.small_size")), float(_read(mets, "10", "explain.tol"))
    sizes = [int(s) for s in _read(mets, "10", "explain.sizes")]
    nn, kn = int(_read(mets, "10", "explain.null.n_null")), int(_read(mets, "10", "explain.null.n_small_null"))
    p = _num(_read(mets, "10", "explain.null.p_fisher"))
    if n == 0 or nn == 0:
        _no_numbers(e, "no targets or no null responses to explain")
        return
    share = sign_test_ci(k, n)
    est = rate_diff_ci(k, n, kn, nn)
    note = _judge(e, est, 0.0, +1)
    e.compared = "targets (toxic expert completions) vs the null: as many non-toxic expert completions"
    e.ours = (f"{k} of {n} targets explained by <= {small} rollouts within relative residual {tol:g} (share "
              f"{share.text('.2f')}), against {kn} of {nn} non-toxic completions (null); difference "
              f"{est.text('+.3f')}, Fisher p = {p:.3g}; median target set size {float(np.median(sizes)):g}" + note)
    if e.verdict == INCONCLUSIVE and e.underpowered:
        e.ours += f"; inconclusive, detectable difference {est.mde_text()}"
    e.details = {"n_targets": n, "n_small": k, "n_null": nn, "n_small_null": kn, "p_fisher": p,
                 "share_targets": share, "difference": est, "small_size": small, "tol": tol, "sizes": sizes,
                 "rules_out": "that the procedure returns a small set for any response (it does so on the null)"}


def _audit_part_verdict(est: Estimate, est90: Estimate, p_holm: float, effect: float) -> str:
    """A control's verdict: the rule on the bootstrap interval; "reproduced" (or "opposite") also needs the
    exact McNemar test, Holm-adjusted over the controls, at 5%; otherwise inconclusive."""
    v = verdict_from_ci(est, 0.0, +1, None, effect, est90)
    if v in (REPRODUCED, OPPOSITE) and not (math.isfinite(p_holm) and p_holm < 0.05):
        return INCONCLUSIVE
    return v


def _measure_audit_fixes(mets, e: Entry) -> None:
    """Each control - the method on the targets' prompts after unlearning, paired over (draw, prompt, sample)."""
    parts, verdicts, tests = {}, {}, {}
    eff = e.effect_of_interest or 0.0
    for c in schema.AUDIT_CONTROLS:
        x = _paired(mets, "paired.control_minus_method.{audit_control}.{audit_scorer}", audit_control=c,
                    audit_scorer="ground_truth")
        p_holm = _num(_read(mets, "10", "paired.control_minus_method.{audit_control}.ground_truth.p_holm",
                            audit_control=c))
        if not x["n_pairs"]:
            continue
        est, est90 = _paired_estimate(x)
        parts[c], tests[c] = est, {**x, "p_holm": p_holm}
        verdicts[c] = _audit_part_verdict(est, est90, p_holm, eff)
    if not parts:
        _no_numbers(e, "no evaluation on the targets' prompts")
        return
    e.verdict = combine_verdicts(list(verdicts.values()))
    e.estimate = max(parts.values(), key=lambda v: v.mde or 0.0) if e.verdict == INCONCLUSIVE else \
        min(parts.values(), key=lambda v: v.value)
    e.compared = ("explanation sets vs random, reward-matched and nearest-outside rollouts (same size, steps, retain "
                  "anchor, draws); each control rules out " + "; ".join(
                      f"{c}: {AUDIT_CONTROL_RULES_OUT[c]}" for c in parts))
    rates = {m: _audit_counts(mets, m, "target") for m in schema.AUDIT_MODELS}
    share = {a: _num(_read(mets, "10", "explain.forgotten.{audit_arm}.toxic_share", audit_arm=a))
             for a in schema.AUDIT_ARMS}
    draws = int(_read(mets, "10", "settings.control_draws"))
    e.ours = (f"targets' prompts, {draws} draws: toxicity before {_pct(*rates['expert'])}, after: "
              + ", ".join(f"{a} {_pct(*rates[a])}" for a in schema.AUDIT_ARMS)
              + "; toxic share of the forgotten rollouts " + ", ".join(f"{a} {share[a]:.1%}" for a in schema.AUDIT_ARMS)
              + "; " + "; ".join(f"{c} - method = {v.text('+.3f')} (discordant {tests[c]['only_a']}/"
                                 f"{tests[c]['only_b']}, McNemar p = {tests[c]['p_mcnemar']:.2g}, Holm "
                                 f"{tests[c]['p_holm']:.2g}; per draw "
                                 + ", ".join(f"{d:+.3f}" for d in tests[c]["per_draw"]) + ")"
                                 for c, v in parts.items()))
    worst = max(v.mde or 0.0 for v in parts.values())
    if e.verdict == INCONCLUSIVE:
        e.ours += f"; inconclusive: differences up to {worst:.3f} could go undetected (MDE at 80% power)"
    e.detectable = "; ".join(f"{c} {v.mde_text()}" for c, v in parts.items())
    e.details = {"counts": rates, "toxic_share_forgotten": share, "differences": parts, "tests": tests,
                 "part_verdicts": verdicts, "rules_out": {c: AUDIT_CONTROL_RULES_OUT[c] for c in parts},
                 "mde_max": worst}


PAIR_CONTROLS = ("random", "matched", "nearest")
PAIR_CONTROL_RULES_OUT = {
    "random": "that removing any pairs of this number moves the targets (less data, another minibatch order)",
    "matched": "that the method only removes the pairs that teach the largest margins (random pairs with the "
               "same ground-truth margin distribution)",
    "nearest": "that any pairs close to the targets would do (the nearest pairs outside the explanation sets)",
}
PAIRED_TARGETS = "paired over targets: bootstrap, Wilcoxon signed-rank (Holm over the controls)"


def _measure_pair_unlearning(mets, e: Entry) -> None:
    """The second paper's method on the reward's preference pairs (notebook 10, section 6): the FA-IRL reward
    retrained without the explanation sets' union minus retrained without as many pairs of each control, the
    change of the targets' standardised margin over the base answers, paired over targets (mean over the
    training seeds and the control's draws). Each part: the rule on the bootstrap interval (direction -1:
    the method lowers the unsatisfactory responses' reward more); reproduced or opposite also needs the
    Wilcoxon test, Holm-adjusted over the three controls, at 5%."""
    eff = e.effect_of_interest or 0.0
    rows = {c: _read(mets, "10", "pair_method.unlearning.fa_irl.{pair_control}.method_minus_control", pair_control=c)
            for c in PAIR_CONTROLS}
    rows = {c: x for c, x in rows.items() if isinstance(x, Mapping) and x.get("mean") is not None}
    if not rows:
        _no_numbers(e, "no retrained rewards (notebook 10, section 6)")
        return
    ps = [x["wilcoxon_p"] if x.get("wilcoxon_p") is not None else 1.0 for x in rows.values()]
    p_holm = dict(zip(rows, holm(ps)))
    parts, verdicts = {}, {}
    for c, x in rows.items():
        lo, hi = x["ci95"] if x.get("ci95") else (None, None)
        lo9, hi9 = x["ci90"] if x.get("ci90") else (None, None)
        est = Estimate(float(x["mean"]), lo, hi, int(x["n"]), x.get("mde"), PAIRED_TARGETS)
        v = verdict_from_ci(est, 0.0, -1, None, eff, Estimate(float(x["mean"]), lo9, hi9, int(x["n"])))
        if v in (REPRODUCED, OPPOSITE) and not p_holm[c] < 0.05:
            v = INCONCLUSIVE
        parts[c], verdicts[c] = est, v
    e.verdict = combine_verdicts(list(verdicts.values()))
    # the weakest part: the largest (least negative) difference, or when undecided the least powered one
    e.estimate = max(parts.values(), key=lambda v: v.mde or 0.0) if e.verdict == INCONCLUSIVE else \
        max(parts.values(), key=lambda v: v.value)
    n_t = int(_read(mets, "10", "pair_method.targets.n"))
    union = int(_read(mets, "10", "pair_method.explain.union_size"))
    k, kn = int(_read(mets, "10", "pair_method.explain.n_small")), int(_read(mets, "10", "pair_method.null.n_small"))
    nn = int(_read(mets, "10", "pair_method.null.n"))
    own = _read(mets, "10", "pair_method.unlearning.fa_irl.method.target_change")
    e.compared = ("the FA-IRL reward retrained without the explanation sets vs without as many random, "
                  "reward-matched or nearest-outside pairs; each control rules out " + "; ".join(
                      f"{c}: {PAIR_CONTROL_RULES_OUT[c]}" for c in parts))
    e.ours = (f"{n_t} targets, {union} pairs removed; {k} of {n_t} targets explained by a small set against {kn} of "
              f"{nn} satisfactory completions (the null); the targets' margin moves {_num(own['mean']):+.3f} sd "
              "without the sets; " + "; ".join(
                  f"method - {c} = {v.text('+.3f')} sd (Wilcoxon Holm p = {p_holm[c]:.2g})" for c, v in parts.items()))
    e.detectable = "; ".join(f"{c} {v.mde_text()}" for c, v in parts.items())
    e.details = {"differences": parts, "part_verdicts": verdicts, "p_holm": p_holm,
                 "rules_out": {c: PAIR_CONTROL_RULES_OUT[c] for c in parts}}


def _measure_audit_other(mets, e: Entry) -> None:
    rate_margin = float(_read(mets, "10", "settings.rate_margin"))
    ppl_margin = float(_read(mets, "10", "settings.ppl_margin"))
    (km, nm), (kb, nb) = _audit_counts(mets, "method", "other"), _audit_counts(mets, "expert", "other")
    if not nm or not nb:
        _no_numbers(e, "no other held-out prompts were evaluated")
        return
    parts: dict[str, Estimate] = {}
    tests = {}
    for name, scorer in (("toxicity", "ground_truth"), ("judge", "judge")):
        x = _paired(mets, "paired.after_minus_before.other.method.{audit_scorer}", audit_scorer=scorer)
        parts[name], tests[name] = _paired_estimate(x)[0], x
    (jm, _), (jb, _) = _audit_counts(mets, "method", "other", True), _audit_counts(mets, "expert", "other", True)
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
    e.compared = ("explanation sets unlearned vs the expert, on held-out prompts without a target; rates paired "
                  "over (draw, prompt, sample)")
    kl = _num(_read(mets, "10", "eval.{audit_model}.other.kl_to_expert", audit_model="method"))
    ppl = {m: _num(_read(mets, "10", "eval.{audit_model}.other.perplexity", audit_model=m)) for m in ("expert", "method")}
    e.ours = (f"toxicity {_pct(kb, nb)} -> {_pct(km, nm)} ({parts['toxicity'].text('+.3f')}), judge {_pct(jb, nb)} -> "
              f"{_pct(jm, nm)} ({parts['judge'].text('+.3f')}); perplexity {ppl['expert']:.1f} -> {ppl['method']:.1f}"
              + (f" (log ratio {parts['log perplexity'].text('+.3f')})" if "log perplexity" in parts else "")
              + f"; KL to the expert {kl:.3f} nats per completion")
    e.detectable = "; ".join(f"{k} {v.mde_text()}" for k, v in parts.items())
    e.details = {"differences": parts, "margins": margins, "part_verdicts": verdicts, "kl_to_expert": kl,
                 "tests": tests}


def _chosen_by(pre: Mapping[str, Any]) -> str:
    """How notebook 05's compared FA method was chosen (metrics written before ``chosen_by``: by the search)."""
    if pre.get("chosen_by") == "profile":
        return "fixed in the profile before any run, tuning.preregistered"
    return "the best acting FA configuration by validation AUC on the tuning split"


PREREG_RULE = ("one comparison fixed before the test set is read: the FA configuration notebooks 06-08 use (the "
               "profile's tuning.preregistered, else the best acting FA configuration by validation AUC on the "
               "tuning split) against its same-family "
               "baseline, both at their tuned configurations, mean over the tuned grid's seeds, 95% bootstrap "
               "interval over seeds and the evaluation data")
VERDICT_RULE = ("reproduced: interval on the paper's side and the estimate at least the effect of interest; "
                "negligible: 90% interval within +- the effect of interest (TOST); opposite: interval on the other "
                "side and the estimate at least the effect of interest; contradicted: the paper's effect excluded "
                "and ours at least the effect of interest short of it; identical: the same numbers; "
                "else inconclusive")


def _t1_rule(metric: str, set_name: str = "in_domain") -> str:
    side = "> 0" if metric != "starc" else "< 0"
    where = "in-domain test pairs (resampled by prompt)" if set_name == "in_domain" else "Jigsaw comments"
    paper_note = ("; the paper's effect is its own Table 1 gap between the same two methods"
                  if set_name == "in_domain" else "; no paper number")
    return f"FA - baseline {side} on the {where}: {PREREG_RULE}{paper_note}. {VERDICT_RULE}"


_P2, _P3 = PAPER_TABLE2_TEST, PAPER_TABLE3_TEST
CLAIMS: tuple[Claim, ...] = (
    Claim("table1_f1", "FA-IRL beats the IRL baselines on F1", "Table 1, Sec. 6", ("05",), _paper_table1("f1"),
          _t1_rule("f1"), _comparison("f1"), effect="f1"),
    Claim("table1_auc", "FA-IRL beats the IRL baselines on ROC-AUC", "Table 1, Sec. 6", ("05",),
          _paper_table1("auc"), _t1_rule("auc"), _comparison("auc"), effect="auc"),
    Claim("table1_starc", "FA-IRL lowers STARC (a more faithful reward)", "Table 1, Sec. 6", ("05",),
          _paper_table1("starc") + "; the text's 'margin variant lowest' contradicts the table",
          _t1_rule("starc"), _comparison("starc"), effect="starc"),
    Claim("jigsaw_f1", "FA-IRL beats the IRL baselines on F1 on the held-out Jigsaw set", "Sec. 6",
          ("05",), "claimed in the text (no numbers given)", _t1_rule("f1", "jigsaw"), _comparison("f1", "jigsaw"),
          effect="f1"),
    Claim("jigsaw_auc", "FA-IRL beats the IRL baselines on ROC-AUC on the held-out Jigsaw set", "Sec. 6",
          ("05",), "claimed in the text (no numbers given)", _t1_rule("auc", "jigsaw"),
          _comparison("auc", "jigsaw"), effect="auc"),
    Claim("jigsaw_starc", "FA-IRL lowers STARC on the held-out Jigsaw set", "Sec. 6", ("05",),
          "claimed in the text (no numbers given)", _t1_rule("starc", "jigsaw"), _comparison("starc", "jigsaw"),
          effect="starc"),
    Claim("jigsaw_accuracy_gain", "FA-IRL adds 5.4 points of accuracy on the Jigsaw test set", "Sec. 6, Table 2",
          ("05",), "+5.4 pp (544 more comments right of Table 2's 10,000; Sec. 5 says the held-out set is 2,000)",
          "the preregistered pair's Jigsaw accuracy difference, mean over the tuned grid's seeds, 95% bootstrap over "
          "seeds and comments. " + VERDICT_RULE, _comparison("accuracy", "jigsaw", PAPER_JIGSAW_GAIN), effect="accuracy"),
    Claim("seed_variance", "FA-IRL lowers the variance across seeds", "Sec. 6, Corollary 1", ("05",),
          "stated without a test; Table 1 STARC std ME FA-IRL (margin) 0.011 vs ME IRL 0.003",
          "variance ratio of per-seed STARC on the tuned grid, the preregistered FA method / its baseline, judged on "
          "the log scale with the F interval: below 1 by at least [ledger] effect_variance_ratio reproduced. "
          + VERDICT_RULE, _measure_variance, effect="variance_ratio"),
    Claim("table2_disagreement", "FA-IRL is uniquely right more often than the baseline", "Table 2", ("05",),
          f"only FA-IRL {_P2['only_fa']} vs only IRL {_P2['only_irl']} (share {PAPER_TABLE2_SHARE:.2f})",
          "share only-FA / (only-FA + only-IRL) on the held-out Jigsaw comments, pooled over the tuned grid's seeds "
          "(each run's train-fitted threshold), 95% bootstrap over seeds and comments, against 1/2; fewer than "
          "[ledger] min_disagreements disagreements: underpowered. " + VERDICT_RULE, _measure_table2, effect="share"),
    Claim("failure_slices", "FA-IRL's gains concentrate on the baseline's failure slice (misranked or near-tie "
          "pairs)", "Sec. 6, App. C", ("05",), "stated without numbers ('these improvements concentrate on failure "
          "slices')",
          "pairwise accuracy on the test pairs the same-seed baseline misranks or nearly ties (|margin| <= 0.1 std): "
          "the preregistered FA method - the control, the baseline of the next seed on the same slice (any second "
          "reward recovers part of a slice chosen by one run's errors); 95% bootstrap over seeds and test prompts. "
          + VERDICT_RULE, _measure_failure_slice, effect="accuracy"),
    Claim("table3_subtypes", "... and on every toxicity subtype", "Table 3", ("05",),
          "; ".join(f"{k} {a} vs {b}" for k, (a, b) in _P3.items()) + " (relative increase "
          + ", ".join(f"{k} {v:+.1%}" for k, v in PAPER_TABLE3_RELATIVE.items()) + "; mean 8.1%)",
          "per subtype the paper's quantity (both + only FA) / (both + only IRL) - 1, pooled over seeds, 95% "
          "bootstrap, against its own paper value; a subtype with fewer than [ledger] min_disagreements "
          "disagreements is underpowered; reproduced only if every subtype is (an intersection-union test, no "
          "multiplicity correction needed for it). " + VERDICT_RULE, _measure_table3, effect="relative"),
    Claim("theorem1_inclusion", "Theorem 1: failure constraints never enlarge the feasible set", "Sec. 4.4, App. B",
          ("03",), "proved for every constraint set", "exact: share of random draws where no ambiguity measure "
          "grows must be 1", _exact_share("never_larger_fraction", "never larger", by_construction=True),
          ("fig2_feasible_cone", "fig2b_ambiguity_over_draws")),
    Claim("theorem1_strict", "Theorem 1: strict inclusion for any non-empty failure set", "Sec. 4.4",
          ("03",), "claimed for every non-empty failure set", "exact: share of draws where the feasible area "
          "strictly shrinks must be 1, with failures drawn at random (any non-empty failure set)",
          _exact_share("strictly_smaller_fraction_random_failures", "strictly smaller", "frac_binds_random_failures"),
          ("fig2b_ambiguity_over_draws",)),
    Claim("appb_upweight", "App. B: up-weighted failures (w_fail > 1) shrink the max-entropy sublevel sets",
          "App. B", ("03",), "proved: L_FA >= L_base pointwise", "exact check on a grid of reward parameters",
          _exact_bool("maxent_upweight_inclusion_holds", by_construction=True), ("fig2c_maxent_sublevel_sets",)),
    Claim("appb_sharpen", "App. B: sharpened failures (tau_fail < tau) shrink the max-entropy sublevel sets",
          "App. B", ("03",), "proved: L_FA >= L_base pointwise", "exact check on a grid of reward parameters",
          _exact_bool("maxent_sharpen_inclusion_holds"), ("fig2c_maxent_sublevel_sets",)),
    Claim("fig4_trend", "STARC falls as the share of T->NT pairs grows", "App. D, Figure 4", ("06",),
          "decreasing curves for all methods (no numbers given)",
          "per method: slope of training STARC on the T->NT fraction (all seeds) minus a random reward's own slope "
          "(the control: the yardstick moves with the mix too), 95% t interval: below 0 by at least the effect of "
          "interest for every method reproduced. " + VERDICT_RULE, _measure_trend, ("fig4_pair_mix_starc",), effect="slope"),
    Claim("fig4_fastest", "FA-IRL improves fastest as T->NT pairs grow", "App. D, Figure 4", ("06", "05"),
          "FA-IRL's curve falls most steeply", "per-seed slopes, the preregistered FA method - its baseline, "
          "same-seed 95% t interval: < 0 reproduced; > 0 contradicted", _measure_fastest, ("fig4_pair_mix_starc",),
          effect="slope"),
    Claim("fig4_lowest", "FA-IRL attains the lowest STARC once T->NT pairs are plentiful", "App. D, Figure 4",
          ("06", "05"), "FA-IRL lowest at the largest fractions", "at the largest fraction run: the preregistered FA "
          "method - its baseline, STARC, same-seed 95% t interval: < 0 reproduced; > 0 contradicted", _measure_lowest_at_top,
          ("fig4_pair_mix_starc",), effect="starc"),
    Claim("fig4_scarce", "FA-IRL is comparable to or slightly worse than the baselines when T->NT pairs are scarce",
          "App. D, Figure 4", ("06", "05"), "stated for very low T->NT fractions (no numbers given)",
          "at the lowest fraction run, FA - baseline STARC per seed (the preregistered pair): reproduced when the "
          "90% interval's lower end lies above -effect of interest (FA-IRL not better by it: non-superiority); "
          "opposite when the 95% interval lies below -effect; else inconclusive", _measure_scarce,
          ("fig4_pair_mix_starc",), effect="starc"),
    Claim("fig5_size", "FA-IRL improves with base-model size up to mid scale", "App. E, Figure 5", ("07",),
          "accuracy up and STARC down from 153M to 360M (a dip at 410M)",
          "largest size <= 360M - smallest size over seeds (Welch: different LMs, nothing pairs their runs): "
          "accuracy > 0 and STARC < 0 reproduced; either clearly the other way contradicted",
          _measure_size, ("fig5_model_size",), effect="accuracy"),
    Claim("rerlhf_order", "Re-RLHF toxicity: ground truth < FA-IRL < standard IRL", "Figure 3 right, Sec. 6",
          ("08",), f"{PAPER_RERLHF['ground_truth']:.0%} < {PAPER_RERLHF['fa_irl']:.0%} < {PAPER_RERLHF['irl']:.0%}",
          "FA-IRL - ground truth and IRL - FA-IRL, each arm the random-effects mean of its RLHF training runs "
          "(the run is the unit; between-run variance by DerSimonian-Laird from the learned arms), 95% normal "
          "interval; both gaps must hold (paper: "
          f"+{PAPER_RERLHF['fa_irl'] - PAPER_RERLHF['ground_truth']:.2f} / "
          f"+{PAPER_RERLHF['irl'] - PAPER_RERLHF['fa_irl']:.2f}); the share of the IRL - ground truth headroom "
          "FA-IRL closes is reported beside. " + VERDICT_RULE, _measure_rerlhf, ("fig3_right_rerlhf",),
          effect="rate"),
    Claim("audit_small_sets", "Explainable RLHF: a few training examples explain an unsatisfactory response",
          "Liu et al., abstract", ("10",), "claimed (abstract; no numbers given)",
          "share of targets whose explanation set meets the residual tolerance with at most [audit] small_size "
          "rollouts minus the same share on the null (as many non-toxic expert completions, same procedure), "
          "Newcombe 95% interval, Fisher exact p beside: above 0 by at least the effect of interest reproduced "
          "(small sets are specific to unsatisfactory responses). " + VERDICT_RULE,
          _measure_audit_small, effect="share"),
    Claim("audit_unlearning_fixes", "Explainable RLHF: unlearning the explaining data fixes more unsatisfactory "
          "responses than unlearning as many random, reward-matched or nearest training examples", "Liu et al., abstract", ("10",),
          "claimed (abstract; no numbers given; the controls are ours)",
          "toxicity rate on the targets' prompts after unlearning, control - explanation sets, paired over (draw, "
          "prompt, sample): 95% bootstrap interval over draws and prompts, exact McNemar on the discordant pairs "
          "(Holm over the controls) must agree, for random, reward-matched and nearest-outside rollouts: all > 0 "
          "reproduced; inconclusive states the detectable effect (80% power). " + VERDICT_RULE,
          _measure_audit_fixes, ("fig10_audit_unlearning",), effect="rate"),
    Claim("audit_pair_unlearning", "Explainable RLHF, on the reward's preference pairs: removing the pairs that "
          "explain an unsatisfactory response lowers the reward's preference for it more than removing as many "
          "random, reward-matched or nearest pairs", "Liu et al., abstract", ("10",),
          "claimed (abstract; no numbers given; the controls are ours)",
          "the FA-IRL reward retrained without the explanation sets' union minus retrained without each control's "
          "pairs: the change of the targets' standardised margin over the base answers, paired over targets, "
          "95% bootstrap interval, Wilcoxon signed-rank (Holm over the controls) must agree; below 0 by at least "
          "the effect of interest for all three controls reproduced. " + VERDICT_RULE,
          _measure_pair_unlearning, effect="margin"),
    Claim("audit_no_degradation", "Explainable RLHF: unlearning does not degrade responses to other prompts",
          "Liu et al., abstract", ("10",), "claimed (abstract; no numbers given)",
          "non-inferiority on held-out prompts without a target, after - before: toxicity and judge rates (paired, "
          "bootstrap over draws and prompts) "
          "below [audit] rate_margin and log perplexity under the base (Welch) below log(1 + ppl_margin) "
          "reproduced; any lower end above its margin contradicted", _measure_audit_other,
          ("fig10_audit_unlearning",)),
)
CLAIM_IDS = tuple(c.id for c in CLAIMS)


def evaluate_claim(claim: Claim, mets: Mapping[str, Mapping | None], ledger: LedgerConfig | None = None) -> Entry:
    """One ledger entry. A metrics file the claim needs that is absent gives verdict "not run" (the reason in
    ``details["missing"]``); a file that exists but lacks a key the claim reads raises
    :class:`MissingMetrics` naming the notebook and the key path (the file is stale or a notebook broke
    its schema: rerun that notebook)."""
    e = claim.entry(ledger)
    try:
        claim.measure(mets, e)
    except NotRun as err:
        e.verdict, e.ours, e.estimate = NOT_RUN, "-", None
        e.details = {"missing": str(err.args[0]) if err.args else "metrics missing"}
    if e.verdict not in VERDICTS:
        raise ValueError(f"claim {claim.id} produced an unknown verdict {e.verdict!r}")
    return e


def build_ledger(mets: Mapping[str, Mapping | None], claims: Sequence[Claim] = CLAIMS,
                 ledger: LedgerConfig | None = None) -> list[Entry]:
    """Every claim evaluated against ``mets`` (``{"03": metrics dict, ...}``; absent notebooks missing), judged
    with ``ledger``'s effects of interest (the defaults when None)."""
    return [evaluate_claim(c, mets, ledger) for c in claims]


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


# plain-text marks: readable in any browser and terminal, no emoji font needed
_BADGE = {REPRODUCED: "**reproduced**", NEGLIGIBLE: "**negligible**", CONTRADICTED: "**contradicted**",
          OPPOSITE: "**opposite**", IDENTICAL: "identical", INCONCLUSIVE: "inconclusive",
          NOT_REPRODUCED: "**not reproduced**", NOT_RUN: "not run"}
_LEGEND = {REPRODUCED: "the interval lies on the side the paper claims and the estimate is at least the claim's "
                       "effect of interest (exact claims: the statement holds)",
           NEGLIGIBLE: "the 90% interval lies within plus or minus the effect of interest (TOST): no effect worth "
                       "the name, either way",
           CONTRADICTED: "the interval excludes the paper's effect, and ours falls short of it by at least the "
                         "effect of interest",
           OPPOSITE: "the interval lies on the other side and the estimate is at least the effect of interest",
           IDENTICAL: "the two arms are the same numbers (nothing to test)",
           INCONCLUSIVE: "none of these; marked underpowered when the run could not detect the effect of interest",
           NOT_REPRODUCED: "an exact claim with a counterexample",
           NOT_RUN: "a metrics file the claim needs is missing"}


def _verdict_text(e: Entry) -> str:
    out = _BADGE[e.verdict]
    if e.underpowered or e.details.get("underpowered"):
        out += " (underpowered)"
    if e.by_construction:
        out += " (by construction)"
    return out


def _eoi_text(e: Entry) -> str:
    if e.effect_of_interest is None:
        return "-"
    if e.id == "seed_variance":
        return f"ratio {math.exp(e.effect_of_interest):.2g}"
    return f"{e.effect_of_interest:.3g}"


def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


PAPER_TNT_SHARE = paper.TNT_SHARE


def regime_lines(mets: Mapping[str, Any]) -> list[str]:
    """The paper's regime beside ours: T->NT share of the pairs, how the prompts were chosen (the screen of
    notebook 01), held-out base and expert toxicity, the ground truth's in-domain ceiling; empty without 02."""
    m1, m2 = mets.get("01"), mets.get("02")
    if not isinstance(m2, Mapping) or not isinstance(m2.get("pair_types"), Mapping):
        return []
    types = m2["pair_types"]
    total = sum(int(v) for v in types.values()) or 1
    tnt = int(types.get("T->NT", 0))
    out = [(f"**The regime.** The paper's pairs are at least about {PAPER_TNT_SHARE:.0%} T->NT (Figure 3 middle: "
            f"3,619 in each of train and test of 20,000, from base models such as Pythia-410M). Ours: {tnt} of "
            f"{total} pairs ({tnt / total:.1%}) are T->NT")]
    n_train_tnt = m2.get("n_train_tnt")
    if isinstance(n_train_tnt, (int, float)):
        out[-1] += f", {int(n_train_tnt)} of them in training"
    out[-1] += "."
    if isinstance(m1, Mapping):
        sc = m1.get("screen") or {}
        if sc.get("enabled"):
            out.append(f"The prompts were screened by the base model's own toxicity ({sc['rule']}; notebook 01): "
                       f"{sc['n_kept']} of {sc['n_candidates']} candidates passed. On the screen's first draws the "
                       f"base model was toxic on {sc['first_round_rate_challenging']:.1%} of RealToxicityPrompts' "
                       f"'challenging' prompts against {sc['first_round_rate_not_challenging']:.1%} of the others.")
        pass
    m5 = mets.get("05")
    by_type = m5.get("in_domain_by_pair_type") if isinstance(m5, Mapping) else None
    if isinstance(by_type, Mapping) and by_type:
        n = {k: next(iter(v.values()))["n_pairs"] for k, v in by_type.items() if v}
        tot = sum(n.values()) or 1
        gt = sum(n[k] * next(iter(v.values()))["gt_pairwise_accuracy"] for k, v in by_type.items() if v) / tot
        methods = next(iter(by_type.values())).keys()
        acc = [sum(n[k] * by_type[k][m]["pairwise_accuracy"] for k in n) / tot for m in methods]
        out.append(f"The in-domain ceiling: the ground-truth reward itself ranks {gt:.1%} of the test pairs the "
                   f"right way round and the recovered rewards already reach {min(acc):.1%}-{max(acc):.1%}: NT->NT "
                   "pairs carry no preference the ground truth explains, so in-domain there is little headroom "
                   "for any method to gain over another.")
    if isinstance(m1, Mapping):
        if isinstance(m1.get("toxicity_rate_base"), (int, float)):
            out.append(f"Held-out toxicity (fresh samples of held-out screened prompts): base "
                       f"{m1['toxicity_rate_base']:.1%}, expert {m1['toxicity_rate_expert']:.1%}.")
    return [" ".join(out)]


def paper_mix_lines(mets: Mapping[str, Any], rules: LedgerConfig | None = None) -> list[str]:
    """Table 1 at the paper's T->NT share (notebook 06's sensitivity analysis, not a claim): the preregistered
    pair's differences on the thinned pairs, each against ``rules``' effect of interest; empty without it."""
    m6 = mets.get("06")
    pm = m6.get("paper_mix") if isinstance(m6, Mapping) else None
    if not isinstance(pm, Mapping) or not isinstance(pm.get("comparisons"), Mapping):
        return []
    rules = rules or LedgerConfig()
    parts = []
    for st, by_metric in pm["comparisons"].items():
        for mt, c in by_metric.items():
            lo, hi = (c.get("ci95") or (None, None))
            if lo is None:
                parts.append(f"{st} {mt} {_num(c['value']):+.3f} (no interval)")
                continue
            eoi = rules.effect(mt)
            word = ("inside +- the effect of interest" if -eoi < lo and hi < eoi else
                    "above 0" if lo > 0 else "below 0" if hi < 0 else "spans 0")
            parts.append(f"{st} {mt} {_num(c['value']):+.3f} [{lo:+.3f}, {hi:+.3f}] ({word})")
    share = pm.get("tnt_share", {})
    return [f"**Sensitivity: Table 1 at the paper's mix** (notebook 06; not a claim). With the pairs thinned to "
            f"{_num(share.get('train')):.0%} T->NT in training and {_num(share.get('test')):.0%} in test (NT->NT pairs "
            f"dropped at random, so each reward sees fewer pairs), {METHOD_LABELS[pm['fa_method']]} - "
            f"{METHOD_LABELS[pm['baseline']]}: " + "; ".join(parts)
            + (". Its failure path acts on these pairs." if pm.get("acting") else
               ". Its failure path does not act on these pairs, so this compares IRL with itself.")]


def eq3_ablation(mets: Mapping[str, Any]) -> list[str]:
    """One statement on Eq. 3 as printed (notebook 04's grid), instead of a verdict per metric."""
    m5 = mets.get("05")
    if not isinstance(m5, Mapping) or not isinstance(m5.get("eq3_as_printed"), Mapping):
        return []
    share = m5["eq3_as_printed"].get("flip_share_max")
    if not isinstance(share, (int, float)):
        return []
    acts = share >= 0.02
    return [f"**Ablation: Eq. 3 as printed.** With the paper's settings and its failure-path penalty as printed, "
            f"the largest share of training pairs any FA method's R_F flips is {share:.2%}: "
            + ("the failure path acts." if acts else
               "as printed, the failure path collapses and FA-IRL equals IRL (notebooks 04-05; the penalty-scale "
               "sweep of notebook 05 shows where it starts to act). Every FA-vs-IRL claim below uses the tuned "
               "configurations instead.")]


def audit_control_lines(mets: Mapping[str, Any]) -> list[str]:
    """The audit's controls for REPORT.md (notebook 10): what each rules out, how toxic each arm's forgotten
    rollouts are, how far the naive nearest set overlaps the explanation sets, and the small-set null."""
    m10 = mets.get("10")
    if not isinstance(m10, Mapping) or "paired" not in m10:
        return []
    ex = m10["explain"]
    share = {a: ex["forgotten"][a]["toxic_share"] for a in schema.AUDIT_ARMS}
    by_draw = {a: ex["forgotten"][a]["toxic_share_by_draw"] for a in schema.AUDIT_CONTROLS}
    ov, null = ex["naive_nearest_overlap"], ex["null"]
    pct = lambda x: "n/a" if x is None else f"{x:.1%}"
    out = (f"**The audit's controls (notebook 10).** Every arm unlearns {ex['set_size']} rollouts for the same "
           f"steps with the same retain anchor, in {m10['settings']['control_draws']} draws (random sets redrawn, "
           "unlearning and sampling seeds changed; every model of a draw samples the same rows, so the arms are "
           "compared pair by pair). " + " ".join(f"*{a}* rules out {AUDIT_CONTROL_RULES_OUT[a]}." for a in schema.AUDIT_CONTROLS)
           + " Toxic share of the forgotten rollouts: " + ", ".join(f"{a} {pct(share[a])}" for a in schema.AUDIT_ARMS)
           + " (per draw: " + "; ".join(f"{a} " + "/".join(pct(x) for x in by_draw[a]) for a in schema.AUDIT_CONTROLS)
           + f"). The naive nearest set (the method's own ordering, without the hull) shares {ov['n_both']} of its "
           f"{ov['n_naive']} rows ({pct(ov['share_of_a'])}) with the explanation sets, which is why the nearest control "
           "is drawn outside them. Null for \"small sets\": " + f"{null['n_small_targets']} of {null['n_targets']} "
           f"targets and {null['n_small_null']} of {null['n_null']} non-toxic completions get a small set (Fisher "
           f"p = {null['p_fisher']:.3g}).")
    return [out]


def identity_bias_lines(mets: Mapping[str, Any]) -> list[str]:
    """The audit's identity-bias finding (notebook 10; no claim of either paper): the ground truth's worst
    identities, whether the recovered rewards share its ranking of them, and FA-IRL against IRL."""
    m10 = mets.get("10")
    ib = m10.get("identity_bias") if isinstance(m10, Mapping) else None
    if not isinstance(ib, Mapping) or "per_identity" not in ib:
        return []
    gt = ib["per_identity"]["ground_truth"]
    worst = ib["worst"]["ground_truth"]
    fmt = lambda x: "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:+.2f}"
    inh = ib.get("inheritance", {})
    out = (f"**Finding: identity bias (no claim).** On {ib['n_sentences']} templated sentences of "
           f"{ib['n_identities']} identities (notebook 10), the ground truth flags the non-toxic sentences that "
           "mention " + ", ".join(f"'{w}' {gt[w].get('fpr', float('nan')):.0%}" for w in worst)
           + " of the time (its worst three). Spearman correlation of the per-identity bias gaps with the ground "
           "truth's: " + ", ".join(f"{k} {fmt(v.get('spearman'))}" for k, v in inh.items()) + ".")
    gd = ib.get("gap_difference")
    if isinstance(gd, Mapping) and gd.get("ci95"):
        out += (f" FA-IRL - IRL mean gap over identities {gd['value']:+.3f} [{gd['ci95'][0]:+.3f}, "
                f"{gd['ci95'][1]:+.3f}] (t over {gd['n_identities']} identities).")
    return [out]


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


# Questions for the original authors: where the paper disagrees with itself or with what we measured, each with
# where the reader meets it. Static facts about the paper's text; the ledger's verdicts say what we measured.
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("Eq. 3's penalty lambda_t/2 ||w_F||^2 shares lambda_t with L_fail: for an MLP failure head zero weights are "
     "a stationary point, so as printed the failure path collapses and FA-IRL equals its baseline. Which penalty "
     "produced Table 1?", "notebook 04 (why it collapses), notebook 05 (the penalty-scale sweep)"),
    ("Algorithm 1, line 6 uses the opposite sign for o- from the text's y(o)R(o) <= 0. Which one was run?",
     "notebook 04, `irl/fairl.py`"),
    ("The text says the margin-failure variant has the lowest STARC; Table 1 gives it the highest.",
     "notebook 05, claim 'FA-IRL lowers STARC'"),
    ("'Reducing reward misalignment by up to 24%': no row of Table 1 gives more than an 11.4% lower STARC "
     "(ME FA-IRL, GT failures 0.628 against ME IRL 0.709). What does 24% refer to?", "this report, Table 1 rows"),
    ("Theorem 1 claims strict inclusion for any non-empty failure set; a failure constraint that does not bind "
     "leaves the feasible set unchanged.", "notebook 03, claim 'Theorem 1: strict inclusion'"),
    ("App. B's sharpening (tau_fail < tau) lowers the max-entropy loss of correctly ranked pairs, so L_FA >= "
     "L_base fails for it.", "notebook 03, claim 'App. B: sharpened failures'"),
    ("Table 2 counts 10,000 Jigsaw comments (its +5.4 pp = 544 / 10,000); Sec. 5 describes a held-out set of "
     "1,000 toxic + 1,000 non-toxic comments.", "notebook 05, claim 'FA-IRL adds 5.4 points'"),
    ("Sec. 4.1 writes the failure path as linear; Sec. 5 says the reward model is a two-layer MLP.",
     "`irl.fail_head` (the tuning tries both)"),
    ("Corollary 1 goes from a smaller feasible set to lower variance across seeds; the theorem licenses the "
     "first, not the second.", "claim 'FA-IRL lowers the variance across seeds'"),
)


def summary_section(ledger: Sequence[Entry], mets: Mapping[str, Any] | None, context: Mapping[str, Any]) -> list[str]:
    """The report's opening, in the shape of a reproducibility report (ML Reproducibility Challenge): scope,
    methodology, results in prose, what was easy and what was hard, questions for the authors. Generated from
    the ledger and the metrics, never edited by hand."""
    mets = mets or {}
    by = {v: [e for e in ledger if e.verdict == v] for v in VERDICTS}
    names = lambda es: "; ".join(e.claim for e in es) or "none"
    paper_claims = [e for e in ledger if not e.source.startswith("Liu")]
    mdl = context["models"]
    out = ["## Summary", "",
           f"**Scope.** {len(paper_claims)} claims of the FA-IRL paper (Table 1-3, Theorem 1, App. B, D and E, "
           f"Figure 3 right, Sec. 6) and {len(ledger) - len(paper_claims)} of Explainable RLHF's abstract, "
           f"tested on real models that run offline (base LM `{mdl['base_lm']}`, ground truth "
           f"`{mdl['ground_truth']}`), real RealToxicityPrompts prompts and real Jigsaw comments.", ""]
    method = ("**Methodology.** Every verdict is computed by a rule from this run's metrics files. FA-IRL is "
              "compared with IRL once per claim, on a pair fixed from the tuning split before the test set is read; "
              "each claim has a smallest effect of interest fixed in the profile, so a difference of rounding size "
              "is never a verdict. Intervals cover the training seeds and the draw of the evaluation data "
              "(bootstrap); re-RLHF takes training runs as its unit.")
    sc = (mets.get("01") or {}).get("screen") if isinstance(mets.get("01"), Mapping) else None
    if isinstance(sc, Mapping) and sc.get("enabled"):
        method += (f" The prompts were screened by the base model's own toxicity ({sc['n_kept']} of "
                   f"{sc['n_candidates']} passed), to approach the paper's regime of many T->NT pairs.")
    out += [method, ""]
    out += [f"**Results.** {len(by[REPRODUCED])} reproduced ({names(by[REPRODUCED])}). "
            f"{len(by[NEGLIGIBLE])} negligible: the effect is smaller than matters ({names(by[NEGLIGIBLE])}). "
            f"{len(by[CONTRADICTED]) + len(by[OPPOSITE])} contradicted or the other way round "
            f"({names(by[CONTRADICTED] + by[OPPOSITE])}). {len(by[NOT_REPRODUCED])} exact claims fail "
            f"({names(by[NOT_REPRODUCED])}). {len(by[INCONCLUSIVE])} inconclusive"
            + (f", {sum(e.underpowered or bool(e.details.get('underpowered')) for e in by[INCONCLUSIVE])} of them "
               "underpowered" if by[INCONCLUSIVE] else "") + ".", ""]
    hard = []
    eq3 = eq3_ablation(mets)
    if eq3 and "collapses" in eq3[0]:
        hard.append("Eq. 3 as printed collapses the failure path, so FA-IRL had to be tuned before it differed "
                    "from IRL at all")
    if isinstance(sc, Mapping) and sc.get("enabled"):
        hard.append("the only base models that ship offline are safety-tuned and rarely toxic, so the prompts had "
                    "to be screened to get T->NT pairs")
    if by[INCONCLUSIVE]:
        hard.append(f"{len(by[INCONCLUSIVE])} claims stay undecided at this run's size")
    easy = [e.claim for e in ledger if e.by_construction or (e.detectable == "exact check" and e.verdict == REPRODUCED)]
    out += [f"**What was easy.** The exact claims checked without statistics: {'; '.join(easy) or 'none'}. "
            f"**What was hard.** {'; '.join(hard) or 'nothing beyond the ledger'}.", "",
            "**Questions for the authors.**", ""]
    out += [f"{i}. {q} (Where: {w}.)" for i, (q, w) in enumerate(QUESTIONS, 1)]
    return out + [""]


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
             "**Verdicts:** " + ", ".join(f"{n} {v}" for v, n in c.items()) + f" (of {len(ledger)} claims).", "",
             *summary_section(ledger, mets, context),
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
    pre = (mets or {}).get("05", {}) if mets is not None else {}
    pre = pre.get("preregistered") if isinstance(pre, Mapping) else None
    lines += ["", "## The ledger", ""]
    if isinstance(pre, Mapping):
        lines += [(f"Every FA-vs-IRL claim compares one pair fixed before the test set was read: "
                   f"{METHOD_LABELS.get(pre['fa_method'], pre['fa_method'])} ({_chosen_by(pre)}) against "
                   f"{METHOD_LABELS.get(pre['baseline'], pre['baseline'])}, both at their tuned configurations."), ""]
    lines += [("95% intervals in brackets. Table 1, the Jigsaw claims and Tables 2-3: a bootstrap over the tuned "
               "grid's seeds and the evaluation data together (test pairs resampled by prompt, Jigsaw comments one "
               "by one), so they cover the training seeds and the draw of the evaluation data, not the draw of the "
               "training pairs or the expert's own training randomness (a second whole run with another seed shows "
               "those: benchmarks/README.md). Figure 4: Student-t over same-seed differences; Figure 5: Welch's t "
               "across base LMs; variance: F; rates: Newcombe; the audit's arms, which share their sampled rows: exact "
               "McNemar on the discordant pairs with a bootstrap over draws and prompts. *Effect of interest*: the smallest effect that "
               "matters, fixed in the profile's `[ledger]` before the run (about a third of the paper's own). "
               "*Detectable*: the smallest effect the claim's test finds with 80% power at this run's size."), "",
              "; ".join(f"{_BADGE[v]}: {_LEGEND[v]}" for v in VERDICTS) + ".", "",
              "| claim | source | paper | ours | effect of interest | detectable (80% power) | verdict |",
              "|---|---|---|---|---|---|---|"]
    for e in ledger:
        ours = e.ours if e.verdict != NOT_RUN else f"- ({e.details.get('missing', 'no metrics')})"
        if e.compared:
            ours = f"{e.compared}: {ours}"
        lines.append(f"| {_md(e.claim)} | {_md(e.source)} | {_md(e.paper)} | {_md(ours)} | {_eoi_text(e)} "
                     f"| {_md(e.detectable)} | {_verdict_text(e)} |")
    extra = (eq3_ablation(mets) + regime_lines(mets) + paper_mix_lines(mets, ledger[0].rules if ledger else None)
             + audit_control_lines(mets) + identity_bias_lines(mets) if mets is not None else [])
    if extra:
        lines += [""] + extra
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
    ledger = build_ledger(mets, ledger=getattr(cfg, "ledger", None))
    text = render_markdown(ledger, run_context(cfg, res), res, mets)
    path = atomic_write_text(res / "REPORT.md", text)
    return ledger, text, path
