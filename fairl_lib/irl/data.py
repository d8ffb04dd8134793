"""Preference pairs (Sec. 4, "Problem Setup") and the randomness every trainer shares.

``D = {(o_i+, o_i-)}`` as frozen embeddings h(o), the fixed train/validation split for early
stopping, and each run's per-epoch minibatch order and failure-sampling uniforms (functions of
(seed, epoch) only, so the reference ``train_one`` and the batched ``train_grid`` draw the same ones).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class PreferenceData:
    """Preference pairs (o_i+ preferred over o_i-) as frozen embeddings, with optional labels.

    Attributes:
        h_plus: ``(N, d)`` embeddings h(o+) of the preferred outputs.
        h_minus: ``(N, d)`` embeddings h(o-) of the other outputs.
        y_plus: ``(N,)`` labels y(o+) in {-1, +1} (e.g. +1 = non-toxic) or None.
        y_minus: ``(N,)`` labels y(o-) in {-1, +1} or None. Needed by the *_gt methods.
    """

    h_plus: np.ndarray
    h_minus: np.ndarray
    y_plus: np.ndarray | None = None
    y_minus: np.ndarray | None = None

    def __post_init__(self) -> None:
        hp, hm = np.asarray(self.h_plus), np.asarray(self.h_minus)
        if hp.ndim != 2 or hp.shape != hm.shape:
            raise ValueError(f"h_plus and h_minus must both be (N, d); got {hp.shape} and {hm.shape}")
        bad = ~(np.isfinite(hp).all(1) & np.isfinite(hm).all(1))
        if bad.any():
            rows = np.flatnonzero(bad)
            more = " ..." if len(rows) > 10 else ""
            raise ValueError(f"{bad.sum()} of {len(bad)} preference pairs have NaN/inf embeddings (rows "
                             f"{rows[:10].tolist()}{more}); drop or re-embed them.")
        if (self.y_plus is None) != (self.y_minus is None):
            raise ValueError("Give both y_plus and y_minus, or neither.")
        for name in ("y_plus", "y_minus"):
            y = getattr(self, name)
            if y is not None and (np.shape(y) != (len(hp),) or not np.isin(y, (-1, 1)).all()):
                raise ValueError(f"{name} must be ({len(hp)},) with values in {{-1, +1}}")

    @property
    def n(self) -> int:
        return int(np.shape(self.h_plus)[0])

    @property
    def dim(self) -> int:
        return int(np.shape(self.h_plus)[1])

    @property
    def has_labels(self) -> bool:
        return self.y_plus is not None

    def subset(self, idx: np.ndarray) -> PreferenceData:
        """The pairs at ``idx``."""
        pick = (lambda a: None if a is None else np.asarray(a)[idx])
        return PreferenceData(np.asarray(self.h_plus)[idx], np.asarray(self.h_minus)[idx],
                              pick(self.y_plus), pick(self.y_minus))


def split_indices(n: int, val_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/validation split of ``n`` pairs (validation = ``round(n * val_fraction)``)."""
    perm = np.random.default_rng(np.random.SeedSequence([int(split_seed), 3000])).permutation(n)
    n_val = round(n * val_fraction)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def epoch_streams(seed: int, epoch: int, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The minibatch order and failure-sampling uniforms of run ``seed`` in ``epoch``.

    Both are functions of (seed, epoch) only, so batched and sequential training draw the same ones.
    Uniform ``u[i]`` belongs to training pair ``i``; a failure i is kept in S_t when ``u[i] < p_t``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2000, int(epoch)]))
    return rng.permutation(n_train), rng.random(n_train)


def pair_tensors(data: PreferenceData, idx: np.ndarray, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``X (n, 2, d)`` (row = [h(o+), h(o-)]) and labels ``Y (n, 2)`` (zeros without labels)."""
    x = np.stack([np.asarray(data.h_plus)[idx], np.asarray(data.h_minus)[idx]], axis=1)
    if data.has_labels:
        y = np.stack([np.asarray(data.y_plus)[idx], np.asarray(data.y_minus)[idx]], axis=1)
    else:
        y = np.zeros((len(idx), 2))
    return torch.as_tensor(x, dtype=dtype).contiguous(), torch.as_tensor(y, dtype=dtype)
