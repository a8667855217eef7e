"""A knee's key biomarkers over the run's visits (matplotlib, Agg canvas, PNG written
atomically): one small panel per biomarker, the visit of the page marked, the cohort's
reference range shaded."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

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
    ``reference`` range (p5, p95) shaded; written atomically to ``path`` (PNG, ~720 px wide).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kneescope.io.atomic import atomic_write

    n = max(len(columns), 1)
    fig = Figure(figsize=(2.1 * n + 0.6, 2.5), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    x = list(range(len(visit_codes)))
    for ax, (column, words) in zip(axes, columns, strict=False):
        y = [float(v.get(column, math.nan)) for v in values]
        band = reference.get(column)
        if band is not None:
            ax.axhspan(band[0], band[1], color="0.88", zorder=0, label="reference p5-p95")
        ax.plot(x, y, marker="o", color="#1f5f8b", linewidth=1.2, markersize=4)
        for xi, yi, code in zip(x, y, visit_codes, strict=True):
            if code == current and math.isfinite(yi):
                ax.plot([xi], [yi], marker="o", markersize=8, color="#d1495b", zorder=3)
        ax.set_xticks(x)
        ax.set_xticklabels(list(visit_codes), fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        unit = column.rsplit("_", 1)[-1].replace("mm3", "mm³").replace("mm2", "mm²")
        ax.set_title(f"{words} ({unit})", fontsize=7.5)
        ax.set_xlim(-0.4, len(x) - 0.6)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.78, wspace=0.45)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
