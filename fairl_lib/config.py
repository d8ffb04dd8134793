"""Profiles and the frozen run configuration.

A *profile* is one readable TOML file in ``fairl_lib/profiles/`` (``smoke``, ``cpu``, ``paper``).
Each ``[section]`` of the file fills one frozen dataclass; each dataclass lives next to the code
that uses it (``irl.IRLConfig``, ``llm.rlhf.RLHFConfig``, ...) and documents every field in its
docstring. Defaults are the paper's values, so a profile file states what it changes.

A notebook's ``parameters`` cell holds plain scalars (``PROFILE``, ``SEED``, ``FORCE``,
``OVERRIDES``); :func:`make_config` turns them into a validated :class:`Config`. A misspelled
section, field or profile stops with an error naming the valid ones.

``OVERRIDES`` is a string of ``section.field=value`` items separated by ``;`` (values are TOML
literals), e.g. ``"irl.n_seeds=2; rlhf.steps=4"``.

**The section registry.** This module names no section class of another layer. Each section's
dataclass registers itself where it is defined, ``@section("rerlhf")`` (a core module therefore never
imports stages, analysis or llm), and :mod:`fairl_lib.sections` (the entry layer, imported by the
package, the notebooks, the pipeline and the CLI) imports every owner and then declares the complete
list with :func:`declare_sections`. A config built before that declaration stops with an error
saying what to import, instead of silently lacking a section.

**Run control apart from the science.** What a run *does* with its stages (``FORCE``, the stages it
owns, its id, the notebook's name) is a :class:`RunControl` held by the config as ``cfg.control``;
no stage key reads it.

**Knobs that do not change results.** A field that only trades speed or memory (and is tested to
give the same numbers at any value) is declared with :func:`speed_knob`; :func:`result_settings`,
which every stage key goes through (:func:`fairl_lib.cache.stage_key`), leaves it out, so changing it
reuses the cached stages.
"""
from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairl_lib.paths import results_dir

PROFILE_DIR = Path(__file__).with_name("profiles")

# --------------------------------------------------------------------------- the section registry

SECTIONS: dict[str, type] = {}  # section name -> dataclass, filled by @section where each class is defined
_DECLARED: tuple[str, ...] = ()  # the complete list, in profile order, once fairl_lib.sections has run
TOP_LEVEL_KEYS = {"description", "assets"}
AFFECTS_RESULTS = "affects_results"  # dataclasses field metadata key: False = a speed/memory knob


class ConfigError(ValueError):
    """A profile, section, field or value that does not exist or does not fit."""


def section(name: str) -> Callable[[type], type]:
    """Class decorator: register a frozen dataclass as profile section ``[name]``.

    Used where the class is defined (``@section("irl")`` above ``class IRLConfig``); a second class
    under the same name is an error (two owners of one section).
    """
    def register(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"section [{name}]: {cls.__name__} is not a dataclass")
        if SECTIONS.get(name, cls) is not cls:
            raise ConfigError(f"Section [{name}] is registered twice: {SECTIONS[name].__qualname__} and {cls.__qualname__}.")
        SECTIONS[name] = cls
        return cls
    return register


def declare_sections(names: tuple[str, ...]) -> None:
    """Declare the complete list of sections, in profile order (:mod:`fairl_lib.sections`, once it has
    imported every owner). A name no class registered, or a registered class left out, is an error."""
    global _DECLARED
    missing, extra = [n for n in names if n not in SECTIONS], sorted(set(SECTIONS) - set(names))
    if missing or extra:
        raise ConfigError(f"Config sections declared {list(names)} but registered {sorted(SECTIONS)}: "
                          f"missing {missing}, undeclared {extra}.")
    _DECLARED = tuple(names)


def section_names() -> tuple[str, ...]:
    """Every section, in profile order; an error when :mod:`fairl_lib.sections` has not run yet."""
    if not _DECLARED:
        raise ConfigError("The config sections are not registered yet: import fairl_lib.sections (or fairl_lib) "
                          f"before building a Config (registered so far: {', '.join(SECTIONS) or 'none'}).")
    return _DECLARED


def section_class(name: str) -> type:
    """The dataclass of section ``[name]``; unknown names list the valid ones."""
    names = section_names()
    if name not in names:
        raise ConfigError(f"Unknown config section {name!r}. Valid sections: {', '.join(names)}.")
    return SECTIONS[name]


def speed_knob(default: Any, **kwargs: Any) -> Any:
    """A dataclass field that changes speed or memory only, never a result (a test shows equal results at two
    values): :func:`result_settings` leaves it out of every stage key, so changing it reuses the cache."""
    return field(default=default, metadata={AFFECTS_RESULTS: False}, **kwargs)


def affects_results(f: dataclasses.Field) -> bool:
    """False for a field declared with :func:`speed_knob`."""
    return f.metadata.get(AFFECTS_RESULTS, True)


def result_settings(obj: Any) -> dict[str, Any]:
    """A dataclass's fields that can change a result, by name (one level; nested dataclasses are left as
    they are): what a stage key holds of it (:func:`fairl_lib.cache.stage_key`)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if affects_results(f)}


@section("data")
@dataclass(frozen=True)
class DataConfig:
    """Which real data each stage reads (paper Section 5).

    Attributes:
        ppo_prompt_toxicity: RealToxicityPrompts prompts with Perspective toxicity above this feed
            RLHF (paper: 0.3).
        pair_prompt_toxicity: prompts above this feed the preference pairs (paper: 0.5).
        heldout_prompts: prompts set aside (deterministically) to measure the expert and re-RLHF.
        max_ppo_prompts: cap on RLHF training prompts (0 = all).
        max_pair_prompts: cap on pair prompts (0 = all).
        jigsaw_n_toxic: human-labelled toxic Jigsaw comments in the held-out set (paper: 1,000).
        jigsaw_n_nontoxic: non-toxic Jigsaw comments in the held-out set (paper: 1,000).
        rtp_sources: the RealToxicityPrompts assets read together, deduplicated by prompt text:
            ``"rtp"`` (the hub dataset, or the mirror's DecodingTrust files: 993 prompts above 0.5) and
            ``"rtp-quark"`` (the mirror's further 5,000 rows, 1,249 above 0.5; the hub's full dataset
            already holds them). More distinct pair prompts, fewer pairs per prompt.
        screen: screen the prompts by the base model's own toxicity (:mod:`fairl_lib.stages.screen`, ours:
            an adaptation of the paper's prompt filter for a base model that is rarely toxic). When on, the
            held-out prompts and the pair prompts come from the prompts that pass, and the held-out prompts
            are kept out of the pairs and of RLHF (a prompt serves one purpose). Off: the prompt-score filters
            above alone, as in the paper.
        screen_rlhf: with ``screen``, the expert trains on the screened prompts that are not held out, the
            pair prompts (True), or on every prompt above ``ppo_prompt_toxicity`` but the held-out ones
            (False). Both were measured on the cpu profile (benchmarks/README.md, "Prompt screening").
        screen_prompt_toxicity: the candidates screened: Perspective toxicity above this.
        screen_first_draws: base-model completions per candidate in the first round.
        screen_continue_min: toxic completions in the first round that earn a prompt the second round.
        screen_more_draws: completions per prompt in the second round.
        screen_min_toxic: toxic completions (both rounds) a prompt needs to pass.
        screen_seed: the screen's sampling seed; not the run's seed, and no later stage uses it.
        screen_max_candidates: cap on candidates (0 = all), in the screen seed's hash order.
        heldout_samples: completions per held-out prompt and model in notebook 01's evaluation (the
            ground-truth arm of re-RLHF reuses it when ``rerlhf.final_samples_per_prompt`` is equal).
    """

    ppo_prompt_toxicity: float = 0.3
    pair_prompt_toxicity: float = 0.5
    heldout_prompts: int = 128
    max_ppo_prompts: int = 0
    max_pair_prompts: int = 0
    jigsaw_n_toxic: int = 1000
    jigsaw_n_nontoxic: int = 1000
    rtp_sources: tuple[str, ...] = ("rtp",)
    screen: bool = False
    screen_rlhf: bool = True
    screen_prompt_toxicity: float = 0.3
    screen_first_draws: int = 2
    screen_continue_min: int = 1
    screen_more_draws: int = 4
    screen_min_toxic: int = 2
    screen_seed: int = 7
    screen_max_candidates: int = 0
    heldout_samples: int = 8

    def __post_init__(self) -> None:
        if not self.rtp_sources:
            raise ValueError("data.rtp_sources is empty: name at least one RealToxicityPrompts asset (e.g. [\"rtp\"]).")
        if self.screen and (self.screen_first_draws < 1 or self.screen_more_draws < 0 or self.screen_min_toxic < 0):
            raise ValueError("data.screen_first_draws must be >= 1, screen_more_draws and screen_min_toxic >= 0.")


@section("models")
@dataclass(frozen=True)
class ModelsConfig:
    """Which models play which role.

    Attributes:
        base_lm: the base LM pi_0 that RLHF detoxifies (a name in ``models.BASE_LMS``).
        size_lms: base LMs compared in the model-size appendix (notebook 07, Figure 5).
        ground_truth: the ground-truth toxicity scorer; its reward drives RLHF and defines labels
            (a name in ``scorers``; paper: ``roberta``; offline: ``bilstm``).
        judge: a second, independent toxicity judge, so reward hacking of one scorer shows.
        subtypes: scorer used for toxicity subtypes (paper: Detoxify; offline: the BiLSTM's 6 labels).
        embedder: the frozen sentence encoder h(o) (paper: all-MiniLM-L6-v2).
        toxic_threshold: an output is toxic when the ground truth's P(toxic) exceeds this.
    """

    base_lm: str = "pythia-410m"
    size_lms: tuple[str, ...] = ("smollm2-135m", "gemma3-270m", "smollm2-360m", "pythia-410m")
    ground_truth: str = "roberta"
    judge: str = "profanity"
    subtypes: str = "detoxify"
    embedder: str = "minilm"
    toxic_threshold: float = 0.5


@section("pairs")
@dataclass(frozen=True)
class PairsConfig:
    """Preference pairs (o_post preferred over o_pre), paper Section 5.

    Attributes:
        n_pairs: target number of pairs (paper: 20,000).
        completions_per_prompt: pairs drawn per prompt (several where prompts are few).
        test_fraction: share of pairs in the test split (split by prompt, deterministic).
    """

    n_pairs: int = 20000
    completions_per_prompt: int = 20
    test_fraction: float = 0.2


@section("pairmix")
@dataclass(frozen=True)
class PairMixConfig:
    """Pair-mix sweep of Appendix D (Figure 4).

    Attributes:
        fractions: shares of T->NT pairs swept (the rest NT->NT).
        total_pairs: fixed total number of pairs per mix.
    """

    fractions: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
    total_pairs: int = 2000


@dataclass(frozen=True)
class RunControl:
    """What a run does with its stages, apart from what it computes (no stage key reads it).

    Attributes:
        force: the notebook's ``FORCE``.
        forced: the stages ``FORCE`` recomputes, those the notebook owns
            (:data:`fairl_lib.notebook.NOTEBOOK_STAGES`); empty without ``force``.
        run_id: marks the results this run computes, so a forced stage is computed once per run
            (:func:`fairl_lib.cache.run_stage`).
        notebook: the notebook's stem (``03_theory_toy``), which names its metrics file.
    """

    force: bool = False
    forced: tuple[str, ...] = ()
    run_id: str = ""
    notebook: str = ""


@dataclass(frozen=True)
class Config:
    """Everything one run depends on: profile, seed, and one frozen dataclass per section (``cfg.irl``, ...);
    ``control`` says what the run does with its stages (:class:`RunControl`), never what they compute."""

    profile: str
    seed: int
    control: RunControl = RunControl()
    description: str = ""
    assets: tuple[str, ...] = ()
    sections: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"Config has no section {name!r}; sections: {sorted(sections)}")

    def forces(self, stage: str) -> bool:
        """Whether ``FORCE`` recomputes ``stage``: only the stages in ``forced`` (the ones the notebook owns)."""
        return stage in self.control.forced

    @property
    def results_dir(self) -> Path:
        """``results/<profile>/``."""
        return results_dir(self.profile)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for run.json and stage keys)."""
        out: dict[str, Any] = {"profile": self.profile, "seed": self.seed}
        for name, sec in self.sections.items():
            out[name] = dataclasses.asdict(sec)
        return out


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name: str) -> dict[str, Any]:
    """The raw TOML of profile ``name``; unknown names list the valid ones."""
    path = PROFILE_DIR / f"{name}.toml"
    if not path.exists():
        raise ConfigError(f"Unknown profile {name!r}. Valid profiles: {', '.join(available_profiles())}.")
    with path.open("rb") as fh:
        return tomllib.load(fh)


def parse_overrides(text: str) -> dict[str, dict[str, Any]]:
    """``"irl.n_seeds=2; rlhf.steps=4"`` -> ``{"irl": {"n_seeds": 2}, "rlhf": {"steps": 4}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in filter(None, (s.strip() for s in (text or "").replace("\n", ";").split(";"))):
        key, sep, value = item.partition("=")
        section, dot, fname = key.strip().partition(".")
        if not sep or not dot or not fname:
            raise ConfigError(f"Override {item!r} is not of the form section.field=value (e.g. irl.n_seeds=2).")
        try:
            parsed = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value.strip()
        out.setdefault(section, {})[fname] = parsed
    return out


def _coerce(cls: type, section: str, fname: str, value: Any, default: Any) -> Any:
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, bool) != isinstance(value, bool):
        raise ConfigError(f"{section}.{fname} must be {type(default).__name__}, got {value!r}.")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if default is not None and not isinstance(value, type(default)):
        raise ConfigError(f"{section}.{fname} must be {type(default).__name__}, got {value!r}.")
    return value


def build_section(name: str, values: Mapping[str, Any]) -> Any:
    """One section's dataclass from a mapping; unknown fields list the valid ones."""
    cls = section_class(name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"Unknown field(s) {', '.join(unknown)} in section [{name}]. Valid fields: {', '.join(fields)}."
        )
    defaults = cls()
    kwargs = {k: _coerce(cls, name, k, v, getattr(defaults, k)) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"Invalid settings in section [{name}]: {err}") from err


def make_config(profile: str = "cpu", seed: int = 0, force: bool = False, overrides: str = "",
                notebook: str = "", forced: tuple[str, ...] = (), run_id: str = "") -> Config:
    """Build the frozen, validated :class:`Config` for a profile, a seed and optional overrides.

    ``forced`` names the stages ``FORCE`` recomputes (:data:`fairl_lib.notebook.NOTEBOOK_STAGES` gives a
    notebook's); ``run_id`` marks the results this run computes (see :func:`fairl_lib.cache.run_stage`).
    """
    raw = load_profile(profile)
    names = section_names()
    extra = sorted(k for k in raw if k not in names and k not in TOP_LEVEL_KEYS)
    if extra:
        raise ConfigError(f"Profile {profile!r} has unknown section(s) {extra}. Valid sections: {', '.join(names)}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"SEED must be an int, got {seed!r}.")
    patch = parse_overrides(overrides)
    for sec in patch:
        section_class(sec)  # validates the name
    sections = {}
    for name in names:
        values = dict(raw.get(name, {}))
        values.update(patch.get(name, {}))
        sections[name] = build_section(name, values)
    control = RunControl(force=bool(force), forced=tuple(forced) if force else (), run_id=run_id, notebook=notebook)
    return Config(profile=profile, seed=seed, control=control,
                  description=raw.get("description", ""), assets=tuple(raw.get("assets", ())),
                  sections=sections)
