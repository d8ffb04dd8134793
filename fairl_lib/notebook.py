"""What every notebook does first (build the config, seed, style, say where results go) and last (write its
metrics file, checked against the schema)."""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from fairl_lib import sections  # noqa: F401 (every config section registered before a config is built)
from fairl_lib.analysis import schema
from fairl_lib.artifacts import to_jsonable, write_json
from fairl_lib.config import Config, make_config
from fairl_lib.paths import repo_root
from fairl_lib.plots import set_style
from fairl_lib.seeding import seed_everything

# The cached stages each notebook owns: its FORCE recomputes these and nothing upstream.
# Stage names are those passed to ``fairl_lib.cache.cached_stage`` (tests/test_cache.py checks that
# every stage has exactly one owner). Notebook 07 owns the expert, pairs and grid of the model sizes
# other than the primary base LM ("sizes", see ``fairl_lib.stages.sizes.size_config``).
NOTEBOOK_STAGES: dict[str, tuple[str, ...]] = {
    "01_rlhf_expert": ("screen", "expert", "expert_eval"),
    "02_preference_pairs": ("pairs",),
    "03_theory_toy": (),
    "04_fairl_training": ("irl_grid", "irl_tuning", "irl_best"),
    "05_tables": ("jigsaw_eval", "irl_subtype", "irl_learning_curve", "penalty_sweep"),
    "06_pair_mix": ("pair_mix",),
    "07_model_size": ("sizes",),
    "08_rerlhf": ("rerlhf", "rerlhf_eval"),
    "10_audit": ("audit_explain", "audit_unlearn", "pair_audit"),
    "11_reproduction_report": (),
}


def is_batch_run() -> bool:
    """True under ``run_all.sh``/papermill (``FAIRL_BATCH=1``): interactive widgets are skipped."""
    return os.environ.get("FAIRL_BATCH", "") == "1"


def setup_notebook(name: str, profile: str, seed: int, force: bool = False, overrides: str = "") -> Config:
    """Validate the ``parameters`` cell, seed everything and prepare ``results/<profile>/``.

    ``name`` is the notebook's stem (``03_theory_toy``): it names the metrics file.
    """
    if profile != "paper":  # no hub is meant: fail fast instead of waiting on time-outs
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    run_id = os.environ.get("FAIRL_RUN_ID") or f"{name}-{uuid.uuid4().hex[:12]}"
    cfg = make_config(profile, seed=seed, force=force, overrides=overrides, notebook=name,
                      forced=NOTEBOOK_STAGES.get(name, ()), run_id=run_id)
    seed_everything(seed)
    set_style()
    for sub in ("figures", "tables", "metrics"):
        (cfg.results_dir / sub).mkdir(parents=True, exist_ok=True)
    print(f"fairl | notebook {name} | profile {profile} ({cfg.description}) | seed {seed}"
          f"{' | FORCE' if force else ''}{' | overrides: ' + overrides if overrides else ''}")
    print(f"results -> {shown_results_dir(cfg.results_dir)}", file=sys.stdout)
    return cfg


def shown_results_dir(path: Path) -> str:
    """The results folder as a notebook prints it: relative to the repository when it is inside it
    (``results/cpu``), so that the executed notebooks and the site built from them do not carry the
    machine's absolute paths; elsewhere (``FAIRL_RESULTS`` outside the checkout) the absolute path,
    which the site builder rewrites (:func:`fairl_lib.analysis.site.strip_machine_paths`)."""
    try:
        return Path(path).resolve().relative_to(repo_root()).as_posix()
    except ValueError:
        return str(path)


def write_metrics(cfg: Config, metrics: dict[str, Any], name: str | None = None) -> Path:
    """Write a notebook's headline numbers to ``results/<profile>/metrics/<name>.json``.

    ``name`` defaults to the notebook's name (``cfg.control.notebook``, e.g. ``03_theory_toy``). Metrics
    must not hold timings or dates, so the same profile and seed give an identical file.

    The dict is checked against the notebook's schema (``fairl_lib.analysis.schema``) first, as it will be
    written (after :func:`fairl_lib.artifacts.to_jsonable`): a missing required key raises
    ``MetricsSchemaError`` naming the notebook and the key paths, and nothing is written. A name the schema
    does not list has no check.
    """
    name = name or cfg.control.notebook
    if not name:
        raise ValueError("write_metrics needs a name: pass name= or build cfg with notebook=...")
    payload = to_jsonable({"profile": cfg.profile, "seed": cfg.seed, **metrics})
    schema.validate(name, payload)
    return write_json(cfg.results_dir / "metrics" / f"{name}.json", payload)
