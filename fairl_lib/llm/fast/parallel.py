"""Independent jobs in worker processes with one torch thread each.

On the 2-core cpu machine small matrix products do not split well over threads, while independent
work splits well over processes: batched generation and two RLOO runs side by side both do more
per second in two one-thread processes than in one two-thread process (``benchmarks/lm_throughput.py``
and ``benchmarks/rlhf_step.py``, results in ``benchmarks/README.md``).

Workers are *spawned*, not forked (the parent already runs OpenMP threads), so a job is a
module-level function with picklable arguments, and each worker imports what it needs. A job's
numbers do not depend on which worker runs it: every job carries its own seed.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def _one_thread() -> None:
    os.environ["FAIRL_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def run_jobs(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int,
             on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[fn(*job) for job in jobs]``, in ``workers`` spawned processes of one thread each.

    With ``workers <= 1`` (or a single job) the jobs run here, one after the other, with this
    process's threads. ``on_done(i, result)`` is called in this process as each job finishes.
    A failing job raises here (after the others were given the chance to finish).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1 (got {workers}).")
    results: list[Any] = [None] * len(jobs)
    if workers == 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            results[i] = fn(*job)
            if on_done:
                on_done(i, results[i])
        return results
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_one_thread) as pool:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_done:
                on_done(i, results[i])
    return results
