"""One table helper: a DataFrame to CSV, Markdown and LaTeX under ``results/<profile>/tables/``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fairl_lib.artifacts import atomic_write_text


def _markdown(df: pd.DataFrame, floatfmt: str) -> str:
    """A GitHub Markdown table (no ``tabulate`` dependency)."""
    def cell(v) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|")

    frame = df.reset_index() if df.index.name or isinstance(df.index, pd.MultiIndex) else df
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *rows]) + "\n"


def save_table(df: pd.DataFrame, name: str, cfg, floatfmt: str = ".3f", caption: str = "") -> list[Path]:
    """Write ``<name>.csv``, ``<name>.md`` and ``<name>.tex``; returns the paths."""
    out = cfg.results_dir / "tables"
    keep_index = bool(df.index.name) or isinstance(df.index, pd.MultiIndex)
    paths = [
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=keep_index)),
        atomic_write_text(out / f"{name}.md", (f"**{caption}**\n\n" if caption else "") + _markdown(df, floatfmt)),
        atomic_write_text(out / f"{name}.tex", df.to_latex(index=keep_index, float_format=lambda x: format(x, floatfmt),
                                                             caption=caption or None, label=f"tab:{name}")),
    ]
    return paths
