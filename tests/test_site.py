"""The static site (``fairl_lib.analysis.site``), opened in a real headless Chromium.

The run folder is made here, small but real: one notebook written with nbformat and executed with
nbclient (a markdown cell with $E = mc^2$, a code cell that saves a PNG figure to ``figures/`` and
shows it, a cell that prints what a run's notebooks print about files: a stage cache's log line, the
run folder, a warning from inside the Python installation, the checkout), a second notebook placed
earlier in the paper's order (the theory toy, so the site makes its slider page), a table, a
``REPORT.md`` with math, the figure, a link to a notebook and the ledger as the report module renders
it (every verdict mark), and a ``run.json``.

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
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from browser import browse
from nbclient import NotebookClient

from fairl_lib.analysis.report import build_ledger, render_markdown, run_context
from fairl_lib.analysis.site import (
    FONTS,
    PAPER_ORDER,
    THEORY_PAGE,
    absolute_paths,
    build_site,
    paper_entries,
    rewrite_report_links,
    site_figure_links,
    site_size,
    strip_machine_paths,
)
from fairl_lib.analysis.theory_page import cone_frames, failure_counts, margin_grid
from fairl_lib.config import make_config
from fairl_lib.irl.theory import TheoryConfig
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
# what the notebooks of a run print about files: a stage's log line, the run folder, a library's
# warning from inside the Python installation, a file of the checkout
PATHS_CODE = """\
import sys, sysconfig
from pathlib import Path
from fairl_lib.cache import run_stage
from fairl_lib.paths import repo_root
run_stage("demo", {"n": 1}, lambda work: None, root=Path(FIGURES).parent / "stages")
print(f"results -> {Path(FIGURES).parent}")
print(f"{sysconfig.get_paths()['purelib']}/transformers/modeling_utils.py:3303: UserWarning: demo", file=sys.stderr)
print(f"notebook: {repo_root() / 'notebooks' / '03_theory_toy.ipynb'}")
"""
EMOJI = re.compile("[\u231a\u231b\u2328\u23cf\u23e9-\u23f3\u23f8-\u23fa\u2600-\u27bf\u2b00-\u2bff"
                   "\ufe0f\u200d\U0001f000-\U0001faff]")


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
        nbformat.v4.new_code_cell(PATHS_CODE),
    ]
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(root)}}).execute()
    nbformat.write(nb, run / "notebooks" / f"{DEMO}.ipynb")
    theory = nbformat.v4.new_notebook()
    theory.cells = [nbformat.v4.new_markdown_cell("# 03 · Theory first\n\nNo outputs here.")]
    nbformat.write(theory, run / "notebooks" / f"{EARLIER}.ipynb")
    (run / "tables" / "table_demo.csv").write_text("method,f1\nfa_irl,0.8\nirl,0.7\n")
    (run / "tables" / "table_demo.md").write_text("| method | f1 |\n|---|--:|\n| fa_irl | 0.800 |\n| irl | 0.700 |\n")
    ledger = render_markdown(build_ledger({}), run_context(make_config("smoke"), run), run)
    (run / "REPORT.md").write_text(
        "# Reproduction report\n\nPythagoras: $a^2 + b^2 = c^2$.\n\n![the demo figure](figures/fig_demo.png)\n\n"
        f"See [the demo notebook](notebooks/{DEMO}.ipynb) and [its table](tables/table_demo.csv).\n\n"
        + ledger.replace("# Reproduction report", "## The ledger as the report renders it", 1))
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
    # verdict marks readable in any browser: no page shows an emoji code point or asks for an emoji font
    assert "not run" in state[out / "report.html"]["text"]  # the ledger's marks, as plain words
    for page, s in state.items():
        assert not EMOJI.findall(s["text"]), (page.name, EMOJI.findall(s["text"])[:5])
        assert s["fonts"] and not any("emoji" in f.lower() for f in s["fonts"]), (page.name, s["fonts"])
    # the provenance notice under the navigation of the contents and report pages (this run names no commit)
    assert "Provenance unknown" in state[index]["text"] and "Provenance unknown" in state[out / "report.html"]["text"]
    assert out / THEORY_PAGE in state  # linked from the contents


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


def test_the_site_names_no_machine_paths(site):
    """A built site carries no absolute path of the machine that built it: the cache's log line names its
    folder under the run, and what the notebooks print about the run folder, the checkout and the Python
    installation is rewritten relative to them."""
    run, index = site
    out = index.parent
    assert absolute_paths(out, (str(run.parent), str(repo_root()))) == []
    page = (out / "notebooks" / f"{DEMO}.html").read_text()
    assert "[cache] demo: computing in stages/demo/" in page
    assert "results -&gt; results/smoke" in page
    assert re.search(r"\bpython3\.\d+/site-packages/transformers/modeling_utils\.py:3303", page)
    assert "notebook: ./notebooks/03_theory_toy.ipynb" in page
    # nothing else is touched: inline images, and paths that only begin like a prefix
    prefixes = [("/x/repo/results/cpu", "results/cpu"), ("/x/repo", ".")]
    text = ('a /x/repo/results/cpu/stages/e b /x/repo/notebooks c /x/repository d /v/lib/python3.11/site-packages/t.py '
            '<img src="data:image/png;base64,/x/repo/AAAA">')
    assert strip_machine_paths(text, prefixes) == (
        'a results/cpu/stages/e b ./notebooks c /x/repository d python3.11/site-packages/t.py '
        '<img src="data:image/png;base64,/x/repo/AAAA">')
    assert "Emoji" not in FONTS
    assert json.loads((out / "run.json").read_text())["profile"] == "smoke"  # for the provenance check


def test_theory_toy_frames_without_a_browser(site):
    """The theory page's frames: one per failure margin and number of failure constraints, each drawn by the
    library (different pictures, captions with its measures), one of them the profile's own Figure 2."""
    _run, index = site
    cfg = make_config("smoke").theory
    toy = cone_frames(cfg, 0)
    margins, counts = margin_grid(cfg), failure_counts(cfg)
    assert toy["margins"] == margins and cfg.margin_fail in margins and counts == [1, 2, 3, 4]
    srcs = [f["src"] for row in toy["frames"] for f in row]
    assert len(srcs) == len(margins) * len(counts) and len(set(srcs)) == len(srcs)
    i, j = toy["start"]
    assert margins[i] == cfg.margin_fail and counts[j] == cfg.n_failures
    assert toy["frames"][i][j]["caption"].startswith(f"M_fail = {cfg.margin_fail:g}, 1 failure constraint of 8")
    assert margin_grid(TheoryConfig(margin=0.2, margin_fail=0.5))[0] > 0.2  # every margin above the standard one
    page = (index.parent / THEORY_PAGE).read_text()
    assert page.count("data:image/png;base64,") == len(srcs) + 1  # the frames, and the one shown first
    assert (index.parent / THEORY_PAGE).stat().st_size < 1_000_000


def test_theory_toy_sliders_in_a_real_browser(site, tmp_path):
    """The theory page opened in Chromium: moving a slider with the keyboard swaps the figure (another
    picture, loaded) and its caption; the other slider too."""
    from browser import MATHJAX_DONE, driver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    _run, index = site
    drv = driver(tmp_path)
    shown = ("const i = document.getElementById('fairl-frame'); return {src: i.src, ok: i.complete && "
             "i.naturalWidth > 0, caption: document.getElementById('fairl-caption').textContent};")
    try:
        drv.get((index.parent / THEORY_PAGE).resolve().as_uri())
        WebDriverWait(drv, 60, poll_frequency=0.2).until(lambda d: d.execute_script(MATHJAX_DONE))
        first = drv.execute_script(shown)
        picture = drv.find_element(By.ID, "fairl-frame").screenshot_as_png
        assert first["ok"] and first["caption"].startswith("M_fail = 0.25, 1 failure constraint")
        drv.find_element(By.ID, "fairl-margin").send_keys(Keys.ARROW_RIGHT)
        WebDriverWait(drv, 10, poll_frequency=0.1).until(lambda d: d.execute_script(shown)["src"] != first["src"])
        WebDriverWait(drv, 10, poll_frequency=0.1).until(lambda d: d.execute_script(shown)["ok"])
        moved = drv.execute_script(shown)
        assert moved["caption"].startswith("M_fail = 0.4, 1 failure constraint")
        assert drv.find_element(By.ID, "fairl-margin-value").text == "0.4"
        assert drv.find_element(By.ID, "fairl-frame").screenshot_as_png != picture  # what the reader sees changed
        drv.find_element(By.ID, "fairl-failures").send_keys(Keys.ARROW_RIGHT)
        WebDriverWait(drv, 10, poll_frequency=0.1).until(lambda d: d.execute_script(shown)["src"] != moved["src"])
        assert drv.execute_script(shown)["caption"].startswith("M_fail = 0.4, 2 failure constraints")
        drv.save_screenshot(str(tmp_path / "theory-toy.png"))
    finally:
        drv.quit()
