"""The IRL core of FA-IRL (paper Sec. 3-4): rewards, losses, failures, training. numpy/torch only.

Code outside this package imports from ``fairl_lib.irl`` itself. The modules, in reading order:

- :mod:`~fairl_lib.irl.fairl`: **Algorithm 1 for one run** (``train_one``), beside the paper.
- :mod:`~fairl_lib.irl.reward`: dual-path reward R = R_D + R_F on frozen embeddings (Sec. 4.1), save/load.
- :mod:`~fairl_lib.irl.losses`: max-margin (Eq. 1), max-entropy (Eq. 2), failure versions, Eq. 3.
- :mod:`~fairl_lib.irl.failures`: failure sets and schedules (Alg. 1 lines 3-10, 13).
- :mod:`~fairl_lib.irl.methods`: the six methods of Table 1.
- :mod:`~fairl_lib.irl.config`, :mod:`~fairl_lib.irl.data`, :mod:`~fairl_lib.irl.common`:
  ``IRLConfig``, preference pairs and their split / randomness, run results.
- :mod:`~fairl_lib.irl.grid`: ``train_grid``, every (method, seed) of Table 1 at once (batched; same
  results as ``train_one`` per run).
- :mod:`~fairl_lib.irl.synthetic`: a preference environment with a known ground-truth reward.
- :mod:`~fairl_lib.irl.theory`: the Theorem 1 toy (Fig. 2).
"""
from fairl_lib.irl import theory
from fairl_lib.irl.common import HISTORY_KEYS, GridResult, TrainedRun, torch_threads
from fairl_lib.irl.config import IRLConfig
from fairl_lib.irl.data import PreferenceData
from fairl_lib.irl.fairl import train_one
from fairl_lib.irl.grid import train_grid
from fairl_lib.irl.methods import (
    BASELINES,
    FA_METHODS,
    METHOD_NAMES,
    METHODS,
    MethodSpec,
    baseline_of,
    method_label,
    method_spec,
    method_title,
)
from fairl_lib.irl.reward import (
    WEIGHT_FILE,
    RewardModel,
    init_path,
    load_reward,
    path_generator,
    reward_folder,
    save_reward,
)
from fairl_lib.irl.synthetic import make_env, make_synthetic
from fairl_lib.irl.theory import TheoryConfig

__all__ = [
    "BASELINES", "FA_METHODS", "HISTORY_KEYS", "METHODS", "METHOD_NAMES", "WEIGHT_FILE", "GridResult", "IRLConfig",
    "MethodSpec", "PreferenceData", "RewardModel", "TheoryConfig", "TrainedRun", "baseline_of", "init_path",
    "load_reward", "make_env", "make_synthetic", "method_label", "method_spec", "method_title", "path_generator",
    "reward_folder", "save_reward", "theory", "torch_threads", "train_grid", "train_one",
]
