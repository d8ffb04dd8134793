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
"""
from __future__ import annotations

import dataclasses
import importlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairl_lib.paths import results_dir

PROFILE_DIR = Path(__file__).with_name("profiles")


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


@dataclass(frozen=True)
class PairMixConfig:
    """Pair-mix sweep of Appendix D (Figure 4).

    Attributes:
        fractions: shares of T->NT pairs swept (the rest NT->NT).
        total_pairs: fixed total number of pairs per mix.
    """

    fractions: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
    total_pairs: int = 2000


# section name -> "module:Class"; classes live next to the code that reads them.
SECTIONS: dict[str, str] = {
    "data": "fairl_lib.config:DataConfig",
    "models": "fairl_lib.config:ModelsConfig",
    "gen": "fairl_lib.llm.models:GenSettings",
    "rlhf": "fairl_lib.llm.rlhf:RLHFConfig",
    "pairs": "fairl_lib.config:PairsConfig",
    "irl": "fairl_lib.irl:IRLConfig",
    "pairmix": "fairl_lib.config:PairMixConfig",
    "theory": "fairl_lib.irl.theory:TheoryConfig",
    "sizes": "fairl_lib.stages.sizes:SizesConfig",
    "rerlhf": "fairl_lib.stages.rerlhf:RerlhfConfig",
    "penalty_sweep": "fairl_lib.stages.penalty_sweep:PenaltySweepConfig",
    "audit": "fairl_lib.stages.audit:AuditConfig",
    "pair_audit": "fairl_lib.stages.pair_audit:PairAuditConfig",
    "tuning": "fairl_lib.stages.tuning:TuningConfig",
    "ledger": "fairl_lib.analysis.stats:LedgerConfig",
}
TOP_LEVEL_KEYS = {"description", "assets"}


class ConfigError(ValueError):
    """A profile, section, field or value that does not exist or does not fit."""


@dataclass(frozen=True)
class Config:
    """Everything one run depends on: profile, seed, and one frozen dataclass per section."""

    profile: str
    seed: int
    force: bool = False
    notebook: str = ""
    forced: tuple[str, ...] = ()
    run_id: str = ""
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
        return stage in self.forced

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


def section_class(name: str) -> type:
    if name not in SECTIONS:
        raise ConfigError(f"Unknown config section {name!r}. Valid sections: {', '.join(SECTIONS)}.")
    module, cls = SECTIONS[name].split(":")
    return getattr(importlib.import_module(module), cls)


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
    extra = sorted(k for k in raw if k not in SECTIONS and k not in TOP_LEVEL_KEYS)
    if extra:
        raise ConfigError(f"Profile {profile!r} has unknown section(s) {extra}. Valid sections: {', '.join(SECTIONS)}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"SEED must be an int, got {seed!r}.")
    patch = parse_overrides(overrides)
    for sec in patch:
        section_class(sec)  # validates the name
    sections = {}
    for name in SECTIONS:
        values = dict(raw.get(name, {}))
        values.update(patch.get(name, {}))
        sections[name] = build_section(name, values)
    return Config(profile=profile, seed=seed, force=bool(force), notebook=notebook,
                  forced=tuple(forced) if force else (), run_id=run_id,
                  description=raw.get("description", ""), assets=tuple(raw.get("assets", ())),
                  sections=sections)
