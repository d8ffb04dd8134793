"""A real headless Chromium for the site tests (``test_site.py``, ``test_pipeline.py``): open a built site's
contents page, visit every page it links, and check what a reader sees.

The browser is driven with selenium through the system's chromedriver (``/usr/bin/chromedriver``,
Debian's ``chromium-driver``, built from the same source as ``chromium``, so the two always match):
W3C WebDriver gives what a plain ``chromium --headless --dump-dom`` cannot, namely running
JavaScript in the loaded page (image ``naturalWidth``, MathJax's rendered elements, the
resources the page actually loaded) and waiting for MathJax to finish, with screenshots from the
same session. :func:`driver` skips the test, saying why, when no browser is installed; CI installs one
(``.ci/run``).
"""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1600")

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
// the fonts the page asks for where text is: the page, its prose and tables, its navigation
const fonts = Array.from(document.querySelectorAll('body, .jp-RenderedHTMLCommon, td, nav, p'))
    .slice(0, 50).map(e => getComputedStyle(e).fontFamily);
return {imgs, links, math, tex, errors, fonts: Array.from(new Set(fonts)), text: document.body.innerText};
"""


def driver(tmp_path: Path):
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


def requests(drv) -> list[str]:
    """URLs the browser requested since the last call (Chrome's performance log)."""
    out = []
    for entry in drv.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            out.append(message["params"]["request"]["url"])
    return out


def local(url: str) -> tuple[Path, str]:
    parts = urllib.parse.urlsplit(url)
    return Path(urllib.parse.unquote(parts.path)), parts.fragment


def browse(index: Path, tmp_path: Path, screenshots: dict[str, str] | None = None,
           folders: tuple[Path, ...] = ()) -> dict[Path, dict]:
    """Open ``index`` in Chromium, visit every page it links, and assert what every page must hold:
    each link inside the site resolves (anchors included), each image loads, nothing is fetched from
    the network, MathJax reports no error. Returns each page's state (images, links, rendered math,
    TeX scripts, the computed font lists of its text, text, requests). ``screenshots`` maps a page's file name (``index.html`` for the
    contents page) to a PNG name, saved to ``tmp_path`` and to every folder of ``folders``."""
    from selenium.webdriver.support.ui import WebDriverWait

    out = index.parent.resolve()
    screenshots = screenshots or {}
    drv = driver(tmp_path)

    def shoot(page: Path) -> None:
        if page.name in screenshots:
            for folder in (tmp_path, *folders):
                folder.mkdir(parents=True, exist_ok=True)
                drv.save_screenshot(str(folder / screenshots[page.name]))

    try:
        def visit(page: Path) -> dict:
            drv.get(page.as_uri())
            WebDriverWait(drv, 60, poll_frequency=0.2).until(lambda d: d.execute_script(MATHJAX_DONE))
            state = drv.execute_script(PAGE_STATE)
            state["requests"] = requests(drv)
            shoot(page)
            return state

        state = {index: visit(index)}
        pages, anchors = [], []
        for url in state[index]["links"]:
            assert url.startswith("file://"), f"the contents page links outside the site: {url}"
            path, fragment = local(url)
            assert path.exists() and out in path.parents, f"broken link on the contents page: {url}"
            if path.suffix == ".html" and path not in pages:
                pages.append(path)
            if fragment:
                anchors.append((path, fragment))
        for page in pages:
            state[page] = visit(page)
            for fragment in [f for p, f in anchors if p == page]:
                assert drv.execute_script("return !!document.getElementById(arguments[0])", fragment), \
                    f"{page.name} has no #{fragment}"
    finally:
        drv.quit()
    for page, s in state.items():
        name = page.relative_to(out)
        # every image loads; every link inside the site resolves to a file the site has
        assert all(complete and width > 0 for _, complete, width in s["imgs"]), (name, s["imgs"])
        for url in s["links"]:
            if url.startswith("file://"):
                path, _ = local(url)
                assert path.exists() and out in path.parents, f"{name}: broken link {url}"
        # nothing was fetched from the network: every request is for a file (or inline data)
        assert s["requests"] and all(r.split(":", 1)[0] in ("file", "data", "about") for r in s["requests"]), \
            (name, [r for r in s["requests"] if not r.startswith(("file:", "data:", "about:"))])
        assert s["errors"] == 0, f"{name}: MathJax error"
    return state
