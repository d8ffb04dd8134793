"""Where things live: the repository, the results of a profile, caches and the data mirror.

Every location can be moved with an environment variable, so CI and users with other
layouts never edit code:

- ``FAIRL_RESULTS``: root of run outputs (default ``<repo>/results``); a profile writes
  under ``<root>/<profile>/``.
- ``FAIRL_CACHE``: downloaded / converted assets and embeddings (default ``<repo>/.cache/fairl``).
- ``FAIRL_DATA_MIRROR``: a local folder with the real data files (RealToxicityPrompts,
  Jigsaw); see ``../shared/fairl-data/SOURCES.md``. Unset means "use the hub".
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout that holds ``pyproject.toml`` (editable install), else the working directory."""
    env = os.environ.get("FAIRL_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    cwd = Path.cwd().resolve()
    for p in (cwd, *cwd.parents):
        if (p / "pyproject.toml").exists() and (p / "fairl_lib").is_dir():
            return p
    return cwd


def results_root() -> Path:
    return Path(os.environ.get("FAIRL_RESULTS", repo_root() / "results")).resolve()


def results_dir(profile: str) -> Path:
    """``results/<profile>/``: executed notebooks, figures, tables, metrics, stage cache."""
    return results_root() / profile


def cache_dir(*parts: str) -> Path:
    """A folder under the asset cache (created on demand)."""
    root = Path(os.environ.get("FAIRL_CACHE", repo_root() / ".cache" / "fairl")).resolve()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_mirror() -> Path | None:
    """The data mirror folder from ``FAIRL_DATA_MIRROR``, or ``None`` when unset."""
    env = os.environ.get("FAIRL_DATA_MIRROR")
    return Path(env).expanduser().resolve() if env else None
