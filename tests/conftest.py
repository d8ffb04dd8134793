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
def one_torch_thread():
    """One torch thread for a test module of tiny tensors: a second intra-op thread only adds OpenMP wake-ups
    (slow on a shared CPU). Modules use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
