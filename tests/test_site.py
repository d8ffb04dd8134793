"""The static site (``fairl_lib.analysis.site``), opened in a real headless Chromium.

The run folder is made here, small but real: one notebook written with nbformat and executed with
nbclient (a markdown cell with $E = mc^2$, a code cell that saves a PNG figure to ``figures/`` and
shows it), a second notebook placed earlier in the paper's order, a table, a ``REPORT.md`` with
math, the figure and a link to a notebook, and a ``run.json``.

The browser is driven with selenium through the system's chromedriver (``/usr/bin/chromedriver``,
Debian's ``chromium-driver``, built from the same source as ``chromium``, so the two always match):
W3C WebDriver gives what a plain ``chromium --headless --dump-dom`` cannot, namely running
JavaScript in the loaded page (image ``naturalWidth``, MathJax's rendered elements, the
resources the page actually loaded) and waiting for MathJax to finish, with screenshots from the
same session. It skips, saying why, when no browser is installed; CI installs one (``.ci/run``).

Screenshots of the contents page and of the notebook page go to the test's temporary folder, and
also to ``results/site-screenshots/`` when ``FAIRL_SITE_SCREENSHOTS`` is set.
"""
from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from fairl_lib.analysis.site import PAPER_ORDER, build_site, paper_entries, rewrite_report_links, site_size
from fairl_lib.paths import repo_root

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1600")

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
    # no page asks the network for anything: no http(s) script, style sheet or image
    for page in out.rglob("*.html"):
        body = page.read_text()
        assert 'src="http' not in body and "href=\"http" not in body.replace('href="http://www.w3.org', ""), page
    assert site_size(out) < 6_000_000  # MathJax (the bulk) trimmed to what rendering needs


def _driver(tmp_path: Path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"no browser: {CHROMIUM} and {CHROMEDRIVER} are needed "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements.txt)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + (f"--user-data-dir={tmp_path / 'chromium-profile'}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


MATHJAX_DONE = """
return document.readyState === 'complete' && !!window.MathJax && !!MathJax.Hub && MathJax.isReady === true
    && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running;
"""
PAGE_STATE = """
const imgs = Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 80), i.complete, i.naturalWidth]);
const links = Array.from(document.links).map(a => a.href);
const math = Array.from(document.querySelectorAll('.MathJax, .MathJax_Display'))
    .map(e => e.getBoundingClientRect().width);
const tex = document.querySelectorAll('script[type^="math/tex"]').length;
const errors = document.querySelectorAll('.MathJax_Error, merror, .merror').length;
return {imgs, links, math, tex, errors, text: document.body.innerText};
"""


def requests(driver) -> list[str]:
    """URLs the browser requested since the last call (Chrome's performance log)."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            out.append(message["params"]["request"]["url"])
    return out


def _local(url: str) -> tuple[Path, str]:
    parts = urllib.parse.urlsplit(url)
    return Path(urllib.parse.unquote(parts.path)), parts.fragment


def test_site_in_a_real_browser(site, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    _run, index = site
    out = index.parent.resolve()
    shots = [tmp_path]
    if os.environ.get("FAIRL_SITE_SCREENSHOTS"):
        shots.append(repo_root() / "results" / "site-screenshots")
    driver = _driver(tmp_path)
    try:
        def visit(page: Path) -> dict:
            driver.get(page.as_uri())
            WebDriverWait(driver, 60, poll_frequency=0.2).until(lambda d: d.execute_script(MATHJAX_DONE))
            state = driver.execute_script(PAGE_STATE)
            state["requests"] = requests(driver)
            return state

        state = {index: visit(index)}
        for folder in shots:
            folder.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(folder / "site-contents.png"))
        pages, anchors = [], []
        for url in state[index]["links"]:
            assert url.startswith("file://"), f"the contents page links outside the site: {url}"
            path, fragment = _local(url)
            assert path.exists() and out in path.parents, f"broken link on the contents page: {url}"
            if path.suffix == ".html" and path not in pages:
                pages.append(path)
            if fragment:
                anchors.append((path, fragment))
        assert out / "notebooks" / f"{DEMO}.html" in pages and out / "report.html" in pages
        assert out / "tables.html" in pages
        for page in pages:
            state[page] = visit(page)
            if page.name == f"{DEMO}.html":
                for folder in shots:
                    driver.save_screenshot(str(folder / "site-notebook.png"))
            for fragment in [f for p, f in anchors if p == page]:
                assert driver.execute_script("return !!document.getElementById(arguments[0])", fragment), \
                    f"{page.name} has no #{fragment}"
        for page, s in state.items():
            name = page.relative_to(out)
            # every image loads; every link inside the site resolves to a file the site has
            assert all(complete and width > 0 for _, complete, width in s["imgs"]), (name, s["imgs"])
            for url in s["links"]:
                if url.startswith("file://"):
                    path, _ = _local(url)
                    assert path.exists() and out in path.parents, f"{name}: broken link {url}"
            # nothing was fetched from the network: every request is for a file (or inline data)
            assert s["requests"] and all(r.split(":", 1)[0] in ("file", "data", "about") for r in s["requests"]), \
                (name, [r for r in s["requests"] if not r.startswith(("file:", "data:", "about:"))])
            assert s["errors"] == 0, f"{name}: MathJax error"
        for page in (out / "notebooks" / f"{DEMO}.html", out / "report.html"):
            s = state[page]
            assert s["tex"] >= 1 and len(s["math"]) >= s["tex"] and all(w > 0 for w in s["math"]), (page, s["math"])
            assert "$" not in s["text"], f"{page.name}: math left as raw TeX"
        assert len(state[out / "notebooks" / f"{DEMO}.html"]["imgs"]) >= 1  # the figure, embedded
        assert len(state[out / "report.html"]["imgs"]) == 1 and len(state[index]["imgs"]) == 1
        assert any("/_static/mathjax/" in r for r in state[out / "report.html"]["requests"])  # the local copy
    finally:
        driver.quit()
    assert (tmp_path / "site-contents.png").stat().st_size > 10_000


def test_a_run_without_notebooks_is_refused(tmp_path):
    from fairl_lib.analysis.site import SiteError

    (tmp_path / "cpu" / "notebooks").mkdir(parents=True)
    with pytest.raises(SiteError, match="no executed notebooks"):
        build_site(tmp_path / "cpu")
    shutil.rmtree(tmp_path / "cpu")
