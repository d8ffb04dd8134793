"""Does the failure path act? How much R_F changes an FA-IRL reward R = R_D + R_F (Sec. 4.1).

Under Eq. 3 as printed the failure path can collapse (:class:`fairl_lib.irl.IRLConfig` explains why);
an FA method whose R_F is almost 0 is its IRL baseline under another name. The measures, on both
outputs of the pairs of a split, from the trained reward's components (``RewardModel.components``):

- **flip share**: the share of pairs whose ranking R_F changes, sign(Delta_D) != sign(Delta_D + Delta_F)
  with Delta_X = R_X(o+) - R_X(o-) (o+ = o_post). A path that flips none changes no decision
  that depends on ranking pairs.
- **initial flip share**: the same with the run's *initial* failure path, sign(Delta_D) !=
  sign(Delta_D + Delta_F_init). R_F starts from a random Kaiming-uniform init (drawn from the run's
  seed, :func:`initial_failure_path`), so an R_F that barely trained (penalty scale 0, early stopping)
  can flip pairs by its init alone: that is noise, not a learned correction.
- **learned flip share**: the share of pairs whose ranking the *learned change* of R_F alters,
  sign(Delta_D + Delta_F) != sign(Delta_D + Delta_F_init): 0 for an R_F that is still its init,
  whatever the init flips.
- **std ratio**: std(R_F) / std(R_D) over the outputs (scale of the correction).

The flip share and std ratio are the quantities of
:func:`fairl_lib.analysis.evaluate.failure_path_share` (per run); :func:`failure_path_summary`
aggregates all of them per method over seeds and says whether the path acts (:func:`acts`): the trained
R_F changes the ranking of at least :data:`ACTING_FLIP_SHARE` of the pairs against R_D alone, *and* more of
them than its initialisation did. The second condition keeps out a path that merely shrinks its init (a
learned flip share that only undoes what the init flipped would otherwise count).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor

from fairl_lib.analysis.pairset import PairSet
from fairl_lib.irl import IRLConfig, RewardModel, init_path, path_generator

ACTING_FLIP_SHARE = 0.02  # a failure path "acts" when it flips at least 2% of the pairs' rankings


def acts(flip_share: float, flip_share_init: float, min_flip_share: float = ACTING_FLIP_SHARE) -> bool:
    """Whether a failure path acts: it flips at least ``min_flip_share`` of the pairs against R_D alone
    (sign(Delta_D) != sign(Delta_D + Delta_F)) and more than its initialisation flipped."""
    return bool(flip_share >= min_flip_share and flip_share > flip_share_init)
_IRL_FIELDS = frozenset(f.name for f in dataclasses.fields(IRLConfig))


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


def _run_config(reward: RewardModel) -> IRLConfig:
    cfg = reward.meta.get("config")
    if isinstance(cfg, IRLConfig):
        return cfg
    if isinstance(cfg, Mapping):                      # as saved by save_reward (older files may lack fields)
        return IRLConfig(**{k: v for k, v in cfg.items() if k in _IRL_FIELDS})
    raise ValueError(f"{reward!r} has no training config in its meta (meta['config']); the initial failure "
                     "path is drawn from the run's seed and config. Use a reward from train_grid / train_one "
                     "or load_reward.")


def initial_failure_path(reward: RewardModel, seed: int | None = None) -> dict[str, Tensor] | None:
    """The parameters R_F of ``reward``'s run started from, recomputed exactly as the trainers draw them
    (``init_path(dim, cfg.path_head("failure"), cfg.hidden, path_generator(seed, "failure"), dtype)``,
    :class:`fairl_lib.irl.fairl.RewardPath` and ``fairl_lib.irl.grid._init_run``), from the run's seed
    (``reward.meta["seed"]``; ``seed`` when the meta has none) and config (``reward.meta["config"]``, an
    :class:`IRLConfig` or its dict as saved), in the dtype of the trained path. None for a base-only reward.

    Raises a ValueError when the meta lacks the seed or config, or when the config's failure head and
    width do not match the trained path's (the meta does not belong to these weights).
    """
    if reward.failure is None:
        return None
    run_seed = reward.meta.get("seed", seed)
    if run_seed is None:
        raise ValueError(f"{reward!r} has no seed in its meta (meta['seed']) and none was given; the initial "
                         "failure path is drawn from the run's seed.")
    cfg = _run_config(reward)
    head, hidden = cfg.path_head("failure"), cfg.hidden
    if head != reward.fail_head or (head == "mlp" and hidden != reward.fail_hidden):
        raise ValueError(f"{reward!r}: its config says a {head!r} failure path (hidden={hidden}) but the trained "
                         f"path is {reward.fail_head!r} (hidden={reward.fail_hidden}); meta and weights do not "
                         "belong together.")
    dtype = next(iter(reward.failure.values())).dtype
    return init_path(reward.dim, head, hidden, path_generator(int(run_seed), "failure"), dtype)


def initial_failure_margins(reward: RewardModel, ps: PairSet, init: Mapping[str, Tensor] | None = None,
                            seed: int | None = None) -> np.ndarray:
    """Delta_F_init per pair of ``ps``: the margin R_F_init(o_post) - R_F_init(o_pre) of the run's initial
    failure path (``init``, default :func:`initial_failure_path`), computed like the trained path's
    (``RewardModel.components``), so an R_F equal to its init gives Delta_F_init == Delta_F bit for bit;
    zeros for a base-only reward."""
    if reward.failure is None:
        return np.zeros(len(ps))
    init = initial_failure_path(reward, seed) if init is None else init
    return path_margins(RewardModel(reward.base, init), ps)[1]


def flip_shares(reward: RewardModel, ps: PairSet, init: Mapping[str, Tensor] | None = None,
                seed: int | None = None) -> dict[str, float]:
    """All three flip shares of ``reward`` on the pairs of ``ps`` (NaN each without pairs; 0 each for a
    base-only reward):

    - ``flip_share``: sign(Delta_D) != sign(Delta_D + Delta_F) (:func:`flip_share`),
    - ``flip_share_init``: sign(Delta_D) != sign(Delta_D + Delta_F_init), what the initial R_F flips,
    - ``learned_flip_share``: sign(Delta_D + Delta_F) != sign(Delta_D + Delta_F_init), what the learned
      change of R_F flips.

    ``init`` / ``seed``: see :func:`initial_failure_margins`.
    """
    if len(ps) == 0:
        return {"flip_share": float("nan"), "flip_share_init": float("nan"), "learned_flip_share": float("nan")}
    d_d, d_f = path_margins(reward, ps)
    d_init = initial_failure_margins(reward, ps, init, seed)
    s_d, s_full, s_init = np.sign(d_d), np.sign(d_d + d_f), np.sign(d_d + d_init)
    return {"flip_share": float(np.mean(s_d != s_full)), "flip_share_init": float(np.mean(s_d != s_init)),
            "learned_flip_share": float(np.mean(s_full != s_init))}


def learned_flip_share(reward: RewardModel, ps: PairSet, init: Mapping[str, Tensor] | None = None,
                       seed: int | None = None) -> float:
    """Share of the pairs of ``ps`` whose ranking the learned change of R_F alters:
    sign(Delta_D + Delta_F) != sign(Delta_D + Delta_F_init) (:func:`flip_shares`)."""
    return flip_shares(reward, ps, init, seed)["learned_flip_share"]


def std_ratio(reward: RewardModel, ps: PairSet) -> float:
    """std(R_F) / std(R_D) over both outputs of every pair of ``ps``."""
    dp, fp = reward.components(ps.emb_post)
    dm, fm = reward.components(ps.emb_pre)
    return float(np.std(np.r_[fp, fm]) / max(np.std(np.r_[dp, dm]), 1e-12))


def failure_path_summary(grid: Any, ps: PairSet, split: str | None = "train",
                         min_flip_share: float = ACTING_FLIP_SHARE) -> dict[str, dict[str, Any]]:
    """Per FA method of ``grid`` (anything with ``rewards = {(method, seed): RewardModel}``, e.g. a
    :class:`~fairl_lib.analysis.evaluate.GridOutput`), on the pairs of ``split`` (None = all pairs):

    ``{method: {"flip_share_mean", "flip_share_min", "flip_share_max", "flip_share_init_mean",
    "learned_flip_share_mean", "learned_flip_share_min", "learned_flip_share_max",
    "ratio_std_F_over_D_mean", "n_runs", "acts"}}``, over the method's seeds (:func:`flip_shares`; each
    run's initial failure path from its meta's seed and config, the key's seed when the meta has none);
    ``acts`` = :func:`acts` of the mean flip share and the mean initial flip share. Methods without a failure path (the
    baselines) are left out.
    """
    sub = ps.split(split) if split else ps
    shares: dict[str, list[dict[str, float]]] = {}
    ratios: dict[str, list[float]] = {}
    rewards: Mapping[tuple[str, int], RewardModel] = grid.rewards
    for (method, seed), reward in sorted(rewards.items()):
        if reward.failure is None:
            continue
        shares.setdefault(method, []).append(flip_shares(reward, sub, seed=seed))
        ratios.setdefault(method, []).append(std_ratio(reward, sub))
    out = {}
    for method, runs in shares.items():
        f = [r["flip_share"] for r in runs]
        learned = [r["learned_flip_share"] for r in runs]
        learned_mean = float(np.mean(learned))
        out[method] = {"flip_share_mean": float(np.mean(f)), "flip_share_min": float(np.min(f)),
                       "flip_share_max": float(np.max(f)),
                       "flip_share_init_mean": float(np.mean([r["flip_share_init"] for r in runs])),
                       "learned_flip_share_mean": learned_mean, "learned_flip_share_min": float(np.min(learned)),
                       "learned_flip_share_max": float(np.max(learned)),
                       "ratio_std_F_over_D_mean": float(np.mean(ratios[method])), "n_runs": len(runs),
                       "acts": acts(float(np.mean(f)), float(np.mean([r["flip_share_init"] for r in runs])),
                                    min_flip_share)}
    return out
