"""Each Table 1 method at its own best settings, found with the same budget (ours, not the paper's).

Why: with Eq. 3 as printed and the profiles' settings, the failure path collapses and every FA-IRL
method equals its IRL baseline (:class:`fairl_lib.irl.IRLConfig` explains why). The paper leaves
several settings open (hidden width, M_fail, tau_fail, the decay of lambda_t, the head of R_F). So we
compare the methods best against best: every method gets the same number of trials of a seeded
search over the same kind of space, and its best configuration is then trained like notebook 04's grid.

- **Tuning split** (:func:`tuning_split`): the pair artifact's ``train`` split only, split again by
  prompt (:func:`fairl_lib.analysis.pairset.split_by_prompt`) into tune-train and tune-validation
  pairs. The test pairs and Jigsaw are never seen by the search.
- **Objective** (:func:`validation_auc`): the mean over the trial's seeds of the in-domain ROC-AUC on
  the tune-validation pairs (label 1 = o_post, 0 = o_pre: Table 1's in-domain task). It uses only
  preference data, as an IRL practitioner without a ground-truth reward or labels could (the
  ``*_fa_gt`` methods still train with their labels; the selection never reads them).
- **Trial**: ``train_grid(tune-train, trial config, methods=[method], seeds=range(trial_seeds))``.
- **Search space** (:func:`method_space`): lr (log 3e-4..3e-3), head {linear, mlp}, hidden {16, 32,
  64, 128}, M (MM, 0.2..2.0) or tau (ME, 0.3..3.0); FA methods also the failure head {linear, mlp},
  M_fail = M x 1..4 (MM) or tau_fail = tau x 0.25..1 (ME), lambda_0 (log 0.1..30), its decay
  (0.8..0.995), the penalty scale c in {0, 0.01, 0.1, 1} (Eq. 3 as printed: 1), and for the
  ``*_fa_margin`` methods the bottom-k start fraction (0.05..0.4). Everything else is ``cfg.irl``.
- **Sampler**: Optuna's TPE (``TPESampler``), seeded from ``cfg.seed`` and the method name
  (:func:`sampler_seed`, a sha256, stable across runs and machines), one study per method. Optuna
  because its seeded TPE sampler makes a search reproducible trial by trial and it is a widely used,
  well-kept package. It is imported inside the functions that search, so building a config (which
  imports this module for :class:`TuningConfig`) does not load it.
- **Acting** (:func:`fairl_lib.analysis.failure_path.acts`): a trial of an FA method acts when its trained
  failure path changes the ranking of at least ``min_flip_share`` (2%) of the tune-train pairs against R_D
  alone (mean over its seeds of the share with sign(Delta_D) != sign(Delta_D + Delta_F)) *and* of more
  pairs than its initial failure path did (sign(Delta_D) != sign(Delta_D + Delta_F_init)). Otherwise it is
  recorded with ``acting=False``: it is its baseline under another name. R_F starts from a random init,
  so with the penalty scale at 0 and early stopping an R_F that barely trained flips pairs by its init
  alone, and one that only shrinks its init flips fewer than the init did; neither counts. The learned
  flip share (sign(Delta_D + Delta_F) != sign(Delta_D + Delta_F_init)) is recorded beside. An FA method's winner
  is its best *acting* trial; when none acts, its best trial, marked ``acting=False``
  (``no_acting_trial=True``).

Stages (both owned by notebook 04):

- ``irl_tuning`` (:func:`tuning_stage`): the search, keyed by the pairs' fingerprint, the search
  space, the budget, the trial seeds, ``cfg.irl``, the Optuna version and :data:`TUNING_VERSION`;
  every trial's params, value, acting flag, flip share and learned flip share, and each method's
  best configuration, as JSON. A killed search resumes method by method.
- ``irl_best`` (:func:`best_stage`): each method's best configuration trained with ``best_seeds``
  seeds on the full training split (notebook 04's data), in the folder layout of notebook 04's grid,
  so :func:`fairl_lib.analysis.evaluate.evaluate_grid` evaluates it like Table 1.

:func:`best_fa_config` gives the best acting FA configuration, the one notebooks 06-08 use.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from fairl_lib.analysis import metrics
from fairl_lib.analysis.evaluate import GridOutput
from fairl_lib.analysis.failure_path import (  # noqa: F401 (flip_share: benchmarks)
    ACTING_FLIP_SHARE,
    acts,
    failure_path_summary,
    flip_share,
    flip_shares,
)
from fairl_lib.analysis.pairset import PairSet, pairset_fingerprint, preference_data, split_by_prompt
from fairl_lib.artifacts import write_json
from fairl_lib.cache import cached_stage
from fairl_lib.config import result_settings, section
from fairl_lib.irl import (
    FA_METHODS,
    METHOD_NAMES,
    GridResult,
    IRLConfig,
    RewardModel,
    method_spec,
    train_grid,
)
from fairl_lib.stages.irl_grid import load_grid, publish_rewards, write_grid

TRIALS_FILE, BEST_FILE = "trials.json", "best.json"
# version of stage irl_tuning: 3 = acting by failure_path.acts (2: by the learned flip share, 1: the plain one)
TUNING_VERSION = "3"


@section("tuning")
@dataclass(frozen=True)
class TuningConfig:
    """The ``[tuning]`` section: the equal-budget search of every Table 1 method (not in the paper).

    Attributes:
        n_trials: trials per method, the same for every method (the budget).
        trial_seeds: training seeds of a trial (``range(trial_seeds)``); its value is their mean AUC.
        best_seeds: seeds each method's best configuration is trained with on the full training split
            (stage ``irl_best``).
        val_fraction: share of the training split's prompts held out as tune-validation pairs.
        split_seed: seed of that split by prompt.
        max_epochs: epoch cap of the trials and of the best grids (0 = ``irl.max_epochs``).
        startup_trials: random trials before TPE models the results (Optuna's ``n_startup_trials``).
        min_flip_share: a failure path acts when it flips at least this share of the tune-train pairs
            against R_D alone, and more than its init did (:func:`fairl_lib.analysis.failure_path.acts`).
        methods: the methods searched (default: all six of Table 1).
        preregistered: the FA method the ledger's FA-vs-IRL claims and notebooks 06-10 use, fixed before any
            run (its same-family baseline is the IRL arm), or ``"auto"``: the best acting FA configuration by
            validation AUC (:func:`best_fa_config`). Fixing it matters where the search's objective is flat:
            the FA methods' best validation AUCs then differ by less than the noise of a two-seed mean, so
            ``"auto"`` picks a family by chance and two runs of the same profile compare different pairs
            (benchmarks/README.md, "Verdict stability"). The method is still tuned; the choice only names
            which tuned FA method the claims compare. Not part of the search's cache key.
        threads: torch threads of every trial and best grid (0 = leave torch's setting). 1 by default:
            a grid of one method has GEMMs too small to share out, one thread was many times faster
            than two on a shared 2-core machine (benchmarks/README.md), and the grid's arithmetic (its
            GEMM groups) depends on the thread count, so one thread gives the same search on any number
            of cores.
    """

    n_trials: int = 50
    trial_seeds: int = 2
    best_seeds: int = 10
    val_fraction: float = 0.2
    split_seed: int = 1
    max_epochs: int = 0
    startup_trials: int = 10
    min_flip_share: float = ACTING_FLIP_SHARE
    methods: tuple[str, ...] = METHOD_NAMES
    preregistered: str = "auto"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"tuning.threads must be >= 0 (0 = torch's setting); got {self.threads}")
        for name in ("n_trials", "trial_seeds", "best_seeds", "startup_trials"):
            if getattr(self, name) < 1:
                raise ValueError(f"tuning.{name} must be >= 1; got {getattr(self, name)}")
        if self.max_epochs < 0:
            raise ValueError(f"tuning.max_epochs must be >= 0 (0 = irl.max_epochs); got {self.max_epochs}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"tuning.val_fraction must be in (0, 1); got {self.val_fraction}")
        if not 0.0 <= self.min_flip_share <= 1.0:
            raise ValueError(f"tuning.min_flip_share must be in [0, 1]; got {self.min_flip_share}")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"tuning.methods must be distinct Table 1 methods; got {list(self.methods)}")
        for m in self.methods:
            method_spec(m)                                 # unknown names list the valid ones
        if self.preregistered != "auto" and (self.preregistered not in FA_METHODS
                                             or self.preregistered not in self.methods):
            raise ValueError(f"tuning.preregistered must be \"auto\" or an FA method of tuning.methods "
                             f"({', '.join(m for m in self.methods if m in FA_METHODS)}); got {self.preregistered!r}")


def tuning_config(cfg) -> TuningConfig:
    """``cfg.tuning`` (the dataclass default when a config has no such section)."""
    return cfg.sections.get("tuning", TuningConfig())


# =========================================================================== search space

# name -> ("log", low, high) | ("float", low, high) | ("cat", choices); see the module docstring
BASE_SPACE: dict[str, tuple] = {"lr": ("log", 3e-4, 3e-3), "head": ("cat", ("linear", "mlp")),
                                "hidden": ("cat", (16, 32, 64, 128))}
FAMILY_SPACE: dict[str, dict[str, tuple]] = {"mm": {"margin": ("float", 0.2, 2.0)},
                                             "me": {"tau": ("float", 0.3, 3.0)}}
FA_SPACE: dict[str, tuple] = {"fail_head": ("cat", ("linear", "mlp")), "lambda0": ("log", 0.1, 30.0),
                              "lambda_decay": ("float", 0.8, 0.995),
                              "penalty_scale": ("cat", (0.0, 0.01, 0.1, 1.0))}
# M_fail = M x margin_fail_x (M_fail >= M, Sec. 4.2); tau_fail = tau x tau_fail_x (tau_fail <= tau)
FA_FAMILY_SPACE: dict[str, dict[str, tuple]] = {"mm": {"margin_fail_x": ("float", 1.0, 4.0)},
                                                "me": {"tau_fail_x": ("float", 0.25, 1.0)}}
MARGIN_FAILURE_SPACE: dict[str, tuple] = {"bottomk_start": ("float", 0.05, 0.4)}


def method_space(method: str) -> dict[str, tuple]:
    """The search space of a Table 1 method: ``{param: ("log" | "float", low, high) | ("cat", choices)}``."""
    spec = method_spec(method)
    space = {**BASE_SPACE, **FAMILY_SPACE[spec.base]}
    if spec.failures is not None:
        space.update(FA_SPACE)
        space.update(FA_FAMILY_SPACE[spec.base])
    if spec.failures == "margin":
        space.update(MARGIN_FAILURE_SPACE)
    return space


def _suggest(trial, name: str, spec: tuple) -> Any:
    kind = spec[0]
    if kind == "log":
        return trial.suggest_float(name, spec[1], spec[2], log=True)
    if kind == "float":
        return trial.suggest_float(name, spec[1], spec[2])
    return trial.suggest_categorical(name, list(spec[1]))


def trial_config(base: IRLConfig, params: Mapping[str, Any], *, max_epochs: int = 0,
                 n_seeds: int | None = None) -> IRLConfig:
    """``base`` with a trial's ``params`` (``margin_fail_x`` / ``tau_fail_x`` become M_fail = M x, tau_fail
    = tau x), the epoch cap ``max_epochs`` (0 = ``base``'s) and ``n_seeds`` (None = ``base``'s)."""
    kw = {k: v for k, v in params.items() if k not in ("margin_fail_x", "tau_fail_x")}
    if "margin_fail_x" in params:
        kw["margin_fail"] = float(params.get("margin", base.margin)) * float(params["margin_fail_x"])
    if "tau_fail_x" in params:
        kw["tau_fail"] = float(params.get("tau", base.tau)) * float(params["tau_fail_x"])
    if max_epochs:
        kw["max_epochs"] = int(max_epochs)
    if n_seeds is not None:
        kw["n_seeds"] = int(n_seeds)
    return dataclasses.replace(base, **kw)


def sampler_seed(seed: int, method: str) -> int:
    """The TPE sampler's seed of ``method``'s study: 32 bits of sha256(seed, method), stable across runs."""
    return int.from_bytes(hashlib.sha256(f"tuning\x00{int(seed)}\x00{method}".encode()).digest()[:4], "big")


# =========================================================================== data and objective

def tuning_split(ps: PairSet, val_fraction: float, seed: int) -> tuple[PairSet, PairSet]:
    """(tune-train, tune-validation): the ``train`` split's pairs, split by prompt (all pairs of a prompt
    on one side; ``round(val_fraction * prompts)`` prompts to validation). The test split is never used."""
    train = ps.split("train")
    if train.df["prompt_id"].nunique() < 2:
        raise ValueError("The tuning split needs at least 2 training prompts; the pairs' train split has "
                         f"{train.df['prompt_id'].nunique()}.")
    side = split_by_prompt(train.df["prompt_id"].to_numpy(), val_fraction, seed)
    return train.subset(side == "train"), train.subset(side == "test")


def validation_auc(reward: RewardModel, val: PairSet) -> float:
    """ROC-AUC of the reward on the outputs of ``val``'s pairs, label 1 = o_post, 0 = o_pre (Table 1's
    in-domain task)."""
    scores, labels = metrics.pair_labels(reward(val.emb_post), reward(val.emb_pre))
    return float(roc_auc_score(labels, scores))


# =========================================================================== the search

@dataclass
class TuningResult:
    """The cached search (stage ``irl_tuning``).

    Attributes:
        folder: the stage folder.
        trials: one row per (method, trial): number, state, value (mean validation AUC), acting,
            flip_share and learned_flip_share (means over the trial's seeds; FA methods, None for the
            baselines), seconds and every param (``param_<name>`` columns).
        best: per method, its winner: ``trial``, ``value``, ``params``, ``acting`` (None for baselines),
            ``flip_share``, ``learned_flip_share``, ``no_acting_trial`` and ``irl`` (the IRLConfig fields
            of the winner, :meth:`best_config`).
        info: n_trials, trial_seeds, split sizes, the Optuna version.
    """

    folder: Path
    trials: pd.DataFrame
    best: dict[str, dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)

    def best_config(self, method: str) -> IRLConfig:
        """The winner's configuration of ``method``: ``cfg.irl`` with the tuned params and the trials' epoch
        cap (``n_seeds`` is ``cfg.irl``'s)."""
        if self.best.get(method) is None:
            raise KeyError(f"No finished trial for {method!r} in {self.folder}; methods with a winner: "
                           f"{sorted(m for m, b in self.best.items() if b)}")
        return IRLConfig(**self.best[method]["irl"])

    def trial_counts(self) -> dict[str, int]:
        """Trials run per method (equal for every method: the budget)."""
        return {m: int(n) for m, n in self.trials.groupby("method").size().items()}


def _search_method(method: str, data_tr, tr: PairSet, va: PairSet, base: IRLConfig, tc: TuningConfig,
                   seed: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """``tc.n_trials`` trials of one method's study; one record per trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fa = method_spec(method).failures is not None
    space, seeds = method_space(method), list(range(tc.trial_seeds))
    records: list[dict[str, Any]] = []

    def objective(trial) -> float:
        params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
        irl = trial_config(base, params, max_epochs=tc.max_epochs, n_seeds=len(seeds))
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"method": method, "number": trial.number, "params": params, "value": None,
                               "acting": None, "flip_share": None, "learned_flip_share": None,
                               "auc_per_seed": [], "epochs_run": [], "error": ""}
        try:
            grid = train_grid(data_tr, irl, methods=[method], seeds=seeds, threads=tc.threads or None)
        except FloatingPointError as err:                  # a diverging trial: recorded, valued NaN (failed)
            rec.update(error=str(err), seconds=round(time.perf_counter() - t0, 2))
            records.append(rec)
            log(f"[tuning] {method} trial {trial.number + 1}/{tc.n_trials}: diverged ({err})")
            return float("nan")
        aucs = [validation_auc(r.reward, va) for r in grid.runs]
        rec.update(value=float(np.mean(aucs)), auc_per_seed=aucs, epochs_run=[r.epochs_run for r in grid.runs])
        if fa:                                             # acting: flips pairs against R_D, more than its init did
            shares = [flip_shares(r.reward, tr) for r in grid.runs]
            share = float(np.mean([s["flip_share"] for s in shares]))
            learned = float(np.mean([s["learned_flip_share"] for s in shares]))
            init = float(np.mean([s["flip_share_init"] for s in shares]))
            rec.update(flip_share=share, learned_flip_share=learned, flip_share_init=init,
                       acting=acts(share, init, tc.min_flip_share))
            trial.set_user_attr("flip_share", share)
            trial.set_user_attr("learned_flip_share", learned)
        trial.set_user_attr("acting", rec["acting"])
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        records.append(rec)
        act = "" if not fa else (" acting" if rec["acting"] else " not acting")
        log(f"[tuning] {method} trial {trial.number + 1}/{tc.n_trials}: AUC {rec['value']:.4f}{act}"
            + (f" (flips {rec['flip_share']:.1%}, learned {rec['learned_flip_share']:.1%})" if fa else ""))
        return rec["value"]

    sampler = optuna.samplers.TPESampler(seed=sampler_seed(seed, method), n_startup_trials=tc.startup_trials)
    study = optuna.create_study(direction="maximize", sampler=sampler, study_name=method)
    study.optimize(objective, n_trials=tc.n_trials)
    for rec, trial in zip(records, study.trials):
        rec["state"] = trial.state.name
    return records


def pick_winner(records: Sequence[Mapping[str, Any]], fa: bool) -> dict[str, Any] | None:
    """The best finished trial by value; for an FA method the best *acting* one (when none acts, the
    best of all, with ``no_acting_trial=True``). None when no trial finished. ``acting`` is the records'
    flag (:func:`tuning_stage`: by the learned flip share)."""
    done = [r for r in records if r.get("value") is not None and math.isfinite(r["value"])]
    if not done:
        return None
    pool = [r for r in done if r.get("acting")] if fa else done
    no_acting = fa and not pool
    best = max(pool or done, key=lambda r: (r["value"], -r["number"]))   # ties: the earlier trial
    return {"trial": best["number"], "value": best["value"], "params": dict(best["params"]),
            "acting": best["acting"], "flip_share": best["flip_share"],
            "learned_flip_share": best.get("learned_flip_share"), "no_acting_trial": bool(no_acting)}


def _search_settings(cfg, ps: PairSet, label_column: str) -> dict[str, Any]:
    import optuna

    tc = tuning_config(cfg)
    # the search's own settings: best_seeds and preregistered act after it
    search = {k: v for k, v in result_settings(tc).items() if k not in ("best_seeds", "preregistered")}
    return {"pairs": pairset_fingerprint(ps, label_column),
            "pairs_stage_key": Path(str(ps.meta.get("stage_dir", ""))).name, "label_column": label_column,
            "embedder": cfg.models.embedder, "seed": cfg.seed, "irl": cfg.irl, "tuning": search,
            "n_trials": tc.n_trials, "trial_seeds": list(range(tc.trial_seeds)),
            "space": {m: method_space(m) for m in tc.methods}, "optuna": optuna.__version__}


def tuning_stage(cfg, ps: PairSet, *, label_column: str = "toxic",
                 log: Callable[[str], None] = print) -> TuningResult:
    """The search of every ``tuning.methods`` (stage ``irl_tuning``, cached; see the module docstring)."""
    tc = tuning_config(cfg)
    settings = _search_settings(cfg, ps, label_column)

    def compute(workdir: Path) -> None:
        tr, va = tuning_split(ps, tc.val_fraction, tc.split_seed)
        data_tr = preference_data(tr, None, label_column)
        log(f"[tuning] {len(tc.methods)} methods x {tc.n_trials} trials x {tc.trial_seeds} seed(s) on "
            f"{len(tr)} tune-train pairs, validated on {len(va)} pairs of other prompts")
        trials, best = {}, {}
        for m in tc.methods:
            part = workdir / f"trials_{m}.json"             # resume: methods already searched are kept
            if part.exists():
                records = json.loads(part.read_text())
            else:
                records = _search_method(m, data_tr, tr, va, cfg.irl, tc, cfg.seed, log)
                write_json(part, records)
            trials[m] = records
            best[m] = pick_winner(records, method_spec(m).failures is not None)
            if best[m] is not None:
                best[m]["irl"] = dataclasses.asdict(trial_config(cfg.irl, best[m]["params"], max_epochs=tc.max_epochs))
            if best[m] is not None and best[m]["no_acting_trial"]:
                log(f"[tuning] {m}: no trial's failure path acts (its learned change flips >= "
                    f"{tc.min_flip_share:.0%} of the tune-train pairs); its best trial is kept, marked acting=False")
        write_json(workdir / TRIALS_FILE, trials)
        write_json(workdir / BEST_FILE, best)
        write_json(workdir / "info.json", {"n_trials": tc.n_trials, "trial_seeds": tc.trial_seeds,
                                           "methods": list(tc.methods), "n_tune_train": len(tr),
                                           "n_tune_val": len(va), "optuna": settings["optuna"]})

    folder = cached_stage(cfg, "irl_tuning", settings, compute, version=TUNING_VERSION, log=log)
    return load_tuning(folder)


def load_tuning(folder: str | Path) -> TuningResult:
    """Read a finished ``irl_tuning`` folder."""
    folder = Path(folder)
    trials = json.loads((folder / TRIALS_FILE).read_text())
    info = json.loads((folder / "info.json").read_text())
    rows = []
    for method in info.get("methods", trials):
        for r in trials[method]:
            rows.append({"method": method, "number": r["number"], "state": r.get("state", ""), "value": r["value"],
                         "acting": r["acting"], "flip_share": r["flip_share"],
                         "learned_flip_share": r.get("learned_flip_share"),
                         "flip_share_init": r.get("flip_share_init"), "seconds": r.get("seconds"),
                         **{f"param_{k}": v for k, v in r["params"].items()}})
    return TuningResult(folder, pd.DataFrame(rows), json.loads((folder / BEST_FILE).read_text()), info)


# =========================================================================== best against best

def _write_best(workdir: Path, grids: Mapping[str, GridResult], extra: Mapping[str, Any]) -> None:
    """Per-method grids in notebook 04's grid folder layout (:func:`fairl_lib.stages.irl_grid.write_grid`),
    with the methods, seeds and each method's configuration in ``info.json``."""
    seeds = sorted({r.seed for g in grids.values() for r in g.runs})
    configs = {m: dataclasses.asdict(g.config) for m, g in grids.items()}
    write_grid(workdir, grids.values(), {"methods": list(grids), "seeds": seeds, "configs": configs, **extra})


def merge_grids(outs: Mapping[str, GridOutput], folder: str | Path | None = None) -> GridOutput:
    """One :class:`GridOutput` from per-method grids ``{method: GridOutput}`` (each contributes the runs
    of its key's method), e.g. to evaluate grids trained with different configurations together with
    :func:`fairl_lib.analysis.evaluate.evaluate_grid`. ``info["configs"]`` keeps each method's config."""
    rewards, histories, runs, configs, seeds = {}, {}, [], {}, set()
    for m, out in outs.items():
        keys = [k for k in out.rewards if k[0] == m]
        if not keys:
            raise KeyError(f"merge_grids: the grid given for {m!r} has no run of it (methods: {out.methods})")
        rewards.update({k: out.rewards[k] for k in keys})
        histories.update({k: out.histories[k] for k in keys if k in out.histories})
        runs.append(out.runs[out.runs["method"] == m])
        configs[m] = (out.info.get("configs") or {}).get(m, out.info.get("config"))
        seeds |= {s for _, s in keys}
    info = {"methods": list(outs), "seeds": sorted(seeds), "configs": configs}
    first = next(iter(outs.values()))
    return GridOutput(Path(folder) if folder is not None else first.folder, rewards, histories,
                      pd.concat(runs, ignore_index=True), info)


def best_stage(cfg, ps: PairSet, tuned: TuningResult | None = None, *, label_column: str = "toxic",
               progress: Callable[[int, int], None] | None = None,
               log: Callable[[str], None] = print, publish: bool = True) -> GridOutput:
    """Each method's best configuration x ``tuning.best_seeds`` seeds on the full training split
    (notebook 04's data), stage ``irl_best``; one :class:`GridOutput` of all methods (methods without a
    finished trial are left out, with a log line). ``publish``: copy the rewards to
    ``results/<profile>/rewards_tuned/`` (False for grids trained on other pairs, e.g. notebook 06's
    Table 1 at the paper's mix, whose rewards are not the ones the README points to)."""
    tc = tuning_config(cfg)
    tuned = tuning_stage(cfg, ps, label_column=label_column, log=log) if tuned is None else tuned
    configs = {}
    for m in tc.methods:
        if tuned.best.get(m) is None:
            log(f"[tuning] {m}: no finished trial, left out of the best-against-best grid")
            continue
        configs[m] = dataclasses.replace(tuned.best_config(m), n_seeds=tc.best_seeds)
    if not configs:
        raise RuntimeError(f"No method has a finished tuning trial ({tuned.folder}); nothing to train.")
    seeds = list(range(tc.best_seeds))
    fp = pairset_fingerprint(ps, label_column)
    settings = {"pairs": fp, "pairs_stage_key": Path(str(ps.meta.get("stage_dir", ""))).name,
                "label_column": label_column, "embedder": cfg.models.embedder, "configs": configs, "seeds": seeds}

    def compute(workdir: Path) -> None:
        data = preference_data(ps, "train", label_column)
        grids = {}
        for m, irl in configs.items():
            log(f"[tuning] best {m}: {len(seeds)} seeds on {data.n} training pairs")
            grids[m] = train_grid(data, irl, methods=[m], seeds=seeds, progress=progress,
                                  threads=tc.threads or None)
        _write_best(workdir, grids, {"embedder": cfg.models.embedder, "label_column": label_column,
                                     "pairs_fingerprint": fp, "profile": cfg.profile,
                                     "tuning_folder": str(tuned.folder)})

    out = load_grid(cached_stage(cfg, "irl_best", settings, compute, log=log))
    if publish:
        publish_rewards(out, cfg.results_dir, "rewards_tuned")
    return out


def best_fa_config(cfg, ps: PairSet, *, label_column: str = "toxic", require_acting: bool = False,
                   paths: Mapping[str, Mapping[str, Any]] | None = None,
                   log: Callable[[str], None] = print) -> tuple[str, IRLConfig]:
    """(method, IRLConfig) of the FA configuration notebooks 05-10 use: ``tuning.preregistered`` when the
    profile fixes one, else the best acting FA configuration by validation AUC over the FA methods
    searched. Its ``n_seeds`` is ``cfg.irl``'s.

    "Acting" is judged where notebooks 05-08 meet the configuration: on the best-against-best grid (its
    ``tuning.best_seeds`` seeds on the full training split, :func:`best_stage`), whose failure path must
    change the ranking of at least ``tuning.min_flip_share`` of the training pairs
    (:func:`fairl_lib.analysis.failure_path.failure_path_summary`). A winner that acted in its search trials
    but not in that grid does not count (it happens: README, results). When no FA method acts there,
    the best one that acted in its trials, then the best FA trial, each with a log line;
    ``require_acting`` raises instead. A fixed ``preregistered`` method is returned whether or not it acts
    (with a log line when it does not; ``require_acting`` raises): the claims then say that its failure
    path does not act rather than switch to another method.
    ``paths``: that grid's ``failure_path_summary`` when the caller has it already (notebook 04).
    """
    tuned = tuning_stage(cfg, ps, label_column=label_column, log=log)
    fa = {m: b for m, b in tuned.best.items() if m in FA_METHODS and b is not None}
    if not fa:
        raise RuntimeError(f"No FA method was searched or finished a trial ({tuned.folder}).")
    fixed = tuning_config(cfg).preregistered
    if fixed != "auto" and fixed not in fa:
        raise RuntimeError(f"tuning.preregistered = {fixed!r} has no finished trial ({tuned.folder}).")
    if paths is None:
        grid = best_stage(cfg, ps, tuned, label_column=label_column, log=log)
        paths = failure_path_summary(grid, ps, min_flip_share=tuning_config(cfg).min_flip_share)
    if fixed != "auto":
        if not paths.get(fixed, {}).get("acts"):
            if require_acting:
                raise RuntimeError(f"The preregistered FA method {fixed}'s failure path does not act in the "
                                   f"best-against-best grid ({tuned.folder}).")
            log(f"[tuning] the preregistered FA method {fixed}'s failure path does not act over the "
                "best-against-best seeds; it is used all the same (tuning.preregistered)")
        return fixed, tuned.best_config(fixed)
    acting = {m: b for m, b in fa.items() if paths.get(m, {}).get("acts")}
    if not acting:
        if require_acting:
            raise RuntimeError(f"No FA method's failure path acts in the best-against-best grid ({tuned.folder}).")
        acting = {m: b for m, b in fa.items() if b["acting"]}
        log("[tuning] no FA method's failure path acts over the best-against-best seeds; "
            + ("the best one that acted in its search trials is used" if acting else
               "the best FA trial is used (it equals its baseline)"))
    pool = acting or fa
    method = max(pool, key=lambda m: (pool[m]["value"], -FA_METHODS.index(m)))
    return method, tuned.best_config(method)
