"""One figure style and one ``save_fig`` helper (handson-ml3 style): every figure is regenerated.

Figures are named after the paper's figure numbers (``fig2_feasible_cone``, ``fig3_left_subtype_matrix``,
...) and written as PNG (for the README) and PDF (for the paper) to ``results/<profile>/figures/``.
``run_all.sh`` copies the PNGs of the cpu and paper profiles to the top-level ``figures/``.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() in {"", "agg"} else None
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = "colorblind"


def set_style() -> None:
    """The project's one seaborn style."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titleweight": "bold", "pdf.fonttype": 42})


def save_fig(fig: plt.Figure, name: str, cfg) -> list[Path]:
    """Save ``fig`` as ``<name>.png`` and ``<name>.pdf`` under ``results/<profile>/figures/``."""
    out_dir = cfg.results_dir / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        tmp = path.with_name(f".{path.stem}.tmp.{ext}")
        # metadata pinned so the same data give the same bytes
        fig.savefig(tmp, format=ext, metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
        tmp.replace(path)
        paths.append(path)
    return paths
