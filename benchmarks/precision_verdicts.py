"""bf16 against fp32 (issue 19): the same profile and seed run once per precision; do the results agree?

Reads the metrics of two finished runs of one profile and seed, one with ``precision = "auto"`` on a CPU
with native bf16 (``--bf16``, e.g. ``results/cpu``) and one with ``--overrides 'rlhf.precision="fp32";
gen.precision="fp32"'`` (``--fp32``, e.g. ``results/fp32/cpu``), and compares:

- every claim of the reproduction ledger (notebook 11): the two verdicts, the two estimates, and whether
  the bf16 estimate lies inside the fp32 run's 95% interval;
- the headline numbers behind them, each with a test between the two runs: the base model's and the
  expert's held-out toxicity rate (notebook 01) and each re-RLHF arm's (notebook 08), as a difference of
  rates with Newcombe's interval (independent samples: the two precisions draw other completions); the
  expert's KL and perplexity (values only); the preference pairs' composition (notebook 02's four pair
  types, chi-square test of homogeneity, ``scipy.stats.chi2_contingency``).

The two runs differ by more than rounding: the samples drawn under bf16 are other samples of nearly the
same distribution, and every later stage inherits them, so a difference here is the spread of two runs
of the pipeline plus whatever precision adds. A verdict that flips between the runs is either a claim
whose interval sits at its decision boundary or a precision effect; the table shows which.

    python benchmarks/precision_verdicts.py --bf16 results/cpu --fp32 results/fp32/cpu

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
    p.add_argument("--bf16", required=True, type=Path, help="results folder of the bf16 run (holds metrics/)")
    p.add_argument("--fp32", required=True, type=Path, help="results folder of the fp32 run (holds metrics/)")
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


def compare_ledgers(bf16: dict[str, Any], fp32: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per claim of either ledger: both verdicts, both estimates, ``same_verdict`` and
    ``inside_fp32_ci`` (None where the fp32 run has no interval)."""
    a, b = bf16.get("ledger", {}), fp32.get("ledger", {})
    rows = []
    for key in sorted(set(a) | set(b)):
        va, ci_a = _estimate(a.get(key, {}))
        vb, ci_b = _estimate(b.get(key, {}))
        inside = None if va is None or not ci_b else bool(ci_b[0] <= va <= ci_b[1])
        rows.append({"claim": key, "verdict_bf16": a.get(key, {}).get("verdict"),
                     "verdict_fp32": b.get(key, {}).get("verdict"),
                     "same_verdict": a.get(key, {}).get("verdict") == b.get(key, {}).get("verdict"),
                     "value_bf16": va, "ci95_bf16": ci_a, "value_fp32": vb, "ci95_fp32": ci_b,
                     "inside_fp32_ci": inside})
    return rows


def _rate_row(name: str, rate_a: float, n_a: int, rate_b: float, n_b: int) -> dict[str, Any]:
    from fairl_lib.analysis.report import rate_diff_ci

    est = rate_diff_ci(round(rate_a * n_a), n_a, round(rate_b * n_b), n_b)
    return {"what": name, "bf16": rate_a, "fp32": rate_b, "n_bf16": n_a, "n_fp32": n_b, "difference": est.value,
            "ci95": [est.lo, est.hi], "test": est.test, "mde": est.mde,
            "differs": not (est.lo <= 0 <= est.hi)}


def compare_headlines(bf16: dict[str, dict[str, Any]], fp32: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The expert's and the re-RLHF arms' toxicity rates (Newcombe), the expert's KL and perplexity, and
    the pairs' composition (chi-square), bf16 run against fp32 run."""
    from scipy.stats import chi2_contingency

    rates, values = [], []
    ea, eb = bf16["01_rlhf_expert"], fp32["01_rlhf_expert"]
    if ea and eb:
        for who in ("base", "expert"):
            rates.append(_rate_row(f"01 toxicity rate, {who}", ea[f"toxicity_rate_{who}"], ea[f"n_completions_{who}"],
                                   eb[f"toxicity_rate_{who}"], eb[f"n_completions_{who}"]))
        values += [{"what": f"01 {k}", "bf16": ea.get(k), "fp32": eb.get(k)}
                   for k in ("toxicity_rate_ratio", "kl_heldout", "perplexity_base", "perplexity_expert")]
    ra, rb = bf16["08_rerlhf"], fp32["08_rerlhf"]
    for arm in ("fa_irl", "irl"):
        if arm in ra and arm in rb:
            rates.append(_rate_row(f"08 toxicity rate, {arm}", ra[arm]["toxicity_rate_final"],
                                   ra[arm]["n_completions_final"], rb[arm]["toxicity_rate_final"],
                                   rb[arm]["n_completions_final"]))
            values.append({"what": f"08 KL, {arm}", "bf16": ra[arm].get("kl_final"), "fp32": rb[arm].get("kl_final")})
    out: dict[str, Any] = {"rates": rates, "values": values}
    pa, pb = bf16["02_preference_pairs"], fp32["02_preference_pairs"]
    if pa and pb:
        table = [[pa[f"n_{t}"] for t in PAIR_TYPES], [pb[f"n_{t}"] for t in PAIR_TYPES]]
        keep = [j for j in range(len(PAIR_TYPES)) if table[0][j] + table[1][j] > 0]
        res = chi2_contingency([[row[j] for j in keep] for row in table])
        out["pairs"] = {"types": list(PAIR_TYPES), "bf16": table[0], "fp32": table[1], "chi2": float(res.statistic),
                        "dof": int(res.dof), "p_value": float(res.pvalue), "test": "chi-square homogeneity"}
    return out


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:{spec}}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def markdown(ledger: list[dict[str, Any]], head: dict[str, Any]) -> str:
    lines = ["| claim | verdict bf16 | verdict fp32 | estimate bf16 | estimate fp32 [95%] | bf16 inside |",
             "|---|---|---|--:|--:|---|"]
    for r in ledger:
        ci = "" if not r["ci95_fp32"] else f" [{_fmt(r['ci95_fp32'][0])}, {_fmt(r['ci95_fp32'][1])}]"
        same = "" if r["same_verdict"] else " **(differs)**"
        inside = {None: "-", True: "yes", False: "**no**"}[r["inside_fp32_ci"]]
        lines.append(f"| {r['claim']} | {r['verdict_bf16']}{same} | {r['verdict_fp32']} | {_fmt(r['value_bf16'])} | "
                     f"{_fmt(r['value_fp32'])}{ci} | {inside} |")
    lines += ["", "| headline rate | bf16 | fp32 | bf16 - fp32 [95%] (Newcombe) | detectable |", "|---|--:|--:|--:|--:|"]
    for r in head["rates"]:
        lines.append(f"| {r['what']} | {_fmt(r['bf16'])} (n {r['n_bf16']}) | {_fmt(r['fp32'])} (n {r['n_fp32']}) | "
                     f"{r['difference']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | {_fmt(r['mde'])} |")
    lines += ["", "| value | bf16 | fp32 |", "|---|--:|--:|"]
    lines += [f"| {r['what']} | {_fmt(r['bf16'])} | {_fmt(r['fp32'])} |" for r in head["values"]]
    if "pairs" in head:
        p = head["pairs"]
        lines += ["", (f"Pairs ({', '.join(p['types'])}): bf16 {p['bf16']}, fp32 {p['fp32']}; {p['test']} "
                       f"chi2 = {p['chi2']:.2f}, dof {p['dof']}, p = {p['p_value']:.3f}")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    runs = {}
    for name, folder in (("bf16", args.bf16), ("fp32", args.fp32)):
        if not (Path(folder) / "metrics").is_dir():
            sys.exit(f"error: {folder} has no metrics/ folder: pass a finished run's results folder, e.g. results/cpu")
        runs[name] = load_metrics(folder)
    ledger = compare_ledgers(runs["bf16"][LEDGER], runs["fp32"][LEDGER])
    head = compare_headlines(runs["bf16"], runs["fp32"])
    print(markdown(ledger, head))
    out = {"bf16": str(args.bf16), "fp32": str(args.fp32), "claims": len(ledger),
           "same_verdicts": sum(r["same_verdict"] for r in ledger),
           "inside_fp32_ci": sum(bool(r["inside_fp32_ci"]) for r in ledger),
           "with_fp32_ci": sum(r["inside_fp32_ci"] is not None for r in ledger),
           "verdicts_differ": [r["claim"] for r in ledger if not r["same_verdict"]],
           "ledger": ledger, "headlines": head}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
