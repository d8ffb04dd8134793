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


# --------------------------------------------------------------------------- the section registry

def test_every_section_is_registered_by_its_owner_in_profile_order():
    from fairl_lib import config, sections

    assert config.section_names() == sections.ORDER
    assert list(make_config("smoke").sections) == list(sections.ORDER)
    owners = {name: cls.__module__ for name, cls in config.SECTIONS.items()}
    assert owners["irl"] == "fairl_lib.irl.config" and owners["rerlhf"] == "fairl_lib.stages.rerlhf"
    assert owners["ledger"] == "fairl_lib.analysis.stats" and owners["gen"] == "fairl_lib.llm.models"
    assert owners["data"] == "fairl_lib.config"


def test_a_config_built_before_the_sections_are_declared_says_what_to_import(monkeypatch):
    from fairl_lib import config

    monkeypatch.setattr(config, "_DECLARED", ())
    with pytest.raises(ConfigError, match=r"not registered yet: import fairl_lib.sections"):
        make_config("smoke")


def test_a_section_has_one_owner_and_the_declared_list_is_complete(monkeypatch):
    from fairl_lib import config, sections

    monkeypatch.setattr(config, "SECTIONS", dict(config.SECTIONS))
    monkeypatch.setattr(config, "_DECLARED", config._DECLARED)

    @dataclasses.dataclass(frozen=True)
    class Other:
        n: int = 1

    with pytest.raises(ConfigError, match=r"\[irl\] is registered twice"):
        config.section("irl")(Other)
    with pytest.raises(ConfigError, match=r"missing \['nope'\]"):
        config.declare_sections(sections.ORDER + ("nope",))
    config.section("extra")(Other)
    with pytest.raises(ConfigError, match=r"undeclared \['extra'\]"):
        config.declare_sections(sections.ORDER)


def test_to_dict_holds_the_science_only():
    """run.json's config: profile, seed and every field of every section (speed knobs included); nothing of
    the run control."""
    from fairl_lib import sections

    cfg = make_config("smoke", seed=2, force=True, forced=("pairs",), run_id="r1", notebook="02_preference_pairs")
    d = cfg.to_dict()
    assert list(d) == ["profile", "seed", *sections.ORDER] and d == make_config("smoke", seed=2).to_dict()
    assert d["irl"]["eval_chunk"] == cfg.irl.eval_chunk and d["gen"]["workers"] == cfg.gen.workers


def test_run_control_lives_apart_from_the_science():
    from fairl_lib.config import RunControl

    cfg = make_config("smoke", force=True, forced=("pairs",), run_id="r1", notebook="02_preference_pairs")
    assert cfg.control == RunControl(force=True, forced=("pairs",), run_id="r1", notebook="02_preference_pairs")
    assert cfg.forces("pairs") and not cfg.forces("expert")
    with pytest.raises(AttributeError, match="no section 'run_id'"):
        cfg.run_id  # noqa: B018
