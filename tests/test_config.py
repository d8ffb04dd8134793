import dataclasses

import pytest

from fairl_lib.config import ConfigError, available_profiles, make_config, parse_overrides


def test_profiles_exist_and_load():
    assert {"smoke", "cpu", "paper"} <= set(available_profiles())
    for name in available_profiles():
        cfg = make_config(name, seed=3)
        assert cfg.profile == name and cfg.seed == 3
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.seed = 4  # frozen


def test_unknown_profile_names_valid_ones():
    with pytest.raises(ConfigError, match=r"Unknown profile 'cpuu'.*cpu.*paper.*smoke"):
        make_config("cpuu")


def test_misspelled_field_names_valid_ones():
    with pytest.raises(ConfigError, match=r"Unknown field\(s\) n_seedz in section \[irl\].*n_seeds"):
        make_config("smoke", overrides="irl.n_seedz=2")


def test_unknown_section_and_bad_syntax():
    with pytest.raises(ConfigError, match="Valid sections"):
        make_config("smoke", overrides="irll.n_seeds=2")
    with pytest.raises(ConfigError, match="section.field=value"):
        make_config("smoke", overrides="n_seeds=2")


def test_override_types_are_checked_and_applied():
    cfg = make_config("smoke", overrides="irl.n_seeds=2; pairs.test_fraction=0.5")
    assert cfg.irl.n_seeds == 2 and cfg.pairs.test_fraction == 0.5
    with pytest.raises(ConfigError, match="must be int"):
        make_config("smoke", overrides="irl.n_seeds='two'")


def test_parse_overrides_literals():
    assert parse_overrides("a.b=1; a.c=0.5; d.e=true; d.f=[0.1, 0.2]") == {
        "a": {"b": 1, "c": 0.5}, "d": {"e": True, "f": [0.1, 0.2]}}


def test_paper_profile_uses_paper_scale():
    cfg = make_config("paper")
    assert cfg.pairs.n_pairs == 20000 and cfg.irl.n_seeds == 5
    assert cfg.data.jigsaw_n_toxic == 1000 and cfg.data.jigsaw_n_nontoxic == 1000
    assert cfg.models.ground_truth == "roberta"
