"""The trial's figures (PNG, matplotlib's Agg canvas, written atomically).

* trajectories: per endpoint, the LS-mean change from baseline of each arm at each visit
  (0 at baseline) with its 95 % CI, against months since baseline;
* forest plot: per endpoint, the LS-mean difference (treatment - control) at each visit with
  its 95 % CI and the line of no effect.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLOURS = {"control": "#4c72b0", "treatment": "#dd8452"}


def _finite(*values: float) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def save_trajectory_figure(
    endpoint: str,
    lsmeans: Sequence[dict[str, Any]],
    path: Path,
    *,
    title: str,
    level: float = 0.95,
) -> Path:
    """Trajectories per arm.

    Args:
        endpoint: the endpoint's column name (the y label; its unit is its suffix).
        lsmeans: dicts with ``arm``, ``months``, ``estimate``, ``ci_low``, ``ci_high`` (one per
            arm and post-baseline visit; NaN values are skipped).
        path: the PNG's path.
        title: the figure's title.
        level: the CI level (for the legend).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kneescope.io.atomic import atomic_write

    fig = Figure(figsize=(5.5, 4.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    months = sorted({float(r["months"]) for r in lsmeans})
    span = (max(months) if months else 1.0) or 1.0
    for k, arm in enumerate(("control", "treatment")):
        rows = [r for r in lsmeans if r["arm"] == arm and _finite(r["estimate"])]
        rows.sort(key=lambda r: float(r["months"]))
        shift = (k - 0.5) * 0.012 * span
        x = [0.0 + shift] + [float(r["months"]) + shift for r in rows]
        y = [0.0] + [float(r["estimate"]) for r in rows]
        low = [0.0] + [
            float(r["estimate"]) - float(r["ci_low"]) if _finite(r["ci_low"]) else 0.0 for r in rows
        ]
        high = [0.0] + [
            float(r["ci_high"]) - float(r["estimate"]) if _finite(r["ci_high"]) else 0.0
            for r in rows
        ]
        ax.errorbar(
            x,
            y,
            yerr=[low, high],
            marker="o",
            capsize=3,
            color=COLOURS[arm],
            label=f"{arm} (LS-mean, {level:.0%} CI)",
        )
    ax.axhline(0.0, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel("months since baseline")
    ax.set_ylabel(f"change from baseline of {endpoint}", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")


def save_forest_figure(
    endpoint: str,
    differences: Sequence[dict[str, Any]],
    path: Path,
    *,
    title: str,
    level: float = 0.95,
) -> Path:
    """Forest plot of the treatment differences per visit.

    Args:
        endpoint: the endpoint's column name (x label).
        differences: dicts with ``visit``, ``months``, ``estimate``, ``ci_low``, ``ci_high``,
            ``p_value`` (one per post-baseline visit).
        path: the PNG's path.
        title: the figure's title.
        level: the CI level (x label).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kneescope.io.atomic import atomic_write

    rows = sorted(differences, key=lambda r: float(r["months"]))
    fig = Figure(figsize=(6.0, 1.2 + 0.45 * max(1, len(rows))), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    labels = []
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        est, low, high = float(r["estimate"]), float(r["ci_low"]), float(r["ci_high"])
        if _finite(est, low, high):
            ax.plot([low, high], [y, y], color="black", linewidth=1.2)
            ax.plot([est], [y], "s", color=COLOURS["treatment"], markersize=6)
        p = r.get("p_value")
        p_text = f", p {float(p):.3g}" if isinstance(p, int | float) and math.isfinite(p) else ""
        when = f"{r['visit']} ({float(r['months']):g} mo)"
        labels.append(f"{when}: {est:+.3g} [{low:+.3g}, {high:+.3g}]{p_text}")
    ax.set_yticks(list(range(len(rows)))[::-1], labels, fontsize=7)
    ax.axvline(0.0, color="0.5", linestyle="--", linewidth=1)
    ax.set_xlabel(f"treatment - control, {endpoint} ({level:.0%} CI)", fontsize=8)
    # over the whole figure, wrapped: the long visit labels leave the axes too narrow for it
    fig.suptitle(textwrap.fill(title, 80), fontsize=9)
    fig.tight_layout()
    return atomic_write(
        path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"), suffix=".png"
    )
