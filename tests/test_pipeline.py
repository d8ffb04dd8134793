"""The whole pipeline on the smoke profile, and the runner's contract.

The smoke run happens once per session (module fixture) into a temporary FAIRL_RESULTS; tests then
assert on the metrics files the notebooks write, as a reader would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fairl_lib.pipeline import declared_parameters, discover, promised_outputs

ROOT = Path(__file__).resolve().parents[1]
BOOKS = discover()


def run_pipeline(results: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FAIRL_RESULTS": str(results)}
    return subprocess.run([sys.executable, "-m", "fairl_lib.pipeline", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem)
def test_notebook_contract(book):
    """Every notebook: a parameters cell with the standard scalars, no committed outputs, promises declared."""
    assert {"PROFILE", "SEED", "FORCE", "OVERRIDES"} <= declared_parameters(book)
    nb = nbformat.read(book, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs (nbstripout)"
    assert promised_outputs(book)["metrics"] == [book.stem]
    assert any(f"setup_notebook(\"{book.stem}\"" in c.source for c in nb.cells)


def test_unknown_profile_and_notebook_are_refused(tmp_path):
    out = run_pipeline(tmp_path, "cpuu")
    assert out.returncode == 2 and "Unknown profile 'cpuu'" in out.stderr and "smoke" in out.stderr
    out = run_pipeline(tmp_path, "smoke", "--only", "99")
    assert out.returncode == 2 and "no such notebook" in out.stderr


def figures_state() -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in (ROOT / "figures").glob("*")}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    before = figures_state()
    proc = run_pipeline(results, "smoke")
    assert figures_state() == before, "the smoke profile must never touch the top-level figures/"
    print(proc.stdout[-4000:], proc.stderr[-4000:])
    assert proc.returncode == 0, f"smoke pipeline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return results / "smoke", proc


def metrics(smoke_run, name: str) -> dict:
    return json.loads((smoke_run[0] / "metrics" / f"{name}.json").read_text())


@pytest.mark.pipeline
def test_smoke_pipeline_writes_everything(smoke_run):
    res, proc = smoke_run
    run = json.loads((res / "run.json").read_text())
    assert run["status"] == "ok" and run["profile"] == "smoke"
    assert set(run["notebooks"]) == {b.stem for b in BOOKS}
    assert all(v["seconds"] > 0 for v in run["notebooks"].values())
    for book in BOOKS:
        assert (res / "notebooks" / book.name).exists()
        assert (res / "metrics" / f"{book.stem}.json").exists()
    assert "All" in proc.stdout


@pytest.mark.pipeline
def test_smoke_theory_toy_metrics(smoke_run):
    m = metrics(smoke_run, "03_theory_toy")
    assert m["never_larger_fraction"] == 1.0  # Corollary 1: ambiguity never grows
    assert 0 < m["strictly_smaller_fraction"] <= 1.0
    assert m["mean_arc_width_fa"] <= m["mean_arc_width_base"]


@pytest.mark.pipeline
def test_same_seed_same_metrics(smoke_run, tmp_path):
    """Same profile and seed give identical metrics files (recomputed from scratch: FORCE)."""
    proc = run_pipeline(tmp_path, "smoke", "--only", "03", "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = (smoke_run[0] / "metrics" / "03_theory_toy.json").read_bytes()
    assert (tmp_path / "smoke" / "metrics" / "03_theory_toy.json").read_bytes() == first
