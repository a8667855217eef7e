"""2D cartilage thickness maps per plate, in one frame for right and left knees.

Each map averages (area-weighted) the thickness of the interface points falling in each
pixel of a fixed grid in the plate's flattened coordinates (see
:mod:`kneescope.biomarkers.flattening`): same extent and pixel for every knee, so maps of
different knees and visits overlay pixel by pixel. Rows run from posterior/inferior (row 0 at
the bottom when displayed) upwards; x grows laterally for both sides (left knees mirrored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kneescope.biomarkers.png import colourise, write_png
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

    def save(self, folder: Path, stem: str, vmax_mm: float = 5.0) -> tuple[Path, Path]:
        """Write ``<stem>_<plate>_thickness.npy`` and ``.png`` (0..vmax mm, NaN white).

        The PNG is flipped vertically so anterior/superior is up. Returns both paths.
        """
        folder.mkdir(parents=True, exist_ok=True)
        npy = folder / f"{stem}_{self.plate}_thickness.npy"
        png = folder / f"{stem}_{self.plate}_thickness.png"
        atomic_write(npy, lambda tmp: np.save(tmp, self.thickness_mm))
        write_png(png, colourise(self.thickness_mm[::-1], 0.0, vmax_mm, (255, 255, 255)))
        return npy, png


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
