"""Does the failure path act? How much R_F changes an FA-IRL reward R = R_D + R_F (Sec. 4.1).

Under Eq. 3 as printed the failure path can collapse (:class:`fairl_lib.irl.IRLConfig` explains why);
an FA method whose R_F is almost 0 is its IRL baseline under another name. Two measures, on both
outputs of the pairs of a split, from the trained reward's components (``RewardModel.components``):

- **flip share**: the share of pairs whose ranking R_F changes, sign(Delta_D) != sign(Delta_D + Delta_F)
  with Delta_X = R_X(o+) - R_X(o-) (o+ = o_post). A path that flips none changes no decision
  that depends on ranking pairs.
- **std ratio**: std(R_F) / std(R_D) over the outputs (scale of the correction).

These are the quantities of :func:`fairl_lib.analysis.evaluate.failure_path_share` (per run);
:func:`failure_path_summary` aggregates them per method over seeds and says whether the path acts
(mean flip share >= :data:`ACTING_FLIP_SHARE`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fairl_lib.analysis.pairset import PairSet
from fairl_lib.irl import RewardModel

ACTING_FLIP_SHARE = 0.02  # a failure path "acts" when it flips at least 2% of the pairs' rankings


def path_margins(reward: RewardModel, ps: PairSet) -> tuple[np.ndarray, np.ndarray]:
    """(Delta_D, Delta_F) per pair of ``ps``: the base and failure paths' margins R(o_post) - R(o_pre)."""
    dp, fp = reward.components(ps.emb_post)
    dm, fm = reward.components(ps.emb_pre)
    return dp - dm, fp - fm


def flip_share(reward: RewardModel, ps: PairSet) -> float:
    """Share of the pairs of ``ps`` whose ranking R_F flips: sign(Delta_D) != sign(Delta_D + Delta_F)
    (0 for a base-only reward, NaN without pairs)."""
    if len(ps) == 0:
        return float("nan")
    d_d, d_f = path_margins(reward, ps)
    return float(np.mean(np.sign(d_d) != np.sign(d_d + d_f)))


def std_ratio(reward: RewardModel, ps: PairSet) -> float:
    """std(R_F) / std(R_D) over both outputs of every pair of ``ps``."""
    dp, fp = reward.components(ps.emb_post)
    dm, fm = reward.components(ps.emb_pre)
    return float(np.std(np.r_[fp, fm]) / max(np.std(np.r_[dp, dm]), 1e-12))


def failure_path_summary(grid: Any, ps: PairSet, split: str | None = "train",
                         min_flip_share: float = ACTING_FLIP_SHARE) -> dict[str, dict[str, Any]]:
    """Per FA method of ``grid`` (anything with ``rewards = {(method, seed): RewardModel}``, e.g. a
    :class:`~fairl_lib.analysis.evaluate.GridOutput`), on the pairs of ``split`` (None = all pairs):

    ``{method: {"flip_share_mean", "flip_share_min", "flip_share_max", "ratio_std_F_over_D_mean",
    "n_runs", "acts"}}``, over the method's seeds; ``acts`` = mean flip share >= ``min_flip_share``.
    Methods without a failure path (the baselines) are left out.
    """
    sub = ps.split(split) if split else ps
    flips: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    rewards: Mapping[tuple[str, int], RewardModel] = grid.rewards
    for (method, _seed), reward in sorted(rewards.items()):
        if reward.failure is None:
            continue
        flips.setdefault(method, []).append(flip_share(reward, sub))
        ratios.setdefault(method, []).append(std_ratio(reward, sub))
    out = {}
    for method, f in flips.items():
        mean = float(np.mean(f))
        out[method] = {"flip_share_mean": mean, "flip_share_min": float(np.min(f)),
                       "flip_share_max": float(np.max(f)),
                       "ratio_std_F_over_D_mean": float(np.mean(ratios[method])), "n_runs": len(f),
                       "acts": bool(mean >= min_flip_share)}
    return out
