"""The longitudinal figure: mean change from baseline with its 95 % CI against months, one
panel per headline biomarker, one line per group (all knees, KL >= 2, each baseline grade).
PNG through matplotlib's Agg canvas (no display), written atomically.

A group's CI band is drawn only at visits where it has at least :data:`MIN_BAND_KNEES` knees:
the t interval of two or three knees is many times wider than every other line and would set
the panel's scale (a small cohort's KL 3 group of two knees flattened every line to zero)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

MAX_PANELS = 4
MIN_BAND_KNEES = 5
"""Fewest knees at a visit for a group's 95 % CI band to be drawn (its mean is always drawn)."""


def figure_biomarkers(summary: pd.DataFrame, headline: Sequence[str]) -> list[str]:
    """The biomarkers the figure shows: the headline ones the summary has (at most
    :data:`MAX_PANELS`), else its first ones."""
    present = list(dict.fromkeys(summary["biomarker"]))
    chosen = [b for b in headline if b in present] or present
    return chosen[:MAX_PANELS]


def save_change_figure(summary: pd.DataFrame, biomarkers: Sequence[str], path: Path) -> Path:
    """Write the figure of ``summary`` (:data:`~.change.SUMMARY_COLUMNS` rows) for
    ``biomarkers`` to ``path`` (PNG); the baseline is the point (0 months, 0 change)."""
    from kneescope.io.atomic import atomic_write

    fig = change_figure(summary, biomarkers)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")


def change_figure(summary: pd.DataFrame, biomarkers: Sequence[str]) -> Figure:
    """The figure of :func:`save_change_figure` (one panel per biomarker, 4.2 x 4 inches each,
    100 dpi), not yet written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(len(biomarkers), 1)
    fig = Figure(figsize=(4.2 * n, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)[0])
    for ax, name in zip(axes, biomarkers, strict=False):
        rows = summary.loc[summary["biomarker"] == name]
        unit = str(rows["unit"].iloc[0]) if len(rows) else ""
        for group, part in rows.groupby("group", sort=False):
            part = part.sort_values("months_mean")
            x = np.concatenate([[0.0], part["months_mean"].to_numpy(dtype=np.float64)])
            y = np.concatenate([[0.0], part["mean_change"].to_numpy(dtype=np.float64)])
            low = np.concatenate([[0.0], part["mean_ci_low"].to_numpy(dtype=np.float64)])
            high = np.concatenate([[0.0], part["mean_ci_high"].to_numpy(dtype=np.float64)])
            few = np.concatenate([[False], part["n"].to_numpy(dtype=np.float64) < MIN_BAND_KNEES])
            low[few], high[few] = np.nan, np.nan
            knees = int(part["n"].max()) if len(part) else 0
            width = 2.0 if group == "all" else 1.0
            (line,) = ax.plot(x, y, marker="o", linewidth=width, label=f"{group} (n {knees})")
            if not few[1:].all():
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.12)
        ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle="--")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("months since baseline")
        ax.set_ylabel(f"mean change from baseline ({unit})" if unit else "mean change")
        ax.legend(fontsize=6, loc="lower left")
    fig.suptitle("change from baseline: mean and 95 % CI per visit", fontsize=9)
    fig.tight_layout()
    return fig
