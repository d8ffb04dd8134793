"""Provenance of the committed results (``fairl_lib.analysis.provenance``): which commit made REPORT.md,
figures/ and docs/site/, and whether the inputs that made them changed since.

Staleness itself fails nothing (a cpu run takes an hour; the module docstring says why a notice was chosen
over a failing test). What is tested is that the notice tells the truth: the committed notice is the one
the check writes now, and, in a temporary clone of this repository (never this repository's own
history), that changing one line of ``fairl_lib`` turns the status stale and puts the notice in README and
in a built site.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest

from fairl_lib import cli
from fairl_lib.analysis import provenance as pv
from fairl_lib.analysis.site import build_site
from fairl_lib.paths import repo_root


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def clone(tmp_path, monkeypatch):
    """A temporary clone of this repository's HEAD whose last commit publishes results made by its parent:
    ``docs/site/run.json`` and REPORT.md name the parent commit, README.md has an empty notice block. ``FAIRL_ROOT``
    points at the clone, so ``repo_root()`` (the CLI, the site builder) is the clone's."""
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, check=False).returncode:
        pytest.skip("not a git checkout")
    root = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", "--shared", str(repo_root()), str(root))
    git(root, "config", "user.email", "test@example.org")
    git(root, "config", "user.name", "test")
    made_by = git(root, "rev-parse", "HEAD")
    (root / "docs" / "site").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "site" / "run.json").write_text(json.dumps({"profile": "cpu", "seed": 0, "git_commit": made_by}))
    (root / "README.md").write_text(f"# fairl\n\n## Results\n\n{pv.README_START}\n{pv.README_END}\n\nThe rest.\n")
    (root / "REPORT.md").write_text(f"# Report\n\n- Profile `cpu`, seed 0.\n- Run: commit `{made_by}`, started ...\n")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "publish the results of the commit before")
    monkeypatch.setenv("FAIRL_ROOT", str(root))
    return root, made_by


def test_a_changed_line_of_the_library_makes_the_results_stale(clone, tmp_path, capsys):
    root, made_by = clone
    status = pv.check(root)
    assert status.status == "current" and status.changed == () and status.commit == made_by[:7]
    pv.write_notices(root, status)
    assert "**Current:**" in (root / "README.md").read_text()

    # one line of the library changes, and is committed
    cache = root / "fairl_lib" / "cache.py"
    cache.write_text(cache.read_text().replace('RECEIPT = "_stage.json"', 'RECEIPT = "_stage.json"  # changed'))
    git(root, "commit", "--quiet", "-am", "change one line of the library")
    for against in (None, "HEAD"):
        status = pv.check(root, against)
        assert status.status == "stale" and status.changed == ("fairl_lib/cache.py",), against
    written = pv.write_notices(root, status)
    readme = (root / "README.md").read_text()
    assert root / "README.md" in written and f"**Stale since `{made_by[:7]}`:**" in readme
    assert "`fairl_lib/` (the library)" in readme and "Current" not in readme and readme.endswith("The rest.\n")
    if (root / "docs" / "site" / "index.html").exists():  # the committed site's pages carry it too
        page = (root / "docs" / "site" / "index.html").read_text()
        assert page.count(pv.HTML_START) == 1 and 'class="fairl-provenance stale"' in page

    # the command prints the status and every changed file
    assert cli.main(["provenance"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Stale since `{made_by[:7]}`") and "\n  fairl_lib/cache.py\n" in out

    # a profile changed in the working tree is named; against HEAD it does not count yet
    profile = root / "fairl_lib" / "profiles" / "cpu.toml"
    profile.write_text(profile.read_text() + "\n")
    assert "fairl_lib/profiles/cpu.toml" in pv.describe_inputs(pv.check(root).changed)
    assert pv.check(root, "HEAD").changed == ("fairl_lib/cache.py",)

    # a site built from a run of the old commit says so under its navigation
    run = tmp_path / "results" / "cpu"
    (run / "notebooks").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · The expert")]
    nbformat.write(nb, run / "notebooks" / "01_rlhf_expert.ipynb")
    (run / "run.json").write_text(json.dumps({"profile": "cpu", "seed": 0, "git_commit": made_by, "notebooks": {
        "01_rlhf_expert": {"status": "ok", "git_commit": made_by}}}))
    index = build_site(run)
    page = index.read_text()
    assert 'class="fairl-provenance stale"' in page and f"Stale since <code>{made_by[:7]}</code>" in page
    assert "<code>fairl_lib/</code> (the library)" in page
    assert json.loads((index.parent / "run.json").read_text())["git_commit"] == made_by


def test_records_and_notices():
    """Where the commit is read, how the changed inputs are named, and what an unknown commit says."""
    assert pv.split_commit("ab12cd3-dirty") == ("ab12cd3", True) and pv.split_commit("unknown") == (None, False)
    a, b = "a" * 40, "b" * 40
    rec = pv.record_of_run({"profile": "cpu", "seed": 1, "git_commit": b, "notebooks": {
        "01_x": {"git_commit": a}, "03_y": {"git_commit": b + "-dirty"}, "02_z": {"git_commit": a}}})
    assert rec.commits == {a: ["01_x", "02_z"], b: ["03_y"]} and rec.dirty and rec.seed == 1
    assert pv.record_of_run({"git_commit": a, "notebooks": {"01_x": {}}}).commits == {a: []}
    assert pv.describe_inputs(["fairl_lib/cache.py", "fairl_lib/irl/theory.py", "fairl_lib/profiles/cpu.toml",
                               "notebooks/03_theory_toy.ipynb", "requirements.txt"]) == \
        ["fairl_lib/", "fairl_lib/profiles/cpu.toml", "notebooks/03_theory_toy.ipynb", "requirements.txt"]
    unknown = pv.check_record(pv.RunRecord({"0" * 40: []}, "cpu", 0), repo_root())
    assert unknown.status == "unknown" and "not in this clone's history" in unknown.reason
    assert pv.notice_text(unknown).startswith("Provenance unknown: commit 0000000 is not in")
    two = pv.Provenance(pv.RunRecord({a: ["01_x"], b: ["REPORT.md"]}, "cpu", 0), "stale", ("requirements.txt",))
    assert "from commits `aaaaaaa` (01_x), `bbbbbbb` (REPORT.md)" in pv.notice_text(two)
    # a page built before the notice existed gets it under its navigation line; a second write replaces it
    page = '<body><nav class="fairl-nav">x</nav><main>y</main></body>'
    once = pv.put_site_notice(page, pv.notice_html(two))
    assert once.index("</nav>") < once.index(pv.HTML_START) < once.index("<main>")
    assert pv.put_site_notice(once, pv.notice_html(unknown)).count(pv.HTML_START) == 1


def test_report_md_names_the_commit_when_the_site_does_not(tmp_path):
    (tmp_path / "REPORT.md").write_text("# R\n\n- Profile `cpu`, seed 3; IRL: ...\n"
                                        f"- Run: commit `{'c' * 40}-dirty`, started ...\n")
    rec = pv.recorded_run(tmp_path)
    assert rec.commits == {"c" * 40: ["REPORT.md"]} and rec.dirty and (rec.profile, rec.seed) == ("cpu", 3)
    (tmp_path / "docs" / "site").mkdir(parents=True)
    (tmp_path / "docs" / "site" / "run.json").write_text(json.dumps({"profile": "cpu", "git_commit": "d" * 40}))
    assert list(pv.recorded_run(tmp_path).commits) == ["d" * 40, "c" * 40]  # two runs: both named


def test_the_committed_notice_is_current():
    """README.md and docs/site/ carry the notice the check writes now. When this fails, the code moved on
    since the notice was written: ``python -m fairl_lib provenance --write`` refreshes it (a second; the
    results themselves stay as they are until a cpu run)."""
    status = pv.check()
    if status.status == "unknown":
        pytest.skip(f"provenance cannot be checked here: {status.reason}")
    readme = (repo_root() / "README.md").read_text()
    assert pv.notice_markdown(status) in readme, "run: python -m fairl_lib provenance --write"
    for name in pv.SITE_PAGES:
        page = repo_root() / "docs" / "site" / name
        if page.exists():
            assert pv.notice_html(status) in page.read_text(), f"docs/site/{name}: python -m fairl_lib provenance --write"
