"""Speed of the batched IRL grid (train_grid) against the sequential loop (train_one per run).

Synthetic preference data with a known reward (fairl_lib.irl.synthetic), 20,000 pairs of 384-d
embeddings by default, the full Table 1 grid (6 methods x n seeds) with the IRLConfig defaults
(800-epoch cap, early stopping). Prints progress, then ONE JSON line last:

    {"ensemble_s": ..., "sequential_s": ..., "speedup": ..., ...}

``--quick`` times only one seed per method sequentially and extrapolates by epochs: sequential_s =
(measured seconds / measured epochs) x (epochs of all grid runs); the sequential runs replay the same
trajectories as their grid members, so their epochs match and rewards agree (``max_reward_diff``).

    python benchmarks/irl_grid.py --quick            # ~ensemble time + 6 sequential runs
    python benchmarks/irl_grid.py --threads 1        # torch threads (default: torch's choice)

The machine is shared: the JSON records the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from fairl_lib.irl.synthetic import make_synthetic
from fairl_lib.irl.train import METHOD_NAMES, IRLConfig, train_grid, train_one


def parse_args() -> argparse.Namespace:
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
    p.add_argument("--skip-sequential", action="store_true")
    p.add_argument("--data-seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # one-time torch import cost, not timed
    syn = make_synthetic(n_pairs=args.pairs, dim=args.dim, seed=args.data_seed)
    cfg = IRLConfig(head=args.head, hidden=args.hidden, max_epochs=args.max_epochs, patience=args.patience,
                    n_seeds=args.seeds)
    t0 = time.perf_counter()
    grid = train_grid(syn.data, cfg, progress=lambda e, n: print(
        f"[grid] epoch {e:3d}  active runs {n:2d}  {time.perf_counter() - t0:7.1f}s", flush=True))
    ensemble_s = time.perf_counter() - t0
    epochs = {f"{r.method}/seed{r.seed}": r.epochs_run for r in grid.runs}
    total_epochs = sum(epochs.values())
    print(f"[grid] {ensemble_s:.1f}s for {len(grid.runs)} runs, {total_epochs} run-epochs", flush=True)
    h, r_gt, _ = syn.env.sample_outputs(2000, seed=123)
    corr = {m: float(np.mean([np.corrcoef(r.reward(h), r_gt)[0, 1] for r in grid.by_method(m)]))
            for m in METHOD_NAMES}

    out = {"ensemble_s": round(ensemble_s, 2), "pairs": args.pairs, "dim": args.dim, "head": cfg.head,
           "hidden": cfg.hidden, "runs": len(grid.runs), "run_epochs_total": total_epochs,
           "epochs_min": min(epochs.values()), "epochs_max": max(epochs.values()),
           "threads": torch.get_num_threads(),
           "corr_with_ground_truth": {k: round(v, 4) for k, v in corr.items()}}
    if not args.skip_sequential:
        sample = [(m, 0) for m in METHOD_NAMES] if args.quick else [(r.method, r.seed) for r in grid.runs]
        t1, seq_epochs, diffs = time.perf_counter(), 0, []
        for method, seed in sample:
            ts = time.perf_counter()
            run = train_one(syn.data, method, seed, cfg)
            seq_epochs += run.epochs_run
            ref = grid.get(method, seed)
            r_seq, r_grid = run.reward(h), ref.reward(h)
            diffs.append(float(np.max(np.abs(r_seq - r_grid)) / (np.std(r_grid) + 1e-12)))
            print(f"[seq] {method} seed {seed}: {run.epochs_run} epochs (grid: {ref.epochs_run}) "
                  f"{time.perf_counter() - ts:.1f}s", flush=True)
        measured = time.perf_counter() - t1
        sequential_s = measured if not args.quick else measured / seq_epochs * total_epochs
        out.update({"sequential_s": round(sequential_s, 2), "speedup": round(sequential_s / ensemble_s, 2),
                    "sequential_measured_s": round(measured, 2), "sequential_measured_runs": len(sample),
                    "sequential_extrapolated": bool(args.quick),
                    "max_reward_diff_rel": float(np.max(diffs))})
    out["loadavg_start"] = [round(x, 2) for x in load0]
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
