"""Notebook 03's feasible set in the browser: precomputed frames behind two sliders, no Python needed.

The notebook's sliders (:func:`fairl_lib.irl.theory.interactive_cone`) need a Jupyter kernel; the
static site has none. This page of the site (``theory_toy.html``, written by
:func:`fairl_lib.analysis.site.build_site`) shows the same figure, Figure 2 as the library draws it
(:func:`fairl_lib.irl.theory.plot_feasible_cone`), for every point of a small grid: the failure
margin M_fail (:func:`margin_grid`) times the number of failure constraints (1 to
:data:`MAX_FAILURES`), on the run's own draw of constraints (its profile's ``[theory]`` settings and
seed, draw 0, as the notebook's Figure 2). Every frame and its caption (Corollary 1's measures from
:func:`fairl_lib.irl.theory.ambiguity`) are computed in Python when the site is built; the page's
script only swaps the image and the caption when a slider moves. No math is done in JavaScript, so
the page cannot disagree with the library.

The frames are inlined as PNG data URIs (the page is one file), drawn into one reused figure at a
low resolution and reduced to a small palette with Pillow (a matplotlib dependency), so that the
whole grid costs a few hundred kilobytes and a few seconds of a site build.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import json

import numpy as np

from fairl_lib.irl import theory

MARGIN_FRACS = (0.05, 0.15, 0.25, 0.4, 0.6, 0.8)  # M_fail - M, as fractions of the ball's radius
MAX_FAILURES = 4
DPI = 96
MARGINS = {"left": 0.18, "right": 0.97, "bottom": 0.1, "top": 0.93}  # fixed, so the axes never move between frames
COLOURS = 64  # palette size of each frame
FIGSIZE = (5.2, 5.2)  # plot_feasible_cone's own


def margin_grid(cfg: theory.TheoryConfig) -> list[float]:
    """The failure margins of the frames: ``margin + f * radius`` for f in :data:`MARGIN_FRACS`,
    plus the profile's own ``margin_fail`` (so that one frame is the notebook's Figure 2)."""
    grid = {round(cfg.margin + f * cfg.radius, 6) for f in MARGIN_FRACS} | {round(cfg.margin_fail, 6)}
    return sorted(grid)


def failure_counts(cfg: theory.TheoryConfig) -> list[int]:
    """The numbers of failure constraints of the frames: 1 to :data:`MAX_FAILURES` (at most every constraint)."""
    return list(range(1, min(MAX_FAILURES, cfg.n_constraints) + 1))


def _png(fig) -> bytes:
    """The figure as a palette PNG: drawn once on its fixed canvas (no tight bounding box, so every frame
    has the same size and nothing jumps when a slider moves), reduced to :data:`COLOURS` colours."""
    from PIL import Image

    fig.canvas.draw()
    image = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    out = io.BytesIO()
    image.convert("RGB").quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT).save(out, format="png", optimize=True)
    return out.getvalue()


def caption(cfg: theory.TheoryConfig, problem: theory.ToyProblem) -> str:
    """One frame's caption: its settings and Corollary 1's measures of F and F_FA (plain text)."""
    a = theory.ambiguity(problem, cfg.n_vertices)
    k = len(problem.failures)
    share = (" (empty: no reward meets every failure margin)" if a["area_fa"] <= theory.TOL
             else f" ({1 - a['area_fa'] / a['area_base']:.0%} smaller)" if a["area_base"] > 0 else "")
    return (f"M_fail = {problem.margin_fail:g}, {k} failure constraint{'s' if k > 1 else ''} of "
            f"{len(problem.D)}: area of F {a['area_base']:.3f}, of F_FA {a['area_fa']:.3f}{share}; "
            f"angular width {np.degrees(a['arc_width_base']):.0f} deg -> {np.degrees(a['arc_width_fa']):.0f} deg; "
            f"a failure constraint binds: {'yes' if a['binds'] else 'no'}; "
            f"the true reward direction kept: {'yes' if a['truth_in_fa'] else 'no'}.")


def cone_frames(cfg: theory.TheoryConfig, seed: int) -> dict:
    """Every frame of the page: ``{"margins", "counts", "frames": [[{"src", "caption"}, ...] per
    margin], "start": [i, j]}``, ``src`` a PNG data URI, ``start`` the frame of the profile's own
    settings (nearest on the grid)."""
    import matplotlib.pyplot as plt

    from fairl_lib.plots import set_style

    margins, counts = margin_grid(cfg), failure_counts(cfg)
    frames = []
    with plt.rc_context():
        set_style()
        fig = plt.figure(figsize=FIGSIZE, dpi=DPI)
        ax = fig.add_subplot()
        fig.subplots_adjust(**MARGINS)
        try:
            for m in margins:
                row = []
                for k in counts:
                    c = dataclasses.replace(cfg, margin_fail=m, n_failures=k)
                    problem = theory.draw_problem(c, 0, seed)
                    ax.clear()
                    theory.plot_feasible_cone(problem, ax=ax)
                    src = "data:image/png;base64," + base64.b64encode(_png(fig)).decode()
                    row.append({"src": src, "caption": caption(c, problem)})
                frames.append(row)
        finally:
            plt.close(fig)
    start = [int(np.argmin([abs(m - cfg.margin_fail) for m in margins])),
             int(np.argmin([abs(k - cfg.n_failures) for k in counts]))]
    return {"margins": margins, "counts": counts, "frames": frames, "start": start}


# laid out as a markdown cell of the lab template (prompt column, then the rendered content)
WIDGET = """<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell"><div class="jp-Cell-inputWrapper">
<div class="jp-InputArea jp-Cell-inputArea"><div class="jp-InputPrompt jp-InputArea-prompt"></div>
<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput fairl-toy">
<div class="fairl-toy-controls">
<label for="fairl-margin">failure margin M<sub>fail</sub> = <output id="fairl-margin-value">{margin}</output></label>
<input type="range" id="fairl-margin" min="0" max="{max_margin}" step="1" value="{i}">
<label for="fairl-failures">failure constraints = <output id="fairl-failures-value">{count}</output></label>
<input type="range" id="fairl-failures" min="0" max="{max_count}" step="1" value="{j}">
</div>
<img id="fairl-frame" src="{src}" alt="the feasible set for the chosen failure margin and number of failure constraints">
<p id="fairl-caption">{caption}</p>
</div></div></div></div>
<style>
.fairl-toy {{ font-family: var(--jp-content-font-family); margin: 8px 0 16px 0; }}
.fairl-toy-controls {{ display: grid; grid-template-columns: max-content 280px; gap: 8px 16px;
  align-items: center; margin-bottom: 8px; }}
.jp-RenderedHTMLCommon.fairl-toy img {{ max-width: 100%; width: auto; border: 1px solid var(--jp-border-color2); }}
</style>
<script>
(function () {{
  const TOY = {data};
  const margin = document.getElementById("fairl-margin"), failures = document.getElementById("fairl-failures");
  function show() {{
    const i = Number(margin.value), j = Number(failures.value), frame = TOY.frames[i][j];
    document.getElementById("fairl-frame").src = frame.src;
    document.getElementById("fairl-caption").textContent = frame.caption;
    document.getElementById("fairl-margin-value").textContent = TOY.margins[i];
    document.getElementById("fairl-failures-value").textContent = TOY.counts[j];
  }}
  margin.addEventListener("input", show);
  failures.addEventListener("input", show);
}})();
</script>"""


def widget_html(toy: dict) -> str:
    """The sliders, the image and the caption, with the frames as JSON in the page's script."""
    i, j = toy["start"]
    frame = toy["frames"][i][j]
    data = json.dumps({"margins": toy["margins"], "counts": toy["counts"], "frames": toy["frames"]})
    return WIDGET.format(margin=toy["margins"][i], count=toy["counts"][j], i=i, j=j,
                         max_margin=len(toy["margins"]) - 1, max_count=len(toy["counts"]) - 1,
                         src=frame["src"], caption=html.escape(frame["caption"]),
                         data=data.replace("</", "<\\/"))


def page_cells(toy: dict, cfg: theory.TheoryConfig, seed: int, profile: str, notebook: str) -> list[tuple[str, str]]:
    """The page as ``(kind, source)`` cells for the site's exporter: markdown prose, then the widget
    (a raw HTML cell, passed through as it is), then how the frames were made."""
    intro = (
        "# The feasible set in the browser (Theorem 1, Figure 2)\n\n"
        f"*Notebook [{notebook}](notebooks/{notebook}.html), without Python.* Each preference pair "
        "$(o^+, o^-)$ says only $\\theta^\\top d_i \\ge M$ about a linear reward $R_\\theta(o) = \\theta^\\top h(o)$; "
        "the rewards that satisfy every pair inside the ball $\\lVert\\theta\\rVert \\le r$ form the feasible set "
        "$\\mathcal F$ (blue outline, grey and green dots). FA-IRL asks more of the failures: "
        "$\\theta^\\top d_f \\ge M_{\\text{fail}} > M$ (red lines); only the green dots satisfy it, the set "
        "$\\mathcal F_{FA} \\subseteq \\mathcal F$.\n\n"
        "Move the sliders: a larger failure margin cuts deeper into $\\mathcal F$; more failure constraints "
        "cut from more sides. A failure line that misses $\\mathcal F$ does not *bind* and removes nothing "
        "(Theorem 1's strict inclusion needs a failure that binds); a margin beyond the set's reach empties "
        "$\\mathcal F_{FA}$, and the true reward direction $\\theta^*$ (black arrow) can be cut off with the rest.")
    made = (
        f"Every picture was drawn by `fairl_lib.irl.theory.plot_feasible_cone` when this site was built, on the "
        f"run's draw of {cfg.n_constraints} constraints (profile `{profile}`, seed {seed}, draw 0: the "
        f"constraints of the notebook's Figure 2, failures chosen by the rule `{cfg.failure_rule}`); the "
        "captions' measures come from `theory.ambiguity`. The page only swaps pictures: nothing is computed in "
        "the browser. In JupyterLab the notebook's last cell has the same sliders over any margin, any number "
        "of constraints and any seed.")
    return [("markdown", intro), ("raw", widget_html(toy)), ("markdown", made)]
