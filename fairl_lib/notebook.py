"""What every notebook does first: build the config, seed, style, and say where results go."""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

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
