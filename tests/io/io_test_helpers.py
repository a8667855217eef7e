"""Helpers for io tests: small volumes with oblique geometry and known content."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st

from kneescope.core import Volume, affine_from_axes


def rotation_from_quaternion(q: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """3x3 rotation matrix from a (not necessarily unit) quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


quaternions = st.tuples(*[st.floats(-1, 1) for _ in range(4)]).filter(
    lambda q: float(np.linalg.norm(q)) > 0.2
)
spacings = st.tuples(st.floats(0.2, 2.0), st.floats(0.2, 2.0), st.floats(0.3, 3.0))
origins = st.tuples(*[st.floats(-200, 200) for _ in range(3)])


def oblique_volume(
    q: tuple[float, ...],
    spacing_mm: tuple[float, float, float],
    origin_mm: tuple[float, float, float],
    *,
    mirrored: bool = False,
    shape: tuple[int, int, int] = (7, 6, 5),
    seed: int = 0,
) -> Volume:
    """A uint16 volume with random content on an oblique grid (left-handed when mirrored)."""
    affine = affine_from_axes(origin_mm, rotation_from_quaternion(q), spacing_mm)
    array = np.random.default_rng(seed).integers(0, 4096, shape).astype(np.uint16)
    volume = Volume(array, affine, {})
    return volume.mirrored_lr() if mirrored else volume


def canonical_series(volume: Volume) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """What a DICOM series read gives for ``volume``: k along +normal (det > 0)."""
    a = volume.affine_ras.copy()
    arr = volume.array
    if np.linalg.det(a[:3, :3]) < 0:
        n_k = arr.shape[2]
        a[:3, 3] = a[:3, 3] + a[:3, 2] * (n_k - 1)
        a[:3, 2] = -a[:3, 2]
        arr = arr[:, :, ::-1]
    return arr, a


def sitk_to_ras(image: object) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """(array[i, j, k], voxel->RAS affine) of a SimpleITK image (ITK is LPS, [k, j, i])."""
    import SimpleITK as sitk  # noqa: N813

    assert isinstance(image, sitk.Image)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.array(image.GetSpacing())[None, :]
    lps[:3, 3] = image.GetOrigin()
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), ras


def noisy_dess_like(
    shape: tuple[int, int, int], *, noise_fraction: float = 0.03, seed: int = 0
) -> npt.NDArray[np.uint16]:
    """Small DESS-like uint16 phantom: smooth tissue classes (marrow 250, muscle 450,
    cartilage 1200, fluid 2200) with Rician noise of sigma ``noise_fraction * 1200``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    signal = np.where(y**2 + (0.8 * z) ** 2 < 0.8, 450.0, 0.0).astype(np.float32)
    bone = ((x + 0.35) / 0.55) ** 2 + (y / 0.45) ** 2 + (z / 0.7) ** 2
    signal[(bone >= 1.0) & (bone < 1.15) & (signal > 0)] = 1200.0
    signal[bone < 1.0] = 250.0
    signal[((x - 0.3) / 0.1) ** 2 + (y / 0.3) ** 2 + (z / 0.4) ** 2 < 1.0] = 2200.0
    signal = gaussian_filter(signal, 0.8)
    sigma = noise_fraction * 1200.0
    real = signal + rng.normal(0, sigma, shape).astype(np.float32)
    imag = rng.normal(0, sigma, shape).astype(np.float32)
    return np.clip(np.rint(np.hypot(real, imag)), 0, 4095).astype(np.uint16)
