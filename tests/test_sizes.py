"""Model-size study (App. E, Figure 5): CI aggregation and per-size stage settings."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fairl_lib.stages import sizes
from fairl_lib.config import ConfigError, make_config


def test_mean_ci_hand_worked():
    # values 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.302652729911275, half = 4.3027 / sqrt(3) = 2.48414
    ci = sizes.mean_ci([1.0, 2.0, 3.0], 0.95)
    assert ci["mean"] == pytest.approx(2.0)
    assert ci["std"] == pytest.approx(1.0)
    assert ci["ci_low"] == pytest.approx(2.0 - 2.484138, abs=1e-5)
    assert ci["ci_high"] == pytest.approx(2.0 + 2.484138, abs=1e-5)
    assert ci["n"] == 3


def test_mean_ci_two_values_and_level():
    # values 0.5, 0.7: mean 0.6, s = 0.141421, t_{0.95, 1} = 6.313752, half(90%) = 6.313752 * 0.1 = 0.631375
    ci = sizes.mean_ci([0.5, 0.7], 0.90)
    assert ci["ci_low"] == pytest.approx(0.6 - 0.6313752, abs=1e-6)
    assert ci["ci_high"] == pytest.approx(0.6 + 0.6313752, abs=1e-6)


def test_mean_ci_degenerate():
    one = sizes.mean_ci([0.3])
    assert one["mean"] == 0.3 and math.isnan(one["ci_low"]) and one["n"] == 1
    none = sizes.mean_ci([float("nan")])
    assert none["n"] == 0 and math.isnan(none["mean"])
    same = sizes.mean_ci([0.4, 0.4, 0.4])
    assert same["ci_low"] == pytest.approx(0.4) and same["ci_high"] == pytest.approx(0.4)


def test_aggregate_groups():
    df = pd.DataFrame({"size_lm": ["a"] * 3 + ["b"] * 3, "method": ["m"] * 6, "seed": [0, 1, 2] * 2,
                       "accuracy": [1.0, 2.0, 3.0, 0.5, 0.5, 0.5], "starc": [0.1, 0.1, 0.1, 0.2, 0.3, 0.4]})
    agg = sizes.aggregate(df).set_index("size_lm")
    assert agg.loc["a", "accuracy_mean"] == pytest.approx(2.0)
    assert agg.loc["a", "accuracy_ci_high"] == pytest.approx(4.484138, abs=1e-5)
    assert agg.loc["b", "starc_mean"] == pytest.approx(0.3)
    assert agg.loc["b", "n_seeds"] == 3


def test_size_config_reduces_only_non_primary():
    cfg = make_config("cpu", overrides="sizes.rlhf_steps=7; sizes.n_pairs=50")
    assert sizes.size_config(cfg, cfg.models.base_lm) is cfg
    other = sizes.size_config(cfg, "gemma3-270m")
    assert other.rlhf.steps == 7 and other.pairs.n_pairs == 50
    assert other.rlhf.lr == cfg.rlhf.lr and other.gen == cfg.gen
    both = sizes.size_config(make_config("cpu", overrides="sizes.rlhf_steps=7; sizes.reduce_primary=true"),
                             cfg.models.base_lm)
    assert both.rlhf.steps == 7


def test_size_stage_keys_distinct():
    from fairl_lib.stages.expert import expert_key
    from fairl_lib.stages.pairs import pairs_settings

    cfg = make_config("cpu")
    keys = {lm: expert_key(sizes.size_config(cfg, lm), lm) for lm in cfg.models.size_lms}
    assert len(set(keys.values())) == len(keys)
    # the primary's stages are notebook 01/02's
    assert keys[cfg.models.base_lm] == expert_key(cfg)
    assert pairs_settings(sizes.size_config(cfg, cfg.models.base_lm)) == pairs_settings(cfg)


def test_sizes_config_validation():
    with pytest.raises(ConfigError, match="valid"):
        make_config("smoke", overrides='sizes.methods=["me_fa_nope"]')
    with pytest.raises(ConfigError):
        make_config("smoke", overrides="sizes.ci_level=1.5")


def test_params_millions(tmp_path):
    from safetensors.numpy import save_file

    save_file({"a": np.zeros((1000, 500), np.float32), "b": np.zeros(500_000, np.float32)}, str(tmp_path / "m.safetensors"))
    assert sizes.params_millions(tmp_path) == pytest.approx(1.0)
