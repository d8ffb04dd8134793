"""One seeding block for the whole project (CleanRL style)."""
from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, deterministic_torch: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and torch (if installed) and return a NumPy ``Generator`` for ``seed``.

    Library functions take explicit seeds or generators; this block only pins the global state
    that third-party code (transformers sampling, trl) reads.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:  # the theory toy needs no torch
        return np.random.default_rng(seed)
    torch.manual_seed(seed)
    if deterministic_torch:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)
