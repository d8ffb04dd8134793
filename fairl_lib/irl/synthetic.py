"""A synthetic preference environment with a KNOWN ground-truth reward (Sec. 1, 5: "synthetic
environments with known ground-truth rewards").

Outputs are embeddings h(o) in R^d drawn from an anisotropic Gaussian (a decaying spectrum in a
random orientation), optionally L2-normalised like sentence-transformer embeddings (all-MiniLM-L6-v2
returns unit vectors). The ground-truth reward is a fixed function of h,

    r_gt(h) = standardise( (1 - a) * lin(h) + a * nonlin(h) ),
    lin(h) = w^T h / std,   nonlin(h) = sum_k c_k tanh(2 v_k^T h / std_k) / std,

with a = ``nonlinearity`` (0 = exactly linear, what a linear head can recover). Pairs are two
independent outputs labelled by Bradley-Terry: P(o_a preferred) = sigmoid(beta (r_gt(o_a) - r_gt(o_b))),
so ``beta`` sets the label noise. Binary labels y(o) = +1 if r_gt(o) > threshold else -1, the
threshold being the ``label_quantile`` of r_gt (default the median), so supervised failures
(Alg. 1 line 6) are defined. Everything is a function of ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairl_lib.irl.data import PreferenceData


@dataclass(frozen=True, eq=False)
class GroundTruthReward:
    """r_gt(h): the fixed, known reward of the environment (mean 0, std 1 on its output distribution)."""

    w: np.ndarray
    v: np.ndarray
    c: np.ndarray
    lin_std: float
    v_std: np.ndarray
    nonlin_std: float
    nonlinearity: float
    offset: float = 0.0
    scale: float = 1.0

    def raw(self, h: np.ndarray) -> np.ndarray:
        lin = (h @ self.w) / self.lin_std
        nonlin = (np.tanh(2.0 * (h @ self.v.T) / self.v_std) @ self.c) / self.nonlin_std
        return (1.0 - self.nonlinearity) * lin + self.nonlinearity * nonlin

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """Ground-truth rewards of embeddings ``h (n, d)`` -> ``(n,)``."""
        return (self.raw(np.asarray(h, dtype=np.float64)) - self.offset) / self.scale


@dataclass(frozen=True, eq=False)
class SyntheticEnv:
    """Embedding distribution + ground-truth reward + labelling rule."""

    dim: int
    rotation: np.ndarray
    scales: np.ndarray
    normalize: bool
    reward: GroundTruthReward
    threshold: float
    beta: float

    def sample_embeddings(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` embeddings h(o) (float32)."""
        h = (rng.standard_normal((n, self.dim)) * self.scales) @ self.rotation
        if self.normalize:
            h /= np.linalg.norm(h, axis=1, keepdims=True)
        return h.astype(np.float32)

    def labels(self, r_gt: np.ndarray) -> np.ndarray:
        """y(o) = +1 if r_gt(o) > threshold else -1."""
        return np.where(r_gt > self.threshold, 1, -1).astype(np.int8)

    def sample_outputs(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fresh single outputs (held-out classification set): ``(h, r_gt, y)``."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
        h = self.sample_embeddings(n, rng)
        r = self.reward(h)
        return h, r, self.labels(r)


@dataclass(frozen=True, eq=False)
class SyntheticPreferences:
    """Preference pairs of a synthetic environment with their ground truth."""

    data: PreferenceData
    r_plus: np.ndarray
    r_minus: np.ndarray
    env: SyntheticEnv

    @property
    def label_agreement(self) -> float:
        """Share of pairs whose preferred output also has the higher ground-truth reward."""
        return float(np.mean(self.r_plus > self.r_minus))


def make_env(dim: int = 384, seed: int = 0, nonlinearity: float = 0.3, n_nonlinear: int = 4,
             spectrum_decay: float = 1.0, normalize: bool = True, beta: float = 5.0,
             label_quantile: float = 0.5, n_reference: int = 20000) -> SyntheticEnv:
    """Build the environment (orientation, spectrum, reward, label threshold) from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 5]))
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scales = (np.arange(1, dim + 1) ** (-spectrum_decay / 2.0))
    w = rng.standard_normal(dim)
    v = rng.standard_normal((n_nonlinear, dim))
    c = rng.standard_normal(n_nonlinear)
    probe = SyntheticEnv(dim, rotation, scales, normalize, None, 0.0, beta)  # type: ignore[arg-type]
    ref = probe.sample_embeddings(n_reference, rng).astype(np.float64)
    v_std = (ref @ v.T).std(0)
    nonlin_std = float((np.tanh(2.0 * (ref @ v.T) / v_std) @ c).std()) or 1.0
    reward = GroundTruthReward(w, v, c, float((ref @ w).std()), v_std, nonlin_std, nonlinearity)
    raw = reward.raw(ref)
    reward = GroundTruthReward(w, v, c, reward.lin_std, v_std, nonlin_std, nonlinearity,
                               float(raw.mean()), float(raw.std()))
    threshold = float(np.quantile(reward(ref), label_quantile))
    return SyntheticEnv(dim, rotation, scales, normalize, reward, threshold, beta)


def make_synthetic(n_pairs: int = 20000, dim: int = 384, seed: int = 0, beta: float = 5.0,
                   nonlinearity: float = 0.3, normalize: bool = True,
                   label_quantile: float = 0.5) -> SyntheticPreferences:
    """Seeded synthetic preference pairs with Bradley-Terry labels and y(o) labels of both outputs."""
    env = make_env(dim, seed, nonlinearity, normalize=normalize, beta=beta, label_quantile=label_quantile)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 6]))
    h_a, h_b = env.sample_embeddings(n_pairs, rng), env.sample_embeddings(n_pairs, rng)
    r_a, r_b = env.reward(h_a), env.reward(h_b)
    a_wins = rng.random(n_pairs) < 1.0 / (1.0 + np.exp(-beta * (r_a - r_b)))
    pick = a_wins[:, None]
    h_plus, h_minus = np.where(pick, h_a, h_b), np.where(pick, h_b, h_a)
    r_plus, r_minus = np.where(a_wins, r_a, r_b), np.where(a_wins, r_b, r_a)
    data = PreferenceData(h_plus, h_minus, env.labels(r_plus), env.labels(r_minus))
    return SyntheticPreferences(data, r_plus, r_minus, env)
