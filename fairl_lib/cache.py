"""Stage cache: each expensive stage stores its result under a key derived from its settings.

``run_stage(name, settings, compute)`` hands ``compute`` a working folder
``<root>/<name>/<key>.partial``; when ``compute`` returns, a ``_stage.json`` receipt is written
and the folder is renamed to ``<root>/<name>/<key>`` in one ``os.replace``. So:

- a rerun with the same settings reuses the finished folder (no recompute);
- a run killed mid-stage leaves only the ``.partial`` folder, never a finished-looking one; the
  next run hands the same ``.partial`` folder back to ``compute``, which may resume from any
  checkpoints it wrote there (RLHF does);
- ``force=True`` discards both and recomputes, once per run: a result whose receipt carries the
  caller's ``run_id`` was computed by this very run and is reused, so two workers of one run that
  ask for the same forced stage compute it once;
- a lock file per key (``<key>.lock``, ``fcntl.flock``) serialises processes that ask for the same
  stage, so one computes while the other waits and then reuses; no process deletes a folder
  another is writing.

Which stages a notebook's ``FORCE`` reaches is decided by the config (:meth:`Config.forces`): only
the stages that notebook owns (:data:`fairl_lib.notebook.NOTEBOOK_STAGES`). :func:`cached_stage`
reads ``root``, ``force`` and ``run_id`` from the config.

The key is a hash of the stage name, a version string and the JSON of ``settings`` (dataclasses
are expanded to the fields that can change a result, :func:`fairl_lib.config.result_settings`), so
changing any setting a stage depends on gives a new folder, and changing a speed knob
(:func:`fairl_lib.config.speed_knob`) or the run control (``cfg.control``) reuses the finished one.

The log lines (``[cache] expert: computing in stages/expert/<key>.partial``) name the folder relative
to the results folder that holds the stage root (``results/<profile>``, :func:`shown_path`): they
end up in the executed notebooks and so in the published site, which must not carry the absolute
paths of the machine that ran.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import joblib

from fairl_lib.artifacts import to_jsonable, write_json
from fairl_lib.config import result_settings

RECEIPT = "_stage.json"


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(result_settings(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return to_jsonable(obj)


def stage_key(name: str, settings: Any, version: str = "1") -> str:
    """16 hex digits of sha256 over the stage name, version and canonical JSON of ``settings``."""
    blob = json.dumps({"stage": name, "version": version, "settings": _plain(settings)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@contextmanager
def stage_lock(folder: Path, key: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/<key>.lock`` (blocks while another process holds it)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _receipt_run_id(folder: Path) -> str:
    try:
        return str(json.loads((folder / RECEIPT).read_text()).get("run_id", ""))
    except (OSError, ValueError):
        return ""


def shown_path(path: Path, root: Path) -> str:
    """``path`` as the log lines show it: relative to the folder that holds the stage root ``root``
    (for :func:`cached_stage`, ``results/<profile>``), so ``stages/<name>/<key>``."""
    return Path(path).relative_to(Path(root).parent).as_posix()


def run_stage(name: str, settings: Any, compute: Callable[[Path], None], *, root: Path,
              force: bool = False, version: str = "1", run_id: str = "",
              log: Callable[[str], None] = print) -> Path:
    """Run ``compute(workdir)`` once per distinct ``settings`` and return the finished folder.

    ``force`` recomputes unless the finished folder was written by the same non-empty ``run_id``.
    """
    key = stage_key(name, settings, version)
    final = Path(root) / name / key
    partial = final.with_name(key + ".partial")
    with stage_lock(final.parent, key):
        done = (final / RECEIPT).exists()
        if force and not (done and run_id and _receipt_run_id(final) == run_id):
            shutil.rmtree(final, ignore_errors=True)
            shutil.rmtree(partial, ignore_errors=True)
            done = False
        if done:
            log(f"[cache] {name}: reusing {shown_path(final, root)}")
            return final
        resumed = partial.exists() and any(partial.iterdir())
        partial.mkdir(parents=True, exist_ok=True)
        log(f"[cache] {name}: {'resuming' if resumed else 'computing'} in {shown_path(partial, root)}")
        start = time.perf_counter()
        compute(partial)
        write_json(partial / RECEIPT, {"stage": name, "key": key, "version": version,
                                       "settings": _plain(settings), "run_id": run_id,
                                       "compute_seconds": round(time.perf_counter() - start, 2)})
        if final.exists():  # a stale folder without receipt
            shutil.rmtree(final)
        os.replace(partial, final)
        return final


def cached_stage(cfg, name: str, settings: Any, compute: Callable[[Path], None], *, version: str = "1",
                 log: Callable[[str], None] = print) -> Path:
    """:func:`run_stage` under ``results/<profile>/stages``, forced only if ``cfg`` owns ``name``
    (``cfg.control``: which stages ``FORCE`` reaches and the run's id; never part of the key)."""
    return run_stage(name, settings, compute, root=stage_root(cfg), force=cfg.forces(name), version=version,
                     run_id=cfg.control.run_id, log=log)


def cached_value(name: str, settings: Any, fn: Callable[[], Any], *, root: Path, force: bool = False,
                 version: str = "1", log: Callable[[str], None] = print) -> Any:
    """Like :func:`run_stage` for a stage whose result is one Python object (stored with joblib)."""
    def compute(workdir: Path) -> None:
        joblib.dump(fn(), workdir / "value.joblib")

    folder = run_stage(name, settings, compute, root=root, force=force, version=version, log=log)
    return joblib.load(folder / "value.joblib")


def stage_root(cfg) -> Path:
    """Where a config's stages live: ``results/<profile>/stages``."""
    return cfg.results_dir / "stages"
