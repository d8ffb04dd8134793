"""The companion as a static site: one run's executed notebooks, report, figures and tables as HTML.

    python -m fairl_lib.pipeline --site PROFILE     # -> results/<profile>/site/index.html

(a finished ``./run_all.sh`` run builds it too). The site opens from disk, with no server and no
network: every page, script, style sheet, font and image it uses is inside ``site/``.

- ``index.html``: the contents, in the paper's order (:data:`PAPER_ORDER`: the method of Sec. 4,
  the setup of Sec. 5, the results of Sec. 6, the appendices, then what goes beyond the paper and
  the reproduction report), not in the order the notebooks run. Each entry links the notebook's page, shows its figures and links its
  tables; the notebooks' status and runtime come from ``run.json``.
- ``notebooks/NN_name.html``: each executed notebook (``results/<profile>/notebooks/``), outputs as
  they were produced, with links to the contents and to the previous and next notebook.
- ``report.html``: ``REPORT.md`` (the reproduction report notebook's claims ledger); ``tables.html``: every table of the
  run (its ``.md`` rendering, else the CSV), each with a link to its CSV under ``tables/``.
- ``theory_toy.html``: notebook 03's feasible set with two sliders that work without Python
  (:mod:`fairl_lib.analysis.theory_page`: frames drawn by the library when the site is built), when
  the run has the theory toy notebook; linked from the contents, the navigation and that notebook.
- ``figures/*.png``: the PNGs the contents and the report show (once; no PDFs). The notebook pages
  carry their own figures, embedded as the executed notebooks hold them.
- ``_static/``: JupyterLab's notebook style sheet (once, linked by every page instead of inlined in
  each) and MathJax.
- ``run.json``: the run's record (commit, seed, each notebook's commit and runtime), from which
  :mod:`fairl_lib.analysis.provenance` tells whether the code has moved on since the site was made;
  the contents and report pages carry its notice (current, stale since a commit, or unknown).

Nothing in the site names the machine that ran: log lines and warnings in the notebooks' outputs
name files by their absolute paths (the results folder, the checkout, the Python installation), and
:func:`strip_machine_paths` rewrites them relative to the run (``results/cpu/...``, ``./...``,
``python3.11/site-packages/...``); :func:`absolute_paths` finds any that remain, and the build warns.

Readable in any browser: the verdicts and marks are plain text, and the style sheet's font lists
leave out JupyterLab's emoji fonts (:data:`FONTS`), so no page depends on an emoji font.

Why nbconvert's ``HTMLExporter``: it is installed with jupyter already (no new dependency) and it
renders exactly the executed notebooks, every output as the run produced it; the report, the tables
and the contents go through the same exporter as markdown cells, so every page looks alike. A small
template (:data:`TEMPLATE`) drops the exporter's network references (require.js, mermaid and widget
scripts from CDNs; the notebooks need none) and points MathJax at the local copy.

Why MathJax from the PyPI package ``jupyter-server-mathjax``: it bundles MathJax 2's static files
(the version nbconvert's pages are written for), so math renders offline. Only what rendering needs
is copied: the other locales, the SVG output and the accessibility explorer are left out
(:data:`MATHJAX_SKIP`; about 3.5 MB remain). MathJax's HTML-CSS output uses the STIX-Web fonts, the
only web fonts the package ships.
"""
from __future__ import annotations

import html
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pandas as pd
from jinja2 import DictLoader
from nbconvert import HTMLExporter

from fairl_lib.analysis.provenance import check_run, notice_html
from fairl_lib.analysis.theory_page import cone_frames, page_cells
from fairl_lib.artifacts import atomic_write_text, read_json, write_json
from fairl_lib.config import ConfigError, make_config
from fairl_lib.irl.theory import TheoryConfig
from fairl_lib.paths import repo_root, results_root

# (group, ((notebook name, where it is in the paper), ...)), in the paper's order. A notebook is
# matched by its name without the number ("theory_toy" for 03_theory_toy), so renumbering keeps it
# in place; a notebook not listed comes last, under OTHER_GROUP.
PAPER_ORDER: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("The method (Sec. 4)", (
        ("fairl_training", "Sec. 4.1-4.3: the reward model, Eq. 1-3, Algorithm 1"),
        ("theory_toy", "Sec. 4.4: Theorem 1, Figure 2; App. B"),
    )),
    ("The experimental setup (Sec. 5)", (
        ("rlhf_expert", "Sec. 5: the RLHF expert"),
        ("preference_pairs", "Sec. 5: the preference pairs; Figure 3 (middle)"),
    )),
    ("Results (Sec. 6)", (
        ("tables", "Sec. 6: Tables 1-3, Figure 3 (left)"),
        ("rerlhf", "Sec. 6: re-RLHF with the recovered rewards, Figure 3 (right)"),
    )),
    ("Appendices", (
        ("pair_mix", "App. D: pair-mix sensitivity, Figure 4"),
        ("model_size", "App. E: model size, Figure 5"),
    )),
    ("Beyond the paper", (
        ("audit", "after Liu et al.'s explainable RLHF: the expert's training data behind its failures"),
    )),
    ("The reproduction report", (
        ("reproduction_report", "every claim beside this run's numbers"),
    )),
)
OTHER_GROUP = "Other notebooks"

THEORY_NOTEBOOK = "theory_toy"  # the notebook whose figure the theory page animates
THEORY_PAGE = "theory_toy.html"
# JupyterLab's font lists without their emoji fonts (Apple Color Emoji, Segoe UI Emoji): the site's
# text is plain, and a page that named an emoji font could show a mark only where that font exists
FONTS = "system-ui, -apple-system, blinkmacsystemfont, 'Segoe UI', helvetica, arial, sans-serif"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
MATHJAX_SKIP = ("localization", "jax/output/SVG", "extensions/a11y")
LAB_CSS = ("index.css", "theme-light.css")
THUMB_HEIGHT = 110

# Extends nbconvert's "lab" page. resources.fairl_static: the relative path to _static/;
# resources.fairl_nav: the navigation line (HTML); resources.fairl_notice: the provenance notice (HTML)
# under it, or nothing; resources.fairl_fonts: the font list (FONTS). A raw cell whose metadata has
# fairl_html (the site's own widgets, never a notebook's) is written as it is; nbconvert would pass it
# through its HTML cleaner, which escapes inputs and scripts.
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block notebook_css -%}
<link rel="stylesheet" href="{{ resources.fairl_static }}/lab/index.css">
<link rel="stylesheet" href="{{ resources.fairl_static }}/lab/theme-light.css">
<style type="text/css">
:root { --jp-ui-font-family: {{ resources.fairl_fonts }}; --jp-content-font-family: {{ resources.fairl_fonts }}; }
a.anchor-link { display: none; }
.jp-InputArea, .jp-InputArea-editor { overflow: hidden; }
.cm-editor.cm-s-jupyter .highlight pre { padding: var(--jp-code-padding) 4px; margin: 0;
  font-family: inherit; font-size: inherit; line-height: inherit; color: inherit; }
.jp-OutputArea-output pre { line-height: inherit; font-family: inherit; }
.jp-RenderedText pre { color: var(--jp-content-font-color1); font-size: var(--jp-code-font-size); }
.jp-Collapser { display: none; }
nav.fairl-nav { font-family: var(--jp-ui-font-family); font-size: 14px; padding: 8px 16px;
  border-bottom: 1px solid var(--jp-border-color2); background: var(--jp-layout-color1); }
nav.fairl-nav.bottom { border-top: 1px solid var(--jp-border-color2); border-bottom: none; }
.jp-RenderedHTMLCommon .fairl-thumbs img { height: {{ resources.fairl_thumb }}px; width: auto; max-width: none;
  margin: 4px 8px 4px 0; border: 1px solid var(--jp-border-color2); }
</style>
{%- endblock notebook_css -%}
{%- block html_head_js_mathjax -%}
{{ super() }}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
                                 imageFont: null}});
</script>
{%- endblock html_head_js_mathjax -%}
{%- block rawcell scoped -%}
{%- if cell.metadata.get("fairl_html") -%}{{ cell.source }}{%- else -%}{{ super() }}{%- endif -%}
{%- endblock rawcell -%}
{%- block body_header -%}
{{ super() }}
<nav class="fairl-nav">{{ resources.fairl_nav }}</nav>
{{ resources.fairl_notice }}
{%- endblock body_header -%}
{%- block body_footer -%}
<nav class="fairl-nav bottom">{{ resources.fairl_nav }}</nav>
{{ super() }}
{%- endblock body_footer -%}
"""


class SiteError(RuntimeError):
    """The run folder has nothing to render."""


def mathjax_source() -> Path:
    """MathJax's static files in the installed ``jupyter-server-mathjax`` (located, not imported:
    importing it would load jupyter_server)."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise SiteError("jupyter-server-mathjax is not installed (pip install -r requirements.txt): "
                        "the site ships MathJax from it so math renders offline.")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def copy_mathjax(dest: Path) -> Path:
    """Copy the MathJax files that rendering needs to ``dest``; returns ``dest / "MathJax.js"``."""
    src = mathjax_source()

    def skip(folder: str, names: list[str]) -> list[str]:
        rel = Path(folder).relative_to(src)
        return [n for n in names if (rel / n).as_posix() in MATHJAX_SKIP]

    shutil.copytree(src, dest, ignore=skip)
    return dest / "MathJax.js"


def lab_css_dir(exporter: HTMLExporter) -> Path:
    """The folder of JupyterLab's notebook style sheets inside nbconvert's "lab" template."""
    for folder in exporter.template_paths:
        if (Path(folder) / "static" / LAB_CSS[0]).exists():
            return Path(folder) / "static"
    raise SiteError(f"nbconvert's lab template has no static/{LAB_CSS[0]} (searched {exporter.template_paths}).")


def make_exporter() -> HTMLExporter:
    return HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"fairl_site.html.j2": TEMPLATE})],
                        template_file="fairl_site.html.j2")


def notebook_title(nb) -> str:
    """The first markdown heading of a notebook (without the ``#``), else ''."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def paper_entries(stems: list[str]) -> list[tuple[str, str, str]]:
    """``(group, where in the paper, stem)`` for each notebook stem (``NN_name``), in the paper's
    order (:data:`PAPER_ORDER`, matched by ``name``); stems it does not know come last, in their
    own order, under :data:`OTHER_GROUP`."""
    by_name = {stem.split("_", 1)[-1]: stem for stem in stems}
    known = [(group, where, by_name[name]) for group, items in PAPER_ORDER for name, where in items
             if name in by_name]
    seen = {stem for _, _, stem in known}
    return known + [(OTHER_GROUP, "", stem) for stem in stems if stem not in seen]


def _markdown_page(cells: list[str], title: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(c) for c in cells]
    nb.metadata["title"] = title
    return nb


LINK = re.compile(r"(\]\(|\b(?:src|href)=\")([^)\"\s]+)")


def rewrite_report_links(text: str) -> str:
    """``REPORT.md``'s run-relative links, for the site: notebooks -> their pages, table markdown ->
    ``tables.html``; figures and CSV files keep their paths (the site has them at the same place)."""

    def fix(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"^notebooks/[^/]+\.ipynb$", target):
            target = target[: -len(".ipynb")] + ".html"
        elif re.match(r"^tables/[^/]+\.md$", target):
            target = "tables.html#" + Path(target).stem
        return m.group(1) + target

    return LINK.sub(fix, text)


FIGURE_FILE = re.compile(r'\b(src|href)="(?:file://)?/[^"]*/figures/([^/"]+)\.png"')


def site_figure_links(body: str, names: set[str] | dict, prefix: str) -> str:
    """A page's links to a figure by its absolute path in the run folder (notebook 11 shows the report
    with such links, so that Jupyter finds the images) -> the site's copy ``{prefix}/figures/NAME.png``,
    for every NAME the site holds. Absolute paths name the machine that ran; the site must work
    wherever it is opened, so nothing in it may point outside it."""

    def fix(m: re.Match) -> str:
        return f'{m.group(1)}="{prefix}/figures/{m.group(2)}.png"' if m.group(2) in names else m.group(0)

    return FIGURE_FILE.sub(fix, body)


DATA_URI = r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]*"
PYTHON_LIB = r"(?:/[\w.+-]+)*/lib/(?P<python>python3\.\d+)/"  # .../lib/python3.11/ (site-packages, the standard library)
ABSOLUTE = re.compile(r"(?<![\w.~:/<>-])/(?:tmp|home|root|Users|usr|opt|var|mnt|srv|private|work)/[^\s\"'<>]*")


def machine_prefixes(run_dir: str | Path) -> list[tuple[str, str]]:
    """``(absolute folder, what the site shows instead)``, longest first: the run folder
    (``results/<name>``), the results root (``results``), the checkout (``.``) and the home folder (``~``)."""
    pairs = {str(Path(run_dir).resolve()): f"results/{Path(run_dir).resolve().name}",
             str(results_root()): "results", str(repo_root()): ".", str(Path.home()): "~"}
    return sorted(((k, v) for k, v in pairs.items() if len(Path(k).parts) > 1), key=lambda kv: -len(kv[0]))


def strip_machine_paths(text: str, prefixes: list[tuple[str, str]]) -> str:
    """``text`` (a page) with every absolute path under ``prefixes`` (:func:`machine_prefixes`) made
    relative, and every Python installation's ``.../lib/python3.X/`` cut to ``python3.X/``; inline
    data (``data:...;base64,...``, the embedded figures) is left as it is."""
    groups = [f"(?P<data>{DATA_URI})", f"(?P<pylib>{PYTHON_LIB})"]
    groups += [f"(?P<p{i}>{re.escape(prefix)}(?![\\w.+-]))" for i, (prefix, _) in enumerate(prefixes)]
    pattern = re.compile("|".join(groups))

    def fix(m: re.Match) -> str:
        if m.group("data"):
            return m.group(0)
        if m.group("pylib"):
            return m.group("python") + "/"
        return next(new for i, (_, new) in enumerate(prefixes) if m.group(f"p{i}"))

    return pattern.sub(fix, text)


def absolute_paths(folder: str | Path, also: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``(page, path)`` for every absolute path left in the site's pages (inline data aside): one
    under a usual system folder (``/tmp/``, ``/home/``, ``/usr/``, ...) or starting with one of
    ``also`` (e.g. the checkout)."""
    found = []
    for page in sorted(Path(folder).rglob("*.html")):
        text = re.sub(DATA_URI, "", page.read_text())
        hits = [m.group(0) for m in ABSOLUTE.finditer(text)]
        hits += [prefix for prefix in also if prefix and prefix in text]
        found += [(page.relative_to(folder).as_posix(), hit) for hit in hits]
    return found


def local_targets(text: str) -> set[str]:
    """Relative link and image targets of a markdown/HTML text (no scheme, no anchor-only)."""
    out = set()
    for m in LINK.finditer(text):
        target = m.group(2).split("#", 1)[0]
        if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            out.add(target)
    return out


def _fmt_seconds(seconds) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def build_site(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render the run folder ``run_dir`` (``results/<profile>``) into ``out`` (default
    ``run_dir / "site"``, replaced whole); returns ``out / "index.html"``.

    Needs ``run_dir/notebooks/*.ipynb`` (the executed notebooks); ``REPORT.md``, ``figures/``,
    ``tables/`` and ``run.json`` are used when present. Prints a warning for each file the report
    links that the run does not have, and for each absolute path left in a page.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "site"
    books = sorted((run_dir / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not books:
        raise SiteError(f"no executed notebooks in {run_dir / 'notebooks'}: run ./run_all.sh "
                        f"{run_dir.name} first.")
    run = read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
    notebooks = {p.stem: nbformat.read(p, as_version=4) for p in books}
    entries = paper_entries(list(notebooks))
    titles = {stem: notebook_title(nb) or stem for stem, nb in notebooks.items()}
    promised = {stem: nb.metadata.get("fairl", {}) for stem, nb in notebooks.items()}
    theory_stem = next((stem for _, _, stem in entries if stem.split("_", 1)[-1] == THEORY_NOTEBOOK), None)
    notice = notice_html(check_run(run, repo_root()))
    prefixes = machine_prefixes(run_dir)

    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    (work / "notebooks").mkdir(parents=True)
    exporter = make_exporter()
    css_src = lab_css_dir(exporter)
    (work / "_static" / "lab").mkdir(parents=True)
    for name in LAB_CSS:
        shutil.copy2(css_src / name, work / "_static" / "lab" / name)
    copy_mathjax(work / "_static" / "mathjax")

    def export(nb, path: Path, nav: str, notice: str = "") -> None:
        up = ".." if path.parent.name == "notebooks" else "."
        static = "../_static" if up == ".." else "_static"
        exporter.mathjax_url = f"{static}/mathjax/MathJax.js?config={MATHJAX_CONFIG}&locale=en"
        body, _ = exporter.from_notebook_node(nb, resources={"fairl_static": static, "fairl_nav": nav,
                                                             "fairl_thumb": THUMB_HEIGHT, "fairl_notice": notice,
                                                             "fairl_fonts": FONTS})
        body = site_figure_links(body, figures, up)  # figures: the copies made below
        atomic_write_text(path, strip_machine_paths(body, prefixes))

    # figures: the PNGs the contents (promised by the notebooks) and the report show, copied once
    figures = {name: run_dir / "figures" / f"{name}.png"
               for stem in notebooks for name in promised[stem].get("figures", [])}
    report_md = run_dir / "REPORT.md"
    report = rewrite_report_links(report_md.read_text()) if report_md.exists() else None
    table_dir = run_dir / "tables"
    csvs = {p.stem: p for p in sorted(table_dir.glob("*.csv"))} if table_dir.is_dir() else {}
    warnings = []
    for target in sorted(local_targets(report or "")):
        folder, _, name = target.partition("/")
        stem, ext = Path(name).stem, Path(name).suffix
        if folder == "figures" and ext == ".png" and (run_dir / target).exists():
            figures[stem] = run_dir / target
        elif not ((folder == "notebooks" and ext == ".html" and stem in notebooks)
                  or (folder == "tables" and ext == ".csv" and stem in csvs)
                  or (target == "tables.html" and csvs)):
            warnings.append(f"REPORT.md links {target}, which is not part of the site")
    figures = {name: path for name, path in figures.items() if path.exists()}
    if figures:
        (work / "figures").mkdir()
    for name, path in figures.items():
        shutil.copy2(path, work / "figures" / f"{name}.png")

    # tables: one page, in the paper's order of the notebooks that promised them, then the rest
    order = [name for _, _, stem in entries for name in promised[stem].get("tables", []) if name in csvs]
    order += [name for name in csvs if name not in order]
    if order:
        (work / "tables").mkdir()
    owner = {name: stem for stem in notebooks for name in promised[stem].get("tables", [])}
    table_cells = [("# Tables\n\nEvery table of this run, in the paper's order. Each links its CSV; the "
                    "notebook that wrote it shows how it was computed.")]
    for name in order:
        shutil.copy2(csvs[name], work / "tables" / f"{name}.csv")
        md = csvs[name].with_suffix(".md")
        shown = md.read_text() if md.exists() else pd.read_csv(csvs[name]).to_html(index=False, border=0)
        source = (f" · from [{titles[owner[name]]}](notebooks/{owner[name]}.html)" if name in owner else "")
        table_cells.append(f'<a id="{html.escape(name)}"></a>\n\n## {name}\n\n[CSV](tables/{name}.csv){source}\n\n'
                           f"{shown}")

    nav_root = " &middot; ".join(['<a href="index.html">Contents</a>']
                                 + (['<a href="report.html">Reproduction report</a>'] if report is not None else [])
                                 + (['<a href="tables.html">Tables</a>'] if order else [])
                                 + ([f'<a href="{THEORY_PAGE}">Theory toy (sliders)</a>'] if theory_stem else []))
    # notebook pages, with previous / next in the paper's order
    stems = [stem for _, _, stem in entries]
    for i, stem in enumerate(stems):
        parts = ['<a href="../index.html">Contents</a>']
        if i > 0:
            parts.append(f'&larr; <a href="{stems[i - 1]}.html">{html.escape(titles[stems[i - 1]])}</a>')
        if i + 1 < len(stems):
            parts.append(f'<a href="{stems[i + 1]}.html">{html.escape(titles[stems[i + 1]])}</a> &rarr;')
        if stem == theory_stem:
            parts.append(f'<a href="../{THEORY_PAGE}">the figure with sliders, in the browser</a>')
        notebooks[stem].metadata["title"] = titles[stem]  # the page's <title> (in memory only)
        export(notebooks[stem], work / "notebooks" / f"{stem}.html", " &middot; ".join(parts))
    if report is not None:
        export(_markdown_page([report], "Reproduction report"), work / "report.html", nav_root, notice)
    if order:
        export(_markdown_page(table_cells, "Tables"), work / "tables.html", nav_root)
    if theory_stem:
        export(theory_page(run, run_dir, theory_stem), work / THEORY_PAGE, nav_root)
    if run:
        write_json(work / "run.json", run)

    # the contents page
    profile = run.get("profile", run_dir.name)
    facts = [f"profile `{profile}`"] + [f"{label} `{run[k]}`" for k, label in
                                        (("seed", "seed"), ("status", "status"), ("git_commit", "commit")) if k in run]
    head = [(f"# Learning from Failures: the companion's run `{profile}`\n\n"
             "The executed notebooks of one run of the companion to *Learning from Failures: Understanding "
             "LLM Alignment through Failure-Aware Inverse RL*, in the order of the paper (the notebooks run "
             "in their numbered order), with their figures and tables. "
             f"Run: {', '.join(facts)}.")]
    links = []
    if report is not None:
        links.append("**Start here:** [the reproduction report](report.html), every claim of the paper beside "
                     "this run's numbers.")
    if order:
        links.append(f"[Every table](tables.html) of the run ({len(order)}).")
    head.append(" ".join(links) or "This run has no report and no tables.")
    body, group = [], None
    for g, where, stem in entries:
        if g != group:
            body.append(f"## {g}")
            group = g
        entry = run.get("notebooks", {}).get(stem, {})
        status = " · ".join(x for x in (entry.get("status", ""), _fmt_seconds(entry.get("seconds"))) if x)
        lines = [f"### [{titles[stem]}](notebooks/{stem}.html)", ""]
        lines.append(" · ".join(f"*{x}*" for x in (where, f"ran: {status}" if status else "") if x))
        thumbs = [f'<a href="figures/{n}.png"><img src="figures/{n}.png" alt="{html.escape(n)}" '
                  f'title="{html.escape(n)}"></a>'
                  for n in promised[stem].get("figures", []) if n in figures]
        if thumbs:
            lines += ["", f'<div class="fairl-thumbs">{"".join(thumbs)}</div>']
        tabs = [f"[{n}](tables.html#{n})" for n in promised[stem].get("tables", []) if n in csvs]
        if tabs:
            lines += ["", "Tables: " + ", ".join(tabs)]
        if stem == theory_stem:
            lines += ["", (f"**In the browser:** [the feasible set with sliders]({THEORY_PAGE}) (the failure "
                           "margin and the number of failure constraints), no Python needed.")]
        body.append("\n".join(lines))
    export(_markdown_page(["\n\n".join(head)] + body, f"fairl · {profile}"), work / "index.html", nav_root, notice)

    warnings += [f"{page} names the absolute path {path}" for page, path in absolute_paths(work, (str(repo_root()),))]
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    for w in warnings:
        print(f"warning: site: {w}", file=sys.stderr)
    return out / "index.html"


def theory_settings(run: dict, run_dir: Path) -> tuple[TheoryConfig, int, str]:
    """The ``[theory]`` settings, seed and profile of the run (its profile, seed and overrides from
    ``run.json``); a profile this checkout does not know falls back to the defaults."""
    profile, seed = str(run.get("profile") or run_dir.name), run.get("seed", 0)
    try:
        return make_config(profile, seed=int(seed), overrides=str(run.get("overrides") or "")).theory, int(seed), profile
    except (ConfigError, TypeError, ValueError):
        return TheoryConfig(), int(seed) if isinstance(seed, int) else 0, profile


def theory_page(run: dict, run_dir: Path, stem: str):
    """The theory toy's page (:mod:`fairl_lib.analysis.theory_page`) as a notebook for the exporter."""
    cfg, seed, profile = theory_settings(run, run_dir)
    cells = page_cells(cone_frames(cfg, seed), cfg, seed, profile, stem)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown"
                else nbformat.v4.new_raw_cell(src, metadata={"raw_mimetype": "text/html", "fairl_html": True})
                for kind, src in cells]
    nb.metadata["title"] = "The feasible set in the browser"
    return nb


def site_size(folder: str | Path) -> int:
    """Total bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
