"""2D rasters of flattened surfaces: plate footprints, denuded bone and meniscal coverage.

Denuded subchondral bone is bone surface facing the joint, without cartilage over it, that lies
inside the plate's footprint: the convex hull of the covered interface (tibial plates, patella)
or the covered interface with its holes filled (femur, whose notch is a genuine gap). Bone
points are counted with their own area, so the raster only decides *where* the footprint is and
its pixel size does not enter the area.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.morphology import convex_hull_image

F64 = npt.NDArray[np.float64]


class Raster:
    """A 2D pixel grid covering given points with a one-pixel border.

    Attributes:
        x0, y0: mm of the lower-left pixel's lower-left corner.
        pixel_mm: pixel size.
        shape: (ny, nx).
    """

    def __init__(self, x: F64, y: F64, pixel_mm: float, pad_px: int = 3) -> None:
        self.pixel_mm = float(pixel_mm)
        self.x0 = float(x.min()) - pad_px * pixel_mm if len(x) else 0.0
        self.y0 = float(y.min()) - pad_px * pixel_mm if len(y) else 0.0
        nx = int(np.ceil((float(x.max()) - self.x0) / pixel_mm)) + pad_px + 1 if len(x) else 1
        ny = int(np.ceil((float(y.max()) - self.y0) / pixel_mm)) + pad_px + 1 if len(y) else 1
        self.shape = (ny, nx)

    def index(self, x: F64, y: F64) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(row, col) pixel of each point, clipped to the grid."""
        col = np.clip(((x - self.x0) / self.pixel_mm).astype(np.int64), 0, self.shape[1] - 1)
        row = np.clip(((y - self.y0) / self.pixel_mm).astype(np.int64), 0, self.shape[0] - 1)
        return row, col

    def mark(self, x: F64, y: F64) -> npt.NDArray[np.bool_]:
        """bool (ny, nx): pixels holding at least one point."""
        img = np.zeros(self.shape, bool)
        row, col = self.index(x, y)
        img[row, col] = True
        return img


def _closed(img: npt.NDArray[np.bool_], radius_px: int) -> npt.NDArray[np.bool_]:
    if radius_px <= 0:
        return img
    size = 2 * radius_px + 1
    yy, xx = np.mgrid[:size, :size] - radius_px
    disk = xx**2 + yy**2 <= radius_px**2
    padded = np.pad(img, radius_px + 1)
    out = ndimage.binary_closing(padded, structure=disk)
    return out[radius_px + 1 : -radius_px - 1, radius_px + 1 : -radius_px - 1]


def denuded_mask(
    x: F64,
    y: F64,
    covered: npt.NDArray[np.bool_],
    eligible: npt.NDArray[np.bool_],
    *,
    pixel_mm: float,
    convex: bool,
) -> npt.NDArray[np.bool_]:
    """Bone points that are denuded: eligible, not covered, inside the plate's footprint.

    Args:
        x, y: (N,) flattened coordinates (mm) of bone surface points.
        covered: (N,) bool, cartilage over the point.
        eligible: (N,) bool, the point faces the plate's joint space.
        pixel_mm: raster pixel size.
        convex: footprint = convex hull of the covered pixels (else holes filled).

    Returns:
        bool (N,).
    """
    out = np.zeros(len(x), bool)
    cov = covered & eligible
    if cov.sum() < 3:
        return out
    raster = Raster(x[cov], y[cov], pixel_mm)
    inside = x >= raster.x0
    inside &= x < raster.x0 + raster.shape[1] * pixel_mm
    inside &= y >= raster.y0
    inside &= y < raster.y0 + raster.shape[0] * pixel_mm
    covered_img = _closed(raster.mark(x[cov], y[cov]), 2)
    footprint: npt.NDArray[np.bool_] = (
        convex_hull_image(covered_img)  # type: ignore[no-untyped-call]
        if convex
        else ndimage.binary_fill_holes(covered_img)
    )
    # holes at least 3 pixels wide (slivers along the hull are raster noise) plus their
    # one-pixel rim (rim pixels are partly covered: the points themselves decide)
    holes = ndimage.binary_opening(footprint & ~covered_img, structure=np.ones((3, 3), bool))
    holes = ndimage.binary_dilation(holes) & footprint
    row, col = raster.index(x, y)
    candidate = eligible & ~covered & inside
    out[candidate] = holes[row[candidate], col[candidate]]
    return out


def covered_fraction(
    x: F64, y: F64, weights: F64, cover_x: F64, cover_y: F64, *, pixel_mm: float
) -> float:
    """Weighted fraction of points (x, y) whose pixel holds a covering point (closed by 2 px).

    Used for meniscal coverage: plate points weighted by projected area, covering points are
    meniscus voxel centres projected on the same plane.
    """
    if len(x) == 0 or float(weights.sum()) <= 0:
        return float("nan")
    if len(cover_x) == 0:
        return 0.0
    raster = Raster(np.concatenate([x, cover_x]), np.concatenate([y, cover_y]), pixel_mm)
    img = _closed(raster.mark(cover_x, cover_y), 2)
    row, col = raster.index(x, y)
    return float(np.sum(weights * img[row, col]) / np.sum(weights))
