"""Milliseconds per training step of the batched IRL grid at a given number of active runs.

A short, repeatable probe of `train_grid`'s step (the full benchmark is irl_grid.py): the grid of
6 methods x 5 seeds on synthetic pairs, reduced to ``w`` active runs (a seeded random subset, as
when runs have stopped early), timed over ``--steps`` minibatches after one warm-up epoch; the
median of ``--epochs`` timed epochs. Alternate two checkouts with it to compare commits:

    PYTHONPATH=. python benchmarks/irl_step.py --widths 30,13,6,1

Prints ONE JSON line: {"ms_per_step": {"30": ..., ...}, ...}.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from fairl_lib.irl import METHOD_NAMES, IRLConfig, make_synthetic
from fairl_lib.irl.grid import _Grid


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=8000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--widths", default="30,13,6,1", help="active runs, comma-separated (<= 30)")
    p.add_argument("--steps", type=int, default=60, help="minibatches per timed epoch")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (median)")
    return p.parse_args(argv)


def ms_per_step(data, cfg: IRLConfig, width: int, steps: int, epochs: int) -> float:
    grid = _Grid(data, METHOD_NAMES, list(range(5)), cfg, torch.float32)
    n = len(grid.pairs)
    if not 1 <= width <= n:
        raise ValueError(f"width must be in 1..{n}; got {width}")
    if width < n:
        keep = np.zeros(n, dtype=bool)
        keep[np.random.default_rng(width).choice(n, width, replace=False)] = True
        grid.compact(keep)
    grid.n_tr = min(grid.n_tr, cfg.batch_size * steps)
    grid.train_epoch(0)                                            # warm-up, not timed
    times = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        grid.train_epoch(epoch)
        times.append((time.perf_counter() - t0) / steps * 1e3)
    return float(np.median(times))


def run(args: argparse.Namespace) -> dict:
    data = make_synthetic(n_pairs=args.pairs, dim=args.dim, seed=0).data
    widths = [int(w) for w in args.widths.split(",")]
    cfg = IRLConfig()
    return {"ms_per_step": {str(w): round(ms_per_step(data, cfg, w, args.steps, args.epochs), 3) for w in widths},
            "pairs": args.pairs, "dim": args.dim, "steps": args.steps, "epochs": args.epochs,
            "threads": torch.get_num_threads()}


if __name__ == "__main__":
    print(json.dumps(run(parse_args())), flush=True)
