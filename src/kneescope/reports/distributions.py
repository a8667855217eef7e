"""The cohort page's distributions: a curated set of key biomarkers by KL grade and by visit,
and the knees whose values lie far from the run's other knees (outliers).

Not every one of a run's ~136 result columns gets a plot: :data:`KEY_BIOMARKERS` names the
ones a reader of a knee-OA cohort looks at first (cartilage thickness of the medial and lateral
femorotibial compartments, plate volumes, denuded bone, meniscal extrusion). A column the run
does not have (a pipeline without ``measure``) is skipped.

Outliers are robust: a value's distance from the run's median in units of the scaled median
absolute deviation (MAD x 1.4826, the SD of a normal distribution), so the outliers themselves
do not widen the yardstick that finds them.

Figures are PNG files drawn on matplotlib's Agg canvas (no display needed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

KEY_BIOMARKERS: tuple[tuple[str, str], ...] = (
    ("we2008_MFTC_ThCtAB_mm", "MFTC cartilage thickness ThCtAB (mm)"),
    ("we2008_LFTC_ThCtAB_mm", "LFTC cartilage thickness ThCtAB (mm)"),
    ("femoral_cartilage_volume_mm3", "femoral cartilage volume (mm³)"),
    ("medial_tibial_cartilage_volume_mm3", "medial tibial cartilage volume (mm³)"),
    ("lateral_tibial_cartilage_volume_mm3", "lateral tibial cartilage volume (mm³)"),
    ("patellar_cartilage_volume_mm3", "patellar cartilage volume (mm³)"),
    ("we2008_MFTC_dABp_pct", "MFTC denuded bone area (% of total)"),
    ("medial_meniscus_extrusion_mm", "medial meniscal extrusion (mm)"),
    ("lateral_meniscus_extrusion_mm", "lateral meniscal extrusion (mm)"),
)
"""(result column, label with unit) of the biomarkers the cohort page plots and screens for
outliers, in page order."""

ROBUST_SD_PER_MAD = 1.4826
"""The MAD of a normal distribution times this is its SD."""

OUTLIER_THRESHOLD = 3.5
"""A value is an outlier when it lies more than this many robust SDs from the run's median
(Iglewicz and Hoaglin's modified z-score cut-off, 3.5: about 1 value in 2,000 of a normal
sample, so a 100-knee run names few false outliers)."""

MIN_VALUES_FOR_OUTLIERS = 5
"""Fewer finite values than this: no outliers are named (a median of 3 says little)."""

NO_KL = "no KL"
"""The group of knees without a reader's KL grade."""


@dataclass(frozen=True)
class Outlier:
    """One value far from the run's others.

    Attributes:
        item_id: the run item (a knee and visit).
        column: the result column.
        label: the column's label with its unit.
        value: the knee's value, in the column's unit.
        median: the run's median of the column.
        robust_z: (value - median) / (1.4826 x MAD): signed, in robust SDs.
    """

    item_id: str
    column: str
    label: str
    value: float
    median: float
    robust_z: float


@dataclass(frozen=True)
class DistributionFigure:
    """A written figure: the column, its label, the PNG's path, and how many knees it shows."""

    column: str
    label: str
    path: Path
    knees: int


def key_columns(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The :data:`KEY_BIOMARKERS` that ``frame`` has with at least one finite value."""
    out = []
    for column, label in KEY_BIOMARKERS:
        if column in frame.columns and np.isfinite(_values(frame, column)).any():
            out.append((column, label))
    return out


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column as float64 (NaN where missing or not a number), shape (rows,)."""
    import pandas as pd

    return np.asarray(pd.to_numeric(frame[column], errors="coerce"), dtype=np.float64)


def robust_z(values: np.ndarray) -> np.ndarray:
    """Robust z of each value: (x - median) / (1.4826 x MAD) over the finite values.

    Args:
        values: float64, shape (n,); NaN allowed (their z is NaN).

    Returns:
        float64, shape (n,); all NaN when fewer than :data:`MIN_VALUES_FOR_OUTLIERS` finite
        values or when the MAD is 0 (more than half the values equal: no scale to judge by).
    """
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    finite = values[np.isfinite(values)]
    if finite.size < MIN_VALUES_FOR_OUTLIERS:
        return out
    median = float(np.median(finite))
    mad = float(np.median(np.abs(finite - median)))
    if mad <= 0.0:
        return out
    return (values - median) / (ROBUST_SD_PER_MAD * mad)


def find_outliers(
    frame: pd.DataFrame,
    columns: Sequence[tuple[str, str]] | None = None,
    *,
    threshold: float = OUTLIER_THRESHOLD,
) -> list[Outlier]:
    """The values of ``columns`` (default: :func:`key_columns`) more than ``threshold`` robust
    SDs from the run's median, largest first.

    Args:
        frame: a run's results table (``item_id`` and the columns).
        columns: (column, label) pairs to screen.
        threshold: in robust SDs (> 0).
    """
    if columns is None:
        columns = key_columns(frame)
    found = []
    for column, label in columns:
        if column not in frame.columns:
            continue
        values = _values(frame, column)
        z = robust_z(values)
        finite = values[np.isfinite(values)]
        median = float(np.median(finite)) if finite.size else math.nan
        for i in np.flatnonzero(np.abs(np.nan_to_num(z, nan=0.0)) > threshold):
            found.append(
                Outlier(
                    item_id=str(frame["item_id"].iloc[i]),
                    column=column,
                    label=label,
                    value=float(values[i]),
                    median=median,
                    robust_z=float(z[i]),
                )
            )
    found.sort(key=lambda o: (-abs(o.robust_z), o.item_id, o.column))
    return found


def kl_group(grade: float | None) -> str:
    """``"KL 2"`` for a grade 0..4, :data:`NO_KL` for none."""
    if grade is None or not math.isfinite(grade):
        return NO_KL
    return f"KL {round(grade)}"


def _groups(labels: Sequence[str], order: Sequence[str]) -> list[str]:
    present = set(labels)
    return [g for g in order if g in present]


def write_distribution_figure(
    frame: pd.DataFrame,
    column: str,
    label: str,
    kl_groups: Sequence[str],
    path: Path,
    *,
    outlier_items: frozenset[str] = frozenset(),
) -> DistributionFigure:
    """One PNG with two panels: the column's values by KL grade and by visit (box plots with
    every knee as a dot; outliers in red).

    Args:
        frame: the results table (``item_id``, ``visit`` and ``column``), one row per knee.
        column: the result column.
        label: its label with unit (the y axis).
        kl_groups: each row's KL group (:func:`kl_group`), aligned with ``frame``'s rows.
        path: the PNG to write (its folder exists).
        outlier_items: item ids drawn in red.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    values = _values(frame, column)
    finite = np.isfinite(values)
    items = [str(i) for i in frame["item_id"]]
    visits = [str(v) for v in frame["visit"]]
    kl_order = [f"KL {g}" for g in range(5)] + [NO_KL]
    panels = (
        ("by KL grade", list(kl_groups), _groups(list(kl_groups), kl_order)),
        ("by visit", visits, sorted(set(visits))),
    )
    fig = Figure(figsize=(7.6, 2.9), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    rng = np.random.default_rng(0)  # the same jitter on every report of the run
    for ax, (title, groups, order) in zip(axes, panels, strict=True):
        data = []
        for g in order:
            sel = [i for i, lab in enumerate(groups) if lab == g and finite[i]]
            data.append(values[sel])
        positions = np.arange(1, len(order) + 1)
        nonempty = [k for k, d in enumerate(data) if d.size]
        if nonempty:
            ax.boxplot(
                [data[k] for k in nonempty],
                positions=positions[nonempty],
                widths=0.55,
                showfliers=False,
                medianprops={"color": "#333333"},
            )
        for k, g in enumerate(order):
            sel = [i for i, lab in enumerate(groups) if lab == g and finite[i]]
            x = positions[k] + rng.uniform(-0.18, 0.18, len(sel))
            colours = ["#c0392b" if items[i] in outlier_items else "#4c72b0" for i in sel]
            ax.scatter(x, values[sel], s=10, c=colours, alpha=0.8, linewidths=0, zorder=3)
        ax.set_xticks(positions, [f"{g}\nn={len(d)}" for g, d in zip(order, data, strict=True)])
        ax.tick_params(axis="x", labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(title, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(label, fontsize=7)
    axes[0].yaxis.set_major_locator(MaxNLocator(5))
    fig.suptitle(label, fontsize=9)
    # fixed margins: tight_layout would draw the whole figure once more to measure it
    fig.subplots_adjust(left=0.1, right=0.98, top=0.82, bottom=0.2, wspace=0.06)
    fig.savefig(path, format="png")
    return DistributionFigure(column=column, label=label, path=path, knees=int(finite.sum()))


def write_distributions(
    frame: pd.DataFrame,
    kl: Mapping[tuple[str, str, str], float],
    folder: Path,
    *,
    outliers: Sequence[Outlier] = (),
) -> list[DistributionFigure]:
    """A :func:`write_distribution_figure` per :func:`key_columns` column into ``folder``
    (``dist_<column>.png``).

    Args:
        frame: the results table (``item_id``, ``subject``, ``visit``, ``side``, columns).
        kl: (subject, visit, side) -> the reader's KL grade (0..4); knees not in it are
            ``no KL``.
        folder: where the PNGs go (created).
        outliers: drawn in red (each in its own column's figure).
    """
    folder.mkdir(parents=True, exist_ok=True)
    groups = [
        kl_group(kl.get((str(s), str(v), str(d))))
        for s, v, d in zip(frame["subject"], frame["visit"], frame["side"], strict=True)
    ]
    figures = []
    for column, label in key_columns(frame):
        path = folder / f"dist_{column}.png"
        marked = frozenset(o.item_id for o in outliers if o.column == column)
        figures.append(
            write_distribution_figure(frame, column, label, groups, path, outlier_items=marked)
        )
    return figures
