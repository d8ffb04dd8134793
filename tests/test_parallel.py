"""fairl_lib.llm.fast.parallel: jobs in spawned one-thread workers give the results of running them here."""
from __future__ import annotations

import os

import pytest

from fairl_lib.llm.fast.parallel import run_jobs


def _square(x: int) -> tuple[int, int, int]:
    import torch

    return x * x, torch.get_num_threads(), os.getpid()


def _fail(x: int) -> int:
    if x == 2:
        raise RuntimeError("job 2 broke")
    return x


def test_run_jobs_in_workers_keeps_order_and_uses_one_thread():
    done = []
    out = run_jobs(_square, [(i,) for i in range(5)], workers=2, on_done=lambda i, r: done.append(i))
    assert [r[0] for r in out] == [0, 1, 4, 9, 16]
    assert {r[1] for r in out} == {1}  # each worker runs one torch thread
    assert os.getpid() not in {r[2] for r in out} and len({r[2] for r in out}) <= 2
    assert sorted(done) == list(range(5))


def test_run_jobs_here_with_one_worker():
    out = run_jobs(_square, [(3,), (4,)], workers=1)
    assert [r[0] for r in out] == [9, 16] and {r[2] for r in out} == {os.getpid()}


def test_run_jobs_errors():
    with pytest.raises(RuntimeError, match="job 2 broke"):
        run_jobs(_fail, [(i,) for i in range(4)], workers=2)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run_jobs(_fail, [(1,)], workers=0)
