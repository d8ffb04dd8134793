"""What every notebook does first: build the config, seed, style, and say where results go."""
from __future__ import annotations

import os
import sys

from fairl_lib.config import Config, make_config
from fairl_lib.plots import set_style
from fairl_lib.seeding import seed_everything


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
    cfg = make_config(profile, seed=seed, force=force, overrides=overrides, notebook=name)
    seed_everything(seed)
    set_style()
    for sub in ("figures", "tables", "metrics"):
        (cfg.results_dir / sub).mkdir(parents=True, exist_ok=True)
    print(f"fairl | notebook {name} | profile {profile} ({cfg.description}) | seed {seed}"
          f"{' | FORCE' if force else ''}{' | overrides: ' + overrides if overrides else ''}")
    print(f"results -> {cfg.results_dir}", file=sys.stdout)
    return cfg
