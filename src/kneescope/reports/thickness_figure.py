"""Figures of 2D cartilage thickness maps (matplotlib, Agg canvas, PNG written atomically).

Each plate's map (:class:`kneescope.biomarkers.maps.ThicknessMap`) is drawn in its own
flattened frame, in millimetres, with a colour bar (thickness in mm), a 10 mm scale bar,
anatomical orientation labels and a title. The frame is the same for right and left knees
(x grows laterally for both: a left knee is mirrored), so the image's left edge is always
medial and its right edge lateral:

=================  ==========================  ==========================================
plate              x (left -> right)           y (bottom -> top)
=================  ==========================  ==========================================
femoral            medial -> lateral           posterior -> anterior (arc length; the
                                               trochlea at the top, 0 = straight inferior)
medial/lateral     medial -> lateral           posterior -> anterior (seen from above)
tibial
patellar           medial -> lateral           inferior -> superior (seen from behind)
=================  ==========================  ==========================================

``kneescope measure --maps`` writes one figure per plate (:func:`write_plate_figure`); the knee
pages of ``kneescope report`` one figure of all four plates on one colour scale
(:func:`write_knee_thickness_figure`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.biomarkers.maps import ThicknessMap

PLATE_TITLES = {
    "femoral": "femoral cartilage",
    "medial_tibial": "medial tibial cartilage",
    "lateral_tibial": "lateral tibial cartilage",
    "patellar": "patellar cartilage",
}
"""Plate name -> the words a figure's panel title uses."""

ORIENTATION = {
    # plate: (left, right, bottom, top) of the displayed map
    "femoral": ("medial", "lateral", "posterior", "anterior (trochlea)"),
    "medial_tibial": ("medial", "lateral", "posterior", "anterior"),
    "lateral_tibial": ("medial", "lateral", "posterior", "anterior"),
    "patellar": ("medial", "lateral", "inferior", "superior"),
}
"""Plate name -> the anatomical direction at the left, right, bottom and top of its map."""

DEFAULT_VMAX_MM = 4.0
"""Top of the colour scale (mm) unless a map is thicker (then its 99th percentile, rounded up
to 0.5 mm)."""

_CMAP = "viridis"
_NO_CARTILAGE = "#d9d9d9"
_MARGIN_MM = 4.0


def colour_scale_max_mm(maps: Mapping[str, ThicknessMap]) -> float:
    """The colour scale's top (mm) for ``maps``: :data:`DEFAULT_VMAX_MM`, or the maps' 99th
    percentile rounded up to 0.5 mm when that is larger (one scale for every plate)."""
    values = [m.thickness_mm[np.isfinite(m.thickness_mm)] for m in maps.values()]
    finite = np.concatenate(values) if values else np.zeros(0, np.float32)
    if finite.size == 0:
        return DEFAULT_VMAX_MM
    top = float(np.percentile(finite, 99.0))
    return max(DEFAULT_VMAX_MM, float(np.ceil(top * 2.0) / 2.0))


def _view_limits(tmap: ThicknessMap) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) in mm: the map's covered pixels plus a margin (the whole extent when
    nothing is covered)."""
    x0, x1, y0, y1 = tmap.extent_mm
    covered = np.isfinite(tmap.thickness_mm)
    if not covered.any():
        return x0, x1, y0, y1
    rows = np.flatnonzero(covered.any(axis=1))
    cols = np.flatnonzero(covered.any(axis=0))
    p = tmap.pixel_mm
    return (
        max(x0, x0 + cols[0] * p - _MARGIN_MM),
        min(x1, x0 + (cols[-1] + 1) * p + _MARGIN_MM),
        max(y0, y0 + rows[0] * p - _MARGIN_MM),
        min(y1, y0 + (rows[-1] + 1) * p + _MARGIN_MM),
    )


@dataclass
class _Panel:
    """One plate's axes with the artists that change from knee to knee."""

    ax: Any
    image: Any
    bar: Any
    bar_text: Any

    def show(self, tmap: ThicknessMap, vmax_mm: float) -> None:
        """Show ``tmap`` on the panel (image, extent, view limits, scale bar, colour scale)."""
        x0, x1, y0, y1 = tmap.extent_mm
        self.image.set_data(np.ma.masked_invalid(tmap.thickness_mm))
        self.image.set_extent((x0, x1, y0, y1))
        self.image.set_clim(0.0, vmax_mm)
        vx0, vx1, vy0, vy1 = _view_limits(tmap)
        self.ax.set_xlim(vx0, vx1)
        self.ax.set_ylim(vy0, vy1)
        # a 10 mm scale bar in the lower right corner, in data units
        bx = vx1 - _BAR_MM - 0.06 * (vx1 - vx0)
        by = vy0 + 0.08 * (vy1 - vy0)
        self.bar.set_xy((bx, by))
        self.bar.set_height(0.012 * (vy1 - vy0) + 0.4)
        self.bar_text.set_position((bx + _BAR_MM / 2, by + 0.03 * (vy1 - vy0) + 0.4))


_BAR_MM = 10.0


def _panel(ax: Any, plate: str, fontsize: float) -> _Panel:
    """Set up ``ax`` for ``plate``: grey background (no cartilage), axes in mm with few
    ticks, orientation labels on all four sides, a title and an empty map and scale bar."""
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator

    ax.set_facecolor(_NO_CARTILAGE)
    image = ax.imshow(
        np.full((2, 2), np.nan, np.float32),
        origin="lower",
        extent=(0.0, 1.0, 0.0, 1.0),
        cmap=_CMAP,
        vmin=0.0,
        vmax=DEFAULT_VMAX_MM,
        interpolation="nearest",
    )
    ax.set_aspect("equal", adjustable="box")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.tick_params(labelsize=fontsize - 1)
    left, right, bottom, top = ORIENTATION.get(plate, ("", "", "", ""))
    ax.set_xlabel(f"{left} \u2190  mm  \u2192 {right}", fontsize=fontsize)
    ax.set_ylabel(f"{bottom} \u2190  mm  \u2192 {top}", fontsize=fontsize)
    for text, xy, kw in (
        (left.upper(), (0.01, 0.5), {"ha": "left", "va": "center", "rotation": 90}),
        (right.upper(), (0.99, 0.5), {"ha": "right", "va": "center", "rotation": 270}),
        (bottom.split(" ")[0].upper(), (0.5, 0.01), {"ha": "center", "va": "bottom"}),
        (top.split(" ")[0].upper(), (0.5, 0.99), {"ha": "center", "va": "top"}),
    ):
        ax.text(*xy, text, transform=ax.transAxes, fontsize=fontsize - 1.5, color="0.25", **kw)
    bar = ax.add_patch(Rectangle((0.0, 0.0), _BAR_MM, 1.0, color="black"))
    bar_text = ax.text(0.0, 0.0, "10 mm", ha="center", va="bottom", fontsize=fontsize - 1)
    ax.set_title(PLATE_TITLES.get(plate, plate), fontsize=fontsize + 1)
    return _Panel(ax, image, bar, bar_text)


def draw_plate(ax: Any, tmap: ThicknessMap, vmax_mm: float, *, fontsize: float = 7.0) -> Any:
    """Draw one plate's map on matplotlib axes ``ax``: the map (0..``vmax_mm``, grey where no
    cartilage), axes in mm, orientation labels on all four sides and a 10 mm scale bar.
    Returns the image artist (for a colour bar)."""
    panel = _panel(ax, tmap.plate, fontsize)
    panel.show(tmap, vmax_mm)
    return panel.image


def _save(fig: Any, path: Path) -> Path:
    from kneescope.io.atomic import atomic_write

    return atomic_write(
        path,
        lambda tmp: fig.savefig(tmp, format="png", pil_kwargs={"compress_level": 3}),
        suffix=".png",
    )


def write_plate_figure(
    tmap: ThicknessMap, path: Path, *, title: str, vmax_mm: float | None = None
) -> Path:
    """One plate's thickness map as a PNG (about 480 x 430 px) with colour bar, mm scale,
    orientation labels and ``title``; written atomically to ``path``. ``vmax_mm``: top of the
    colour scale (default :func:`colour_scale_max_mm` of this map)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = vmax_mm if vmax_mm is not None else colour_scale_max_mm({tmap.plate: tmap})
    fig = Figure(figsize=(4.8, 4.3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = draw_plate(ax, tmap, top, fontsize=8.0)
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("cartilage thickness (mm)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.14, right=0.95, bottom=0.12, top=0.88)
    return _save(fig, path)


@dataclass
class _KneeFigure:
    """A four-plate figure kept per process and redrawn for every knee (building the axes
    costs more than drawing them)."""

    fig: Any
    panels: dict[str, _Panel]
    title: Any


_KNEE_FIGURES: dict[tuple[str, ...], _KneeFigure] = {}


def _knee_figure(order: tuple[str, ...]) -> _KneeFigure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cached = _KNEE_FIGURES.get(order)
    if cached is not None:
        return cached
    fig = Figure(figsize=(8.0, 6.2), dpi=90)
    FigureCanvasAgg(fig)
    n = max(len(order), 1)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    panels = {plate: _panel(ax, plate, 7.0) for ax, plate in zip(axes, order, strict=False)}
    for ax in axes[len(order) :]:
        ax.set_axis_off()
    title = fig.suptitle("", fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.86, bottom=0.08, top=0.9, wspace=0.3, hspace=0.35)
    if panels:
        cax = fig.add_axes((0.9, 0.12, 0.018, 0.74))
        bar = fig.colorbar(next(iter(panels.values())).image, cax=cax)
        bar.set_label("cartilage thickness (mm)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    made = _KneeFigure(fig, panels, title)
    _KNEE_FIGURES[order] = made
    return made


def write_knee_thickness_figure(
    maps: Mapping[str, ThicknessMap], path: Path, *, title: str, vmax_mm: float | None = None
) -> Path:
    """All of a knee's plate maps (femoral, medial tibial, lateral tibial, patellar; those
    present) in one PNG on one colour scale with one colour bar, orientation labels, 10 mm
    scale bars and ``title``; written atomically to ``path`` (720 x 558 px)."""
    order = tuple(
        [p for p in PLATE_TITLES if p in maps] + [p for p in maps if p not in PLATE_TITLES]
    )
    top = vmax_mm if vmax_mm is not None else colour_scale_max_mm(maps)
    figure = _knee_figure(order)
    for plate, panel in figure.panels.items():
        panel.show(maps[plate], top)
    figure.title.set_text(title)
    return _save(figure.fig, path)
