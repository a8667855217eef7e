"""2D cartilage thickness maps per plate, in one frame for right and left knees.

Each map averages (area-weighted) the thickness of the interface points falling in each
pixel of a fixed grid in the plate's flattened coordinates (see
:mod:`kneescope.biomarkers.flattening`): same extent and pixel for every knee, so maps of
different knees and visits overlay pixel by pixel. Rows run from posterior/inferior (row 0 at
the bottom when displayed) upwards; x grows laterally for both sides (left knees mirrored).

Figures of the maps (colour bar, mm scale, orientation labels, title) are drawn by
:mod:`kneescope.reports.thickness_figure` (matplotlib); this module stays numpy only. A run's
``measure`` step keeps each knee's maps in one ``thickness_maps.npz`` (:func:`save_maps`,
:func:`load_maps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kneescope.errors import InputError
from kneescope.io.atomic import atomic_write

F64 = npt.NDArray[np.float64]

MAP_EXTENTS_MM: dict[str, tuple[float, float, float, float]] = {
    # plate: (x_min, x_max, y_min, y_max) in flattened mm
    "femoral": (-50.0, 50.0, -90.0, 90.0),
    "medial_tibial": (-50.0, 50.0, -40.0, 40.0),
    "lateral_tibial": (-50.0, 50.0, -40.0, 40.0),
    "patellar": (-35.0, 35.0, -35.0, 35.0),
}


@dataclass(frozen=True)
class ThicknessMap:
    """A flattened thickness map.

    Attributes:
        plate: plate name.
        thickness_mm: float32 (ny, nx); NaN where no cartilage.
        extent_mm: (x_min, x_max, y_min, y_max) of the grid in flattened mm.
        pixel_mm: pixel size.
    """

    plate: str
    thickness_mm: npt.NDArray[np.float32]
    extent_mm: tuple[float, float, float, float]
    pixel_mm: float

    def save(self, folder: Path, stem: str) -> Path:
        """Write ``<stem>_<plate>_thickness.npy`` (the float32 map, row 0 posterior/inferior)
        into ``folder`` (created) atomically; returns its path."""
        folder.mkdir(parents=True, exist_ok=True)
        npy = folder / f"{stem}_{self.plate}_thickness.npy"
        atomic_write(npy, lambda tmp: np.save(tmp, self.thickness_mm))
        return npy


def save_maps(maps: dict[str, ThicknessMap], path: Path) -> None:
    """Write the maps of one knee into one compressed ``.npz`` at ``path`` (written to
    ``path`` as given: call it through an atomic writer). Per plate: ``<plate>`` (float32
    (ny, nx) mm, NaN where no cartilage), ``<plate>__extent_mm`` (4 floats) and
    ``<plate>__pixel_mm`` (1 float)."""
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    for plate, m in maps.items():
        arrays[plate] = m.thickness_mm.astype(np.float32)
        arrays[f"{plate}__extent_mm"] = np.asarray(m.extent_mm, dtype=np.float64)
        arrays[f"{plate}__pixel_mm"] = np.asarray([m.pixel_mm], dtype=np.float64)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]


def load_maps(path: Path) -> dict[str, ThicknessMap]:
    """The maps :func:`save_maps` wrote, by plate name (in the file's order).

    Raises:
        InputError: the file is missing, not an ``.npz`` of maps, or a map is malformed.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            names = [k for k in data.files if "__" not in k]
            out: dict[str, ThicknessMap] = {}
            for plate in names:
                values = np.asarray(data[plate], dtype=np.float32)
                extent = tuple(float(v) for v in data[f"{plate}__extent_mm"])
                pixel = float(data[f"{plate}__pixel_mm"][0])
                if values.ndim != 2 or len(extent) != 4 or not pixel > 0:
                    raise ValueError(f"map {plate!r} is malformed")
                out[plate] = ThicknessMap(plate, values, extent, pixel)  # type: ignore[arg-type]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(
            f"cannot read thickness maps {path} ({exc}); measure the knee again with maps"
        ) from None
    return out


def thickness_map(
    plate: str, x: F64, y: F64, thickness_mm: F64, weights: F64, pixel_mm: float
) -> ThicknessMap:
    """Rasterise covered interface points (flattened x, y in mm) into a :class:`ThicknessMap`."""
    x0, x1, y0, y1 = MAP_EXTENTS_MM[plate]
    nx = round((x1 - x0) / pixel_mm)
    ny = round((y1 - y0) / pixel_mm)
    col = np.floor((x - x0) / pixel_mm).astype(np.int64)
    row = np.floor((y - y0) / pixel_mm).astype(np.int64)
    ok = (col >= 0) & (col < nx) & (row >= 0) & (row < ny) & np.isfinite(thickness_mm)
    flat = row[ok] * nx + col[ok]
    wsum = np.bincount(flat, weights=weights[ok], minlength=nx * ny)
    tsum = np.bincount(flat, weights=weights[ok] * thickness_mm[ok], minlength=nx * ny)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(wsum > 0, tsum / np.where(wsum > 0, wsum, 1.0), np.nan)
    return ThicknessMap(
        plate, values.reshape(ny, nx).astype(np.float32), (x0, x1, y0, y1), pixel_mm
    )
