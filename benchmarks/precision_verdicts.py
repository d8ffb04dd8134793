"""Two finished runs of one profile and seed: do their verdicts and headline numbers agree?

Made for bf16 against fp32: ``--run`` (alias ``--bf16``) is a run with ``precision = "auto"`` on a CPU with
native bf16, e.g. ``results/cpu``; ``--ref`` (alias ``--fp32``) the reference run with ``--overrides
'rlhf.precision="fp32"; gen.precision="fp32"'``, e.g. ``results/fp32/cpu``. Two runs of the same precision
whose code rounds differently (two bf16 runs of commits that change rounding only) measure the spread
between runs that precision must be told from; ``--names`` labels the two columns. It compares:

- every claim of the reproduction ledger (notebook 11): the two verdicts, the two estimates, and whether
  the run's estimate lies inside the reference run's 95% interval;
- the headline numbers behind them, each with a test between the two runs: the base model's and the
  expert's held-out toxicity rate (notebook 01) and each re-RLHF arm's (notebook 08), as a difference of
  rates with Newcombe's interval (independent samples: the two runs draw other completions); the
  expert's KL and perplexity (values only); the preference pairs' composition (notebook 02's four pair
  types, chi-square test of homogeneity, ``scipy.stats.chi2_contingency``).

The two runs differ by more than rounding: the samples drawn under bf16 are other samples of nearly the
same distribution, and every later stage inherits them, so a difference here is the spread of two runs
of the pipeline plus whatever precision adds. A verdict that flips between the runs is either a claim
whose interval sits at its decision boundary or a precision effect; the table shows which, and a
bf16-against-bf16 comparison shows how often verdicts flip without any change of precision.

    python benchmarks/precision_verdicts.py --bf16 results/cpu --fp32 results/fp32/cpu
    python benchmarks/precision_verdicts.py --run results/cpu --ref OTHER/cpu --names "bf16 (new)" "bf16 (old)"

Prints a Markdown table per part, then ONE JSON line last.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

LEDGER = "11_reproduction_report"
STEMS = ("01_rlhf_expert", "02_preference_pairs", "08_rerlhf", LEDGER)
PAIR_TYPES = ("NT->NT", "NT->T", "T->NT", "T->T")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", "--bf16", dest="run", required=True, type=Path,
                   help="results folder of the run to compare (holds metrics/), e.g. the bf16 run")
    p.add_argument("--ref", "--fp32", dest="ref", required=True, type=Path,
                   help="results folder of the reference run whose intervals are used, e.g. the fp32 run")
    p.add_argument("--names", nargs=2, default=["bf16", "fp32"], metavar=("RUN", "REF"),
                   help="the two runs' labels in the tables (bf16 fp32)")
    return p.parse_args(argv)


def load_metrics(folder: Path) -> dict[str, dict[str, Any]]:
    """The metrics files this comparison reads, by stem (a missing file is an empty dict)."""
    out = {}
    for stem in STEMS:
        path = Path(folder) / "metrics" / f"{stem}.json"
        out[stem] = json.loads(path.read_text()) if path.exists() else {}
    return out


def _estimate(entry: dict[str, Any]) -> tuple[float | None, list[float] | None]:
    est = entry.get("estimate") or {}
    return est.get("value"), est.get("ci95")


def compare_ledgers(run: dict[str, Any], ref: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per claim of either ledger: both verdicts, both estimates, ``same_verdict`` and
    ``inside_ref_ci`` (None where the reference run has no interval)."""
    a, b = run.get("ledger", {}), ref.get("ledger", {})
    rows = []
    for key in sorted(set(a) | set(b)):
        va, ci_a = _estimate(a.get(key, {}))
        vb, ci_b = _estimate(b.get(key, {}))
        inside = None if va is None or not ci_b else bool(ci_b[0] <= va <= ci_b[1])
        rows.append({"claim": key, "verdict_run": a.get(key, {}).get("verdict"),
                     "verdict_ref": b.get(key, {}).get("verdict"),
                     "same_verdict": a.get(key, {}).get("verdict") == b.get(key, {}).get("verdict"),
                     "value_run": va, "ci95_run": ci_a, "value_ref": vb, "ci95_ref": ci_b,
                     "inside_ref_ci": inside})
    return rows


def _rate_row(name: str, rate_a: float, n_a: int, rate_b: float, n_b: int) -> dict[str, Any]:
    from fairl_lib.analysis.report import rate_diff_ci

    est = rate_diff_ci(round(rate_a * n_a), n_a, round(rate_b * n_b), n_b)
    return {"what": name, "run": rate_a, "ref": rate_b, "n_run": n_a, "n_ref": n_b, "difference": est.value,
            "ci95": [est.lo, est.hi], "test": est.test, "mde": est.mde,
            "differs": not (est.lo <= 0 <= est.hi)}


def compare_headlines(run: dict[str, dict[str, Any]], ref: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The expert's and the re-RLHF arms' toxicity rates (Newcombe), the expert's KL and perplexity, and
    the pairs' composition (chi-square), the run against the reference run."""
    from scipy.stats import chi2_contingency

    rates, values = [], []
    ea, eb = run["01_rlhf_expert"], ref["01_rlhf_expert"]
    if ea and eb:
        for who in ("base", "expert"):
            rates.append(_rate_row(f"01 toxicity rate, {who}", ea[f"toxicity_rate_{who}"], ea[f"n_completions_{who}"],
                                   eb[f"toxicity_rate_{who}"], eb[f"n_completions_{who}"]))
        values += [{"what": f"01 {k}", "run": ea.get(k), "ref": eb.get(k)}
                   for k in ("toxicity_rate_ratio", "kl_heldout", "perplexity_base", "perplexity_expert")]
    ra, rb = run["08_rerlhf"], ref["08_rerlhf"]
    for arm in ("fa_irl", "irl"):
        if arm in ra and arm in rb:
            rates.append(_rate_row(f"08 toxicity rate, {arm}", ra[arm]["toxicity_rate_final"],
                                   ra[arm]["n_completions_final"], rb[arm]["toxicity_rate_final"],
                                   rb[arm]["n_completions_final"]))
            values.append({"what": f"08 KL, {arm}", "run": ra[arm].get("kl_final"), "ref": rb[arm].get("kl_final")})
    out: dict[str, Any] = {"rates": rates, "values": values}
    pa, pb = run["02_preference_pairs"], ref["02_preference_pairs"]
    if pa and pb:
        table = [[pa[f"n_{t}"] for t in PAIR_TYPES], [pb[f"n_{t}"] for t in PAIR_TYPES]]
        keep = [j for j in range(len(PAIR_TYPES)) if table[0][j] + table[1][j] > 0]
        res = chi2_contingency([[row[j] for j in keep] for row in table])
        out["pairs"] = {"types": list(PAIR_TYPES), "run": table[0], "ref": table[1], "chi2": float(res.statistic),
                        "dof": int(res.dof), "p_value": float(res.pvalue), "test": "chi-square homogeneity"}
    return out


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:{spec}}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def markdown(ledger: list[dict[str, Any]], head: dict[str, Any], names: tuple[str, str] = ("bf16", "fp32")) -> str:
    """The three tables (claims, headline rates, values) and the pairs' line, columns labelled by ``names``."""
    a, b = names
    lines = [f"| claim | verdict {a} | verdict {b} | estimate {a} | estimate {b} [95%] | {a} inside |",
             "|---|---|---|--:|--:|---|"]
    for r in ledger:
        ci = "" if not r["ci95_ref"] else f" [{_fmt(r['ci95_ref'][0])}, {_fmt(r['ci95_ref'][1])}]"
        same = "" if r["same_verdict"] else " **(differs)**"
        inside = {None: "-", True: "yes", False: "**no**"}[r["inside_ref_ci"]]
        lines.append(f"| {r['claim']} | {r['verdict_run']}{same} | {r['verdict_ref']} | {_fmt(r['value_run'])} | "
                     f"{_fmt(r['value_ref'])}{ci} | {inside} |")
    lines += ["", f"| headline rate | {a} | {b} | {a} - {b} [95%] (Newcombe) | detectable |", "|---|--:|--:|--:|--:|"]
    for r in head["rates"]:
        lines.append(f"| {r['what']} | {_fmt(r['run'])} (n {r['n_run']}) | {_fmt(r['ref'])} (n {r['n_ref']}) | "
                     f"{r['difference']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | {_fmt(r['mde'])} |")
    lines += ["", f"| value | {a} | {b} |", "|---|--:|--:|"]
    lines += [f"| {r['what']} | {_fmt(r['run'])} | {_fmt(r['ref'])} |" for r in head["values"]]
    if "pairs" in head:
        p = head["pairs"]
        lines += ["", (f"Pairs ({', '.join(p['types'])}): {a} {p['run']}, {b} {p['ref']}; {p['test']} "
                       f"chi2 = {p['chi2']:.2f}, dof {p['dof']}, p = {p['p_value']:.3f}")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    runs = {}
    for name, folder in (("run", args.run), ("ref", args.ref)):
        if not (Path(folder) / "metrics").is_dir():
            sys.exit(f"error: {folder} has no metrics/ folder: pass a finished run's results folder, e.g. results/cpu")
        runs[name] = load_metrics(folder)
    ledger = compare_ledgers(runs["run"][LEDGER], runs["ref"][LEDGER])
    head = compare_headlines(runs["run"], runs["ref"])
    print(markdown(ledger, head, tuple(args.names)))
    out = {"run": str(args.run), "ref": str(args.ref), "names": list(args.names), "claims": len(ledger),
           "same_verdicts": sum(r["same_verdict"] for r in ledger),
           "inside_ref_ci": sum(bool(r["inside_ref_ci"]) for r in ledger),
           "with_ref_ci": sum(r["inside_ref_ci"] is not None for r in ledger),
           "verdicts_differ": [r["claim"] for r in ledger if not r["same_verdict"]],
           "ledger": ledger, "headlines": head}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
