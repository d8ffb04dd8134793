"""Former home of IRL training, kept so existing ``fairl_lib.irl.train`` imports keep working.

Import from :mod:`fairl_lib.irl` instead: Algorithm 1 for one run is :mod:`fairl_lib.irl.fairl`, the
batched grid :mod:`fairl_lib.irl.grid`.
"""
from fairl_lib.irl.common import HISTORY_KEYS, GridResult, TrainedRun
from fairl_lib.irl.config import IRLConfig
from fairl_lib.irl.data import PreferenceData
from fairl_lib.irl.fairl import train_one
from fairl_lib.irl.grid import train_grid
from fairl_lib.irl.methods import METHOD_NAMES, METHODS, MethodSpec, method_spec

__all__ = ["HISTORY_KEYS", "METHODS", "METHOD_NAMES", "GridResult", "IRLConfig", "MethodSpec", "PreferenceData",
           "TrainedRun", "method_spec", "train_grid", "train_one"]
