"""Figures of the pain and phenotypes steps (matplotlib, Agg canvas, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def save_forest(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Forest plot of every model's coefficients with 95 % CIs (intercept left out), one
    panel per term (terms have different units); PNG written to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    terms = [t for t in dict.fromkeys(r["term"] for r in rows) if t != "Intercept"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = Figure(figsize=(6.0, 1.0 + 0.9 * max(len(terms), 1)), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(len(terms), 1), 1, squeeze=False)[:, 0]
    colours = ("#4c72b0", "#dd8452", "#55a868")
    for ax, term in zip(axes, terms, strict=False):
        for m, method in enumerate(methods):
            (row,) = [r for r in rows if r["term"] == term and r["method"] == method]
            ax.errorbar(
                [row["estimate"]],
                [m],
                xerr=[[row["estimate"] - row["ci_low"]], [row["ci_high"] - row["estimate"]]],
                fmt="o",
                color=colours[m % len(colours)],
                capsize=3,
            )
        ax.axvline(0.0, color="0.6", linewidth=0.8, linestyle="--")
        ax.set_yticks(range(len(methods)), methods, fontsize=7)
        ax.set_ylim(-0.7, len(methods) - 0.3)
        ax.set_title(f"{term}: pain points per unit", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def save_phenotype_scatter(knees: pd.DataFrame, x: str, y: str, path: Path, title: str) -> Path:
    """Scatter of two knee features coloured by phenotype; PNG written to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    labels = knees["phenotype"].to_numpy()
    for k in np.unique(labels):
        sel = labels == k
        ax.scatter(knees.loc[sel, x], knees.loc[sel, y], s=8, alpha=0.6, label=f"{k} ({sel.sum()})")
    ax.set_xlabel(x, fontsize=7)
    ax.set_ylabel(y, fontsize=7)
    ax.legend(title="phenotype (knees)", fontsize=7, title_fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
