"""The static site (``fairl_lib.analysis.site``), opened in a real headless Chromium.

The run folder is made here, small but real: one notebook written with nbformat and executed with
nbclient (a markdown cell with $E = mc^2$, a code cell that saves a PNG figure to ``figures/`` and
shows it), a second notebook placed earlier in the paper's order, a table, a ``REPORT.md`` with
math, the figure and a link to a notebook, and a ``run.json``.

The browser (``tests/browser.py``: selenium and Debian's chromium + chromium-driver) skips, saying why,
when no browser is installed; CI installs one (``.ci/run``). Besides the demo site, the committed
reference site of the last cpu run (``docs/site/``) is opened the same way; the smoke run's own site
is opened by ``tests/test_pipeline.py``.

Screenshots of the contents page and of the notebook page go to the test's temporary folder, and
also to ``results/site-screenshots/`` when ``FAIRL_SITE_SCREENSHOTS`` is set.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from browser import browse
from nbclient import NotebookClient

from fairl_lib.analysis.site import (
    PAPER_ORDER,
    build_site,
    paper_entries,
    rewrite_report_links,
    site_figure_links,
    site_size,
)
from fairl_lib.paths import repo_root

DEMO = "01_rlhf_expert"  # a stem the paper order knows (Sec. 5) ...
EARLIER = "03_theory_toy"  # ... and one it puts before it (Sec. 4.4)

FIGURE_CODE = """\
import matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
from IPython.display import Image, display
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([0, 1, 2], [0, 1, 4])
ax.set_title("demo")
fig.savefig(FIGURES + "/fig_demo.png")
display(Image(filename=FIGURES + "/fig_demo.png"))
print("figure saved")
"""
# as notebook 11 shows the report: a markdown image by its absolute path in the run folder
REPORT_CODE = """\
from IPython.display import Markdown, display
display(Markdown(f"![fig_demo]({FIGURES}/fig_demo.png)"))
"""


def make_run(root: Path) -> Path:
    """A run folder as ``./run_all.sh`` leaves it, in miniature; returns it."""
    run = root / "smoke"
    for sub in ("notebooks", "figures", "tables"):
        (run / sub).mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["fairl"] = {"figures": ["fig_demo"], "tables": ["table_demo"]}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 · A demo notebook\n\nMass and energy: $E = mc^2$, and\n\n"
                                      "$$\\int_0^1 x \\, dx = \\frac{1}{2}.$$"),
        nbformat.v4.new_code_cell(f"FIGURES = {str(run / 'figures')!r}"),
        nbformat.v4.new_code_cell(FIGURE_CODE),
        nbformat.v4.new_code_cell(REPORT_CODE),
    ]
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(root)}}).execute()
    nbformat.write(nb, run / "notebooks" / f"{DEMO}.ipynb")
    theory = nbformat.v4.new_notebook()
    theory.cells = [nbformat.v4.new_markdown_cell("# 03 · Theory first\n\nNo outputs here.")]
    nbformat.write(theory, run / "notebooks" / f"{EARLIER}.ipynb")
    (run / "tables" / "table_demo.csv").write_text("method,f1\nfa_irl,0.8\nirl,0.7\n")
    (run / "tables" / "table_demo.md").write_text("| method | f1 |\n|---|--:|\n| fa_irl | 0.800 |\n| irl | 0.700 |\n")
    (run / "REPORT.md").write_text(
        "# Reproduction report\n\nPythagoras: $a^2 + b^2 = c^2$.\n\n![the demo figure](figures/fig_demo.png)\n\n"
        f"See [the demo notebook](notebooks/{DEMO}.ipynb) and [its table](tables/table_demo.csv).\n")
    (run / "run.json").write_text(json.dumps({"profile": "smoke", "seed": 0, "status": "ok", "notebooks": {
        DEMO: {"status": "ok", "seconds": 3.2}, EARLIER: {"status": "ok", "seconds": 1.0}}}))
    return run


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("run"))
    index = build_site(run)
    return run, index


def test_paper_order_and_links_without_a_browser(site):
    _run, index = site
    out = index.parent
    order = [stem for _, _, stem in paper_entries([DEMO, EARLIER, "10_extra"])]
    assert order == [EARLIER, DEMO, "10_extra"]  # Sec. 4.4 before Sec. 5; unknown notebooks last
    assert [name for _, items in PAPER_ORDER for name, _ in items][:3] == ["fairl_training", "theory_toy",
                                                                          "rlhf_expert"]
    # matched by name, so a renumbered notebook keeps its place
    assert [stem for _, _, stem in paper_entries(["09_reproduction_report", "12_theory_toy"])] == \
        ["12_theory_toy", "09_reproduction_report"]
    text = index.read_text()
    assert text.index(f"notebooks/{EARLIER}.html") < text.index(f"notebooks/{DEMO}.html")
    assert (out / "notebooks" / f"{DEMO}.html").exists() and (out / "report.html").exists()
    assert (out / "figures" / "fig_demo.png").exists() and not list(out.rglob("*.pdf"))
    assert rewrite_report_links("[x](notebooks/01_a.ipynb) ![f](figures/f.png)") == \
        "[x](notebooks/01_a.html) ![f](figures/f.png)"
    # a figure shown by its absolute path in the run folder points at the site's copy, not the machine that ran
    page = (out / "notebooks" / f"{DEMO}.html").read_text()
    assert 'src="../figures/fig_demo.png"' in page and f'src="{_run / "figures"}' not in page
    assert site_figure_links('<img src="/r/cpu/figures/a.png"> <a href="file:///r/figures/b.png">', {"a", "b"}, "..") == \
        '<img src="../figures/a.png"> <a href="../figures/b.png">'
    assert site_figure_links('<img src="/r/figures/c.png"> <img src="figures/a.png">', {"a"}, ".") == \
        '<img src="/r/figures/c.png"> <img src="figures/a.png">'  # not in the site / already relative: kept
    # no page asks the network for anything: no http(s) script, style sheet or image
    for page in out.rglob("*.html"):
        body = page.read_text()
        assert 'src="http' not in body and "href=\"http" not in body.replace('href="http://www.w3.org', ""), page
    assert site_size(out) < 6_000_000  # MathJax (the bulk) trimmed to what rendering needs


def test_site_in_a_real_browser(site, tmp_path):
    _run, index = site
    out = index.parent.resolve()
    folders = (repo_root() / "results" / "site-screenshots",) if os.environ.get("FAIRL_SITE_SCREENSHOTS") else ()
    state = browse(index, tmp_path, {"index.html": "site-contents.png", f"{DEMO}.html": "site-notebook.png"},
                   folders)
    assert {out / "notebooks" / f"{DEMO}.html", out / "report.html", out / "tables.html"} <= set(state)
    for page in (out / "notebooks" / f"{DEMO}.html", out / "report.html"):
        s = state[page]
        assert s["tex"] >= 1 and len(s["math"]) >= s["tex"] and all(w > 0 for w in s["math"]), (page, s["math"])
        assert "$" not in s["text"], f"{page.name}: math left as raw TeX"
    assert len(state[out / "notebooks" / f"{DEMO}.html"]["imgs"]) >= 1  # the figure, embedded
    assert len(state[out / "report.html"]["imgs"]) == 1 and len(state[index]["imgs"]) == 1
    assert any("/_static/mathjax/" in r for r in state[out / "report.html"]["requests"])  # the local copy
    assert (tmp_path / "site-contents.png").stat().st_size > 10_000


REFERENCE_SITE = repo_root() / "docs" / "site" / "index.html"


@pytest.mark.skipif(not REFERENCE_SITE.exists(), reason="no committed reference site (docs/site/): a cpu run makes it")
def test_reference_site_in_a_real_browser(tmp_path):
    """The committed site of the last cpu run, as a reader opens it from a clone: every notebook of the
    paper's order has its page, every page loads, its images and links resolve and its math renders."""
    out = REFERENCE_SITE.parent.resolve()
    state = browse(REFERENCE_SITE, tmp_path, {"index.html": "reference-contents.png",
                                              "05_tables.html": "reference-05.png"})
    books = sorted(p.stem for p in (repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert {out / "notebooks" / f"{b}.html" for b in books} <= set(state)
    assert len(state[out / "notebooks" / "05_tables.html"]["imgs"]) >= 3  # Table 1's figures, embedded
    s = state[out / "report.html"]
    assert len(s["math"]) >= s["tex"] and "$" not in s["text"].replace("US$", "")
    assert (tmp_path / "reference-05.png").stat().st_size > 10_000


def test_a_run_without_notebooks_is_refused(tmp_path):
    from fairl_lib.analysis.site import SiteError

    (tmp_path / "cpu" / "notebooks").mkdir(parents=True)
    with pytest.raises(SiteError, match="no executed notebooks"):
        build_site(tmp_path / "cpu")
    shutil.rmtree(tmp_path / "cpu")
