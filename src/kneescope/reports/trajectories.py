"""A knee's key biomarkers over the run's visits (matplotlib, Agg canvas, PNG written
atomically): one small panel per biomarker, the visit of the page marked, the cohort's
reference range shaded."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY_BIOMARKERS = (
    ("we2008_MFTC_ThCtAB_mm", "MFTC mean thickness (ThCtAB)"),
    ("we2008_LFTC_ThCtAB_mm", "LFTC mean thickness (ThCtAB)"),
    ("femoral_cartilage_thickness_mean_mm", "femoral cartilage thickness"),
    ("medial_tibial_cartilage_thickness_mean_mm", "medial tibial cartilage thickness"),
    ("lateral_tibial_cartilage_thickness_mean_mm", "lateral tibial cartilage thickness"),
    ("patellar_cartilage_thickness_mean_mm", "patellar cartilage thickness"),
    ("femoral_cartilage_volume_mm3", "femoral cartilage volume"),
    ("medial_tibial_cartilage_volume_mm3", "medial tibial cartilage volume"),
    ("lateral_tibial_cartilage_volume_mm3", "lateral tibial cartilage volume"),
    ("medial_meniscus_extrusion_mm", "medial meniscal extrusion"),
    ("lateral_meniscus_extrusion_mm", "lateral meniscal extrusion"),
)
"""(column, words) of the biomarkers the knee pages follow over visits and show first in
their tables, in this order (those the run has)."""

MAX_PANELS = 4


def trajectory_columns(
    visits: Sequence[Mapping[str, float]], max_panels: int = MAX_PANELS
) -> list[tuple[str, str]]:
    """The first ``max_panels`` :data:`KEY_BIOMARKERS` with a finite value at two visits or
    more of ``visits`` (each a column -> value mapping)."""
    out = []
    for column, words in KEY_BIOMARKERS:
        finite = [v.get(column) for v in visits]
        n = sum(1 for x in finite if isinstance(x, float | int) and math.isfinite(x))
        if n >= 2:
            out.append((column, words))
        if len(out) == max_panels:
            break
    return out


@dataclass
class _Panel:
    ax: Any
    band: Any
    line: Any
    current: Any


@dataclass
class _Figure:
    fig: Any
    panels: list[_Panel]
    title: Any


_FIGURES: dict[tuple[int, tuple[str, ...]], _Figure] = {}


def _figure(n: int, visit_codes: tuple[str, ...]) -> _Figure:
    """The figure of ``n`` panels over ``visit_codes``, made once per process and redrawn
    for every knee (building axes costs more than drawing them)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    key = (n, visit_codes)
    cached = _FIGURES.get(key)
    if cached is not None:
        return cached
    fig = Figure(figsize=(2.1 * n + 0.6, 2.7), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    x = list(range(len(visit_codes)))
    panels = []
    for ax in axes:
        band = ax.add_patch(
            Rectangle((-0.5, 0.0), len(x), 0.0, color="0.88", zorder=0, linewidth=0)
        )
        (line,) = ax.plot(
            x, [0.0] * len(x), marker="o", color="#1f5f8b", linewidth=1.2, markersize=4
        )
        (current,) = ax.plot(
            [0.0], [0.0], marker="o", markersize=8, color="#d1495b", linestyle="none", zorder=3
        )
        ax.set_xticks(x)
        ax.set_xticklabels(list(visit_codes), fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlim(-0.4, len(x) - 0.6)
        panels.append(_Panel(ax, band, line, current))
    title = fig.suptitle("", fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.11, top=0.72, wspace=0.45)
    made = _Figure(fig, panels, title)
    _FIGURES[key] = made
    return made


def write_trajectory_figure(
    visit_codes: Sequence[str],
    values: Sequence[Mapping[str, float]],
    columns: Sequence[tuple[str, str]],
    path: Path,
    *,
    current: str,
    reference: Mapping[str, tuple[float, float]],
    title: str,
) -> Path:
    """Panels of ``columns`` (column, words) against the visits ``visit_codes`` (in order,
    ``values[i]`` the row of visit i), the ``current`` visit drawn larger, each column's
    ``reference`` range (p5, p95) shaded; written atomically to ``path`` (PNG, ~190 px a
    panel wide)."""
    from kneescope.io.atomic import atomic_write

    figure = _figure(max(len(columns), 1), tuple(visit_codes))
    x = list(range(len(visit_codes)))
    at = list(visit_codes).index(current) if current in visit_codes else None
    for panel, (column, words) in zip(figure.panels, columns, strict=False):
        y = [float(v.get(column, math.nan)) for v in values]
        panel.line.set_data(x, y)
        here = y[at] if at is not None else math.nan
        panel.current.set_data([at if at is not None else 0], [here])
        band = reference.get(column)
        finite = [v for v in y if math.isfinite(v)]
        if band is not None:
            panel.band.set_y(band[0])
            panel.band.set_height(band[1] - band[0])
            panel.band.set_visible(True)
            finite += [band[0], band[1]]
        else:
            panel.band.set_visible(False)
        if finite:
            lo, hi = min(finite), max(finite)
            pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 0.05)
            panel.ax.set_ylim(lo - pad, hi + pad)
        unit = column.rsplit("_", 1)[-1].replace("mm3", "mm³").replace("mm2", "mm²")
        panel.ax.set_title(textwrap.fill(f"{words} ({unit})", 28), fontsize=7.5)
    figure.title.set_text(title)
    return atomic_write(
        path,
        lambda tmp: figure.fig.savefig(tmp, format="png", pil_kwargs={"compress_level": 3}),
        suffix=".png",
    )
