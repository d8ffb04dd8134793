"""Shared fixtures. Tests never touch the real results/ folder: FAIRL_RESULTS points to a temp dir."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def results_tmp(tmp_path, monkeypatch):
    """A fresh ``FAIRL_RESULTS`` root for one test."""
    root = tmp_path / "results"
    monkeypatch.setenv("FAIRL_RESULTS", str(root))
    return root


@pytest.fixture(scope="module")
def module_results(tmp_path_factory):
    """A fresh ``FAIRL_RESULTS`` root shared by one module's fixtures (module-scoped ``results_tmp``)."""
    root = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRL_RESULTS", str(root))
        yield root


@pytest.fixture(scope="module")
def synthetic_pairs():
    """300 synthetic preference pairs in 12 dimensions (``pairset.synthetic_pairset``, seed 1): the pairs the
    IRL grid, evaluation, failure-path and tuning tests train on."""
    from fairl_lib.analysis.pairset import synthetic_pairset

    return synthetic_pairset(300, 12, seed=1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module of tiny tensors: a second intra-op thread only adds OpenMP wake-ups
    (slow on a shared CPU). Modules use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
