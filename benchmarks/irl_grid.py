"""Speed of the batched IRL grid (train_grid) against the sequential loop (train_one per run).

train_one is Algorithm 1 written plainly (fairl_lib/irl/fairl.py: nn.Module, autograd,
torch.optim.Adam), so the ratio compares the grid with that plain loop.

Synthetic preference data with a known reward (fairl_lib.irl.synthetic), 20,000 pairs of 384-d
embeddings by default, the full Table 1 grid (6 methods x n seeds) with the IRLConfig defaults
(800-epoch cap, early stopping). Prints progress, then ONE JSON line last:

    {"ensemble_s": ..., "sequential_s": ..., "speedup": ..., ...}

``--quick`` times only one seed per method sequentially and extrapolates by epochs: sequential_s =
(measured seconds / measured epochs) x (epochs of all grid runs); the sequential runs replay the same
trajectories as their grid members up to float32 rounding, so their epochs mostly match and rewards
agree (``max_reward_diff_rel``).

``--repeats N`` measures N (grid, sequential) pairs. The speed of a shared machine drifts by tens of
percent within minutes, so in each repeat every other sequential run is timed before the grid and
the rest after it (both sides of the ratio span the same minutes); the JSON reports the medians
(``speedup`` = median of the per-repeat ratios) and every repeat. Each repeat retrains the grid from
scratch and must give identical rewards (checked).

    python benchmarks/irl_grid.py --quick --repeats 3   # ~7 min: what benchmarks/README.md reports
    python benchmarks/irl_grid.py --threads 1           # torch threads (default: torch's choice)

The JSON records the CPU (``machine``) and the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from fairl_lib.irl import METHOD_NAMES, IRLConfig, make_synthetic, train_grid, train_one


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=20000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--head", default=IRLConfig.head)
    p.add_argument("--hidden", type=int, default=IRLConfig.hidden)
    p.add_argument("--max-epochs", type=int, default=IRLConfig.max_epochs)
    p.add_argument("--patience", type=int, default=IRLConfig.patience)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave torch's default)")
    p.add_argument("--quick", action="store_true", help="time one seed per method sequentially, extrapolate")
    p.add_argument("--repeats", type=int, default=1, help="(grid, sequential) measurements, back to back")
    p.add_argument("--skip-sequential", action="store_true")
    p.add_argument("--data-seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def time_grid(data, cfg: IRLConfig):
    t0 = time.perf_counter()
    grid = train_grid(data, cfg, progress=lambda e, n: print(
        f"[grid] epoch {e:3d}  active runs {n:2d}  {time.perf_counter() - t0:7.1f}s", flush=True))
    seconds = time.perf_counter() - t0
    print(f"[grid] {seconds:.1f}s for {len(grid.runs)} runs, {sum(r.epochs_run for r in grid.runs)} run-epochs",
          flush=True)
    return grid, seconds


def sequential_sample(cfg: IRLConfig, quick: bool) -> list[tuple[str, int]]:
    """The (method, seed) runs the sequential loop trains: seed 0 of each method (quick), or all."""
    seeds = range(cfg.n_seeds)
    return [(m, 0) for m in METHOD_NAMES] if quick else [(m, s) for s in seeds for m in METHOD_NAMES]


def time_sequential(data, cfg: IRLConfig, sample: list[tuple[str, int]]) -> list[tuple[object, float]]:
    """train_one on each (method, seed) of ``sample``: the trained runs and their seconds."""
    out = []
    for method, seed in sample:
        ts = time.perf_counter()
        run = train_one(data, method, seed, cfg)
        out.append((run, time.perf_counter() - ts))
        print(f"[seq] {method} seed {seed}: {run.epochs_run} epochs {out[-1][1]:.1f}s", flush=True)
    return out


def sequential_summary(grid, timed: list[tuple[object, float]], h: np.ndarray, quick: bool) -> dict:
    """Sequential seconds (quick: extrapolated by epochs to all the grid's runs) and how far the
    sequential rewards are from their grid members'."""
    total_epochs = sum(r.epochs_run for r in grid.runs)
    measured, seq_epochs, diffs = sum(t for _, t in timed), sum(r.epochs_run for r, _ in timed), []
    for run, _ in timed:
        ref = grid.get(run.method, run.seed)
        r_seq, r_grid = run.reward(h), ref.reward(h)
        diffs.append(float(np.max(np.abs(r_seq - r_grid)) / (np.std(r_grid) + 1e-12)))
        if run.epochs_run != ref.epochs_run:
            print(f"[seq] {run.method} seed {run.seed}: {run.epochs_run} epochs, grid {ref.epochs_run} "
                  "(float32 drift, see benchmarks/README.md)", flush=True)
    return {"sequential_s": measured / seq_epochs * total_epochs if quick else measured,
            "measured_s": measured, "runs": len(timed), "max_reward_diff_rel": float(np.max(diffs))}


def machine() -> dict:
    """The CPU the numbers were measured on: the ratio depends on it (GEMM rate vs per-op overhead)."""
    info = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info["cpu"] = fields.get("model name", info["cpu"])
    info["cpu_family_model"] = f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}"
    info["avx512f"] = "avx512f" in fields.get("flags", "").split()
    return info


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # one-time torch import cost, not timed
    syn = make_synthetic(n_pairs=args.pairs, dim=args.dim, seed=args.data_seed)
    cfg = IRLConfig(head=args.head, hidden=args.hidden, max_epochs=args.max_epochs, patience=args.patience,
                    n_seeds=args.seeds)
    h, r_gt, _ = syn.env.sample_outputs(2000, seed=123)
    reps, first, first_rewards = [], None, None
    sample = sequential_sample(cfg, args.quick)
    for i in range(args.repeats):
        # the sequential runs are split around the grid (every other run before, the rest after), so
        # both sides of the ratio are measured over the same minutes of a machine whose speed drifts
        before = [] if args.skip_sequential else time_sequential(syn.data, cfg, sample[0::2])
        grid, ensemble_s = time_grid(syn.data, cfg)
        after = [] if args.skip_sequential else time_sequential(syn.data, cfg, sample[1::2])
        rewards = np.stack([r.reward(h) for r in grid.runs])
        if first is None:
            first, first_rewards = grid, rewards
        elif not np.array_equal(rewards, first_rewards):
            raise AssertionError("the grid gave different rewards on a repeat: training is not deterministic")
        rep = {"ensemble_s": ensemble_s}
        if not args.skip_sequential:
            rep.update(sequential_summary(grid, before + after, h, args.quick))
            rep["speedup"] = rep["sequential_s"] / ensemble_s
            print(f"[repeat {i}] ensemble {ensemble_s:.1f}s  sequential {rep['sequential_s']:.1f}s  "
                  f"speedup {rep['speedup']:.2f}x", flush=True)
        reps.append(rep)
    epochs = {f"{r.method}/seed{r.seed}": r.epochs_run for r in first.runs}
    corr = {m: float(np.mean([np.corrcoef(r.reward(h), r_gt)[0, 1] for r in first.by_method(m)]))
            for m in METHOD_NAMES}
    med = (lambda key: round(statistics.median(r[key] for r in reps), 2))
    out = {"ensemble_s": med("ensemble_s"), "pairs": args.pairs, "dim": args.dim, "head": cfg.head,
           "hidden": cfg.hidden, "runs": len(first.runs), "run_epochs_total": sum(epochs.values()),
           "epochs_min": min(epochs.values()), "epochs_max": max(epochs.values()),
           "threads": torch.get_num_threads(), "repeats": args.repeats,
           "corr_with_ground_truth": {k: round(v, 4) for k, v in corr.items()}}
    if not args.skip_sequential:
        out.update({"sequential_s": med("sequential_s"), "speedup": med("speedup"),
                    "sequential_measured_runs": reps[0]["runs"], "sequential_extrapolated": bool(args.quick),
                    "max_reward_diff_rel": max(r["max_reward_diff_rel"] for r in reps),
                    "per_repeat": [{k: round(r[k], 4) for k in ("ensemble_s", "sequential_s", "speedup")}
                                   for r in reps]})
    out["machine"] = machine()
    out["loadavg_start"] = [round(x, 2) for x in load0]
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv))), flush=True)


if __name__ == "__main__":
    main()
