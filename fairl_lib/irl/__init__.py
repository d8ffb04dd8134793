"""The IRL core of FA-IRL (paper Sec. 3-4): rewards, losses, failures, training. numpy/torch only.

- :mod:`~fairl_lib.irl.reward`: dual-path reward R = R_D + R_F on frozen embeddings (Sec. 4.1), save/load.
- :mod:`~fairl_lib.irl.losses`: max-margin (Eq. 1), max-entropy (Eq. 2), failure versions, Eq. 3.
- :mod:`~fairl_lib.irl.failures`: failure sets and curricula (Alg. 1 lines 3-10, 13).
- :mod:`~fairl_lib.irl.train`: ``IRLConfig``, the Table 1 methods, ``train_grid`` (batched) / ``train_one``.
- :mod:`~fairl_lib.irl.synthetic`: a preference environment with a known ground-truth reward.
- :mod:`~fairl_lib.irl.theory`: the Theorem 1 toy (Fig. 2).
"""
from fairl_lib.irl.reward import RewardModel, load_reward, reward_folder, save_reward
from fairl_lib.irl.train import (
    METHOD_NAMES,
    GridResult,
    IRLConfig,
    PreferenceData,
    TrainedRun,
    method_spec,
    train_grid,
    train_one,
)

__all__ = [
    "METHOD_NAMES", "GridResult", "IRLConfig", "PreferenceData", "RewardModel", "TrainedRun", "load_reward",
    "method_spec", "reward_folder", "save_reward", "train_grid", "train_one",
]
