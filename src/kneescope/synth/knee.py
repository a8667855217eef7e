"""Render one synthetic knee MRI with its exact label map, tissue map and truth.

Entry point: :func:`render_knee`. Example::

    import numpy as np
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import SMALL, sample_knee_params

    rng = np.random.default_rng(0)
    sample = render_knee(sample_knee_params(rng, klg=2), SMALL)
    sample.image.array   # uint16 (48, 128, 128), DESS intensities (params.contrast)
    sample.labels.array  # uint8, kneescope labels 0..9 (kneescope.core.labels.KNEE_LABELS)
    sample.tissues.array  # uint8, tissue values 0..25 (kneescope.core.tissues.TISSUES)
    sample.truth.plates["medial_tibial"].thickness_mean_mm

Geometry: a sagittal stack whose array axes i, j, k point (before obliquity) to patient
Right, Inferior and Anterior (orientation ``RIA``), rotated by ``params.obliquity_deg`` about
the world x, y, z axes; the knee joint sits near the field-of-view centre. The right knee lies
at world x = +100 mm, the left at -100 mm (RAS); left knees are the mirror image of a right
knee with the same parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.core import Volume
from kneescope.core.tissues import CONTRASTS, tissue_label_lut
from kneescope.synth.anatomy import KneeShape
from kneescope.synth.params import KneeParams, SizeSpec
from kneescope.synth.render import N_LABELS, marrow_texture, render_slabs
from kneescope.synth.truth import KneeTruth, knee_truth
from kneescope.types import Affine

logger = logging.getLogger(__name__)

INTENSITY_SCALE = 1000.0
"""uint16 value of relative intensity 1.0 (fluid)."""

FOV_CENTRE_CANONICAL = (0.0, 0.0, 10.0)
"""Canonical point (mm) placed at the field-of-view centre (before ``offset_mm``)."""


@dataclass(frozen=True)
class KneeSample:
    """One rendered knee.

    Attributes:
        image: uint16 (I, J, K) image of ``params.contrast``, intensities ~0..1100 (relative
            signal 1.0 = 1000: DESS fluid).
        labels: uint8 (I, J, K) label map on the same grid (``KNEE_LABELS``).
        tissues: uint8 (I, J, K) tissue map on the same grid (``core.tissues`` values; the
            tissue with the largest fraction within the voxel's label, so
            ``tissue_label_lut()[tissues] == labels`` everywhere).
        truth: :class:`~kneescope.synth.truth.KneeTruth`.
        shape: the implicit anatomy (canonical-frame functions), for further truth queries.
        to_canonical: 4x4 float64, voxel index -> canonical knee frame (mm).
    """

    image: Volume
    labels: Volume
    tissues: Volume
    truth: KneeTruth
    shape: KneeShape
    to_canonical: npt.NDArray[np.float64]


def _rotation(deg: tuple[float, float, float]) -> npt.NDArray[np.float64]:
    a, b, c = np.deg2rad(deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def knee_centre_world(side: str) -> npt.NDArray[np.float64]:
    """RAS position (mm) of the canonical origin (plateau centre) of each knee."""
    return np.array([100.0 if side == "right" else -100.0, 20.0, -450.0])


def canonical_to_world(side: str) -> Affine:
    """4x4 canonical knee frame -> RAS world (mirrors x for a left knee)."""
    m = np.eye(4)
    if side == "left":
        m[0, 0] = -1.0
    m[:3, 3] = knee_centre_world(side)
    return m


def acquisition_affine(params: KneeParams, size: SizeSpec) -> Affine:
    """Voxel -> RAS affine of the oblique sagittal stack for ``params`` and ``size``."""
    base = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # i->R, j->I, k->A
    direction = _rotation(params.obliquity_deg) @ base
    spacing = np.asarray(size.spacing_mm)
    centre_canonical = np.asarray(FOV_CENTRE_CANONICAL) + np.asarray(params.offset_mm)
    c2w = canonical_to_world(params.side)
    centre_world = c2w[:3, :3] @ centre_canonical + c2w[:3, 3]
    half = (np.asarray(size.shape, dtype=np.float64) - 1.0) / 2.0
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing[None, :]
    affine[:3, 3] = centre_world - affine[:3, :3] @ half
    return affine


def _bias_field(
    shape: tuple[int, int, int], strength: float, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Smooth multiplicative field ``exp(sum of low-order separable cosines)``, float32."""
    coords = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    log_field = np.zeros(shape, dtype=np.float32)
    for _ in range(4):
        freq = rng.uniform(0.3, 1.2, size=3)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        amp = np.float32(rng.normal(0.0, strength / 2))
        terms = [
            np.cos(np.float32(f * np.pi) * c + np.float32(p))
            for f, p, c in zip(freq, phase, coords, strict=True)
        ]
        log_field += (
            amp * terms[0][:, None, None] * terms[1][None, :, None] * terms[2][None, None, :]
        )
    return np.exp(log_field).astype(np.float32)


def _pad_to(arr: npt.NDArray[np.int32], window: tuple[slice, ...]) -> npt.NDArray[np.int32]:
    """``arr[window]`` where the window may reach one voxel outside ``arr`` (zero padded)."""
    out = np.zeros(tuple(w.stop - w.start for w in window), dtype=arr.dtype)
    src = tuple(
        slice(max(w.start, 0), min(w.stop, n)) for w, n in zip(window, arr.shape, strict=True)
    )
    dst = tuple(
        slice(sr.start - w.start, sr.start - w.start + (sr.stop - sr.start))
        for sr, w in zip(src, window, strict=True)
    )
    out[dst] = arr[src]
    return out


def _one_component_per_label(labels: npt.NDArray[np.uint8]) -> int:
    """Relabel every fragment but the largest of each label to its most common neighbour.

    Returns the number of voxels changed.
    """
    changed = 0
    for _ in range(3):
        moved = 0
        for value, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is None or value >= N_LABELS:
                continue
            sub = labels[box]
            comp, n = ndimage.label(sub == value)
            if n <= 1:
                continue
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            keep = int(np.argmax(sizes))
            offset = [sl.start for sl in box]
            for idx, sl in enumerate(ndimage.find_objects(comp), start=1):
                if idx == keep or sl is None:
                    continue
                grown = tuple(
                    slice(max(s.start + o - 1, 0), min(s.stop + o + 1, dim))
                    for s, o, dim in zip(sl, offset, labels.shape, strict=True)
                )
                local = tuple(
                    slice(g.start - o, g.stop - o) for g, o in zip(grown, offset, strict=True)
                )
                frag = _pad_to(comp, local) == idx
                ring = ndimage.binary_dilation(frag) & ~frag
                neigh = labels[grown][ring]
                neigh = neigh[neigh != value]
                new = int(np.bincount(neigh).argmax()) if neigh.size else 0
                labels[grown][frag] = new
                moved += int(frag.sum())
        changed += moved
        if moved == 0:
            break
    return changed


_FALLBACK_TISSUE = np.array([0, 2, 9, 4, 10, 11, 6, 12, 13, 14], dtype=np.uint8)
"""Tissue given to a relabelled voxel of label v without a neighbour tissue of that label."""


def _match_tissues_to_labels(tissues: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8]) -> int:
    """Give every voxel whose tissue belongs to another label than its (relabelled) label the
    tissue of a face/edge/corner neighbour of that label (else a default tissue of the label);
    returns the number of voxels changed."""
    lut = tissue_label_lut()
    bad = np.argwhere(lut[tissues] != labels)
    if not len(bad):
        return 0
    want = labels[tuple(bad.T)]
    new = _FALLBACK_TISSUE[want]
    found = np.zeros(len(bad), dtype=bool)
    upper = np.asarray(labels.shape) - 1
    offsets = sorted(
        ((di, dj, dk) for di in (-1, 0, 1) for dj in (-1, 0, 1) for dk in (-1, 0, 1)),
        key=lambda o: (abs(o[0]) + abs(o[1]) + abs(o[2]), o),
    )[1:]
    for off in offsets:  # nearest neighbours first
        idx = np.clip(bad + np.asarray(off), 0, upper)
        t = tissues[tuple(idx.T)]
        ok = ~found & (lut[t] == want)
        new[ok] = t[ok]
        found |= ok
    tissues[tuple(bad.T)] = new
    return len(bad)


PHASE_ENCODE_AXIS = 2
"""Array axis of the phase-encode direction (k: anterior-posterior); motion ghosts repeat
along it. Readout runs along j (superior-inferior)."""


def kspace_filter(
    params: KneeParams, shape_jk: tuple[int, int]
) -> npt.NDArray[np.complex64] | None:
    """complex64 (J, K) factor on each slice's 2D k-space (``np.fft.fft2`` order) for the
    acquisition artefacts of ``params``; None when there are none.

    - ``gibbs`` = g: the outer fraction g of k-space along both in-plane axes is not
      acquired (zero-filled), so edges ring (Gibbs) as in a (1 - g) lower-resolution scan.
    - ``motion_ghosts`` = m: each phase-encode line (one k value along
      :data:`PHASE_ENCODE_AXIS`) gets a phase error: periodic motion (a sinusoid of amplitude
      m x pi/2 over a random period of 6-24 lines) plus random line-to-line jitter
      (std m x pi/8). Periodic errors make discrete ghosts of the knee displaced along the
      phase-encode direction, jitter a smear. Drawn from ``intensity_seed`` in a stream of
      its own (the noise and bias of a knee without artefacts are unchanged).
    """
    if params.gibbs <= 0.0 and params.motion_ghosts <= 0.0:
        return None
    n_pe = shape_jk[1]
    factor = np.ones(shape_jk, dtype=np.complex64)
    if params.gibbs > 0.0:
        keep = 1.0 - params.gibbs
        for axis, n in enumerate(shape_jk):
            freq = np.abs(np.fft.fftfreq(n))  # cycles per voxel, 0..0.5
            inside = (freq <= 0.5 * keep).astype(np.complex64)
            factor *= inside[:, None] if axis == 0 else inside[None, :]
    if params.motion_ghosts > 0.0:
        rng = np.random.default_rng([params.intensity_seed, 0x6057])
        line = np.arange(n_pe, dtype=np.float64)
        period = rng.uniform(6.0, 24.0)
        phase = params.motion_ghosts * (
            0.5 * np.pi * np.sin(2.0 * np.pi * line / period + rng.uniform(0.0, 2.0 * np.pi))
            + 0.125 * np.pi * rng.standard_normal(n_pe)
        )
        order = np.argsort(np.abs(np.fft.fftfreq(n_pe)), kind="stable")
        per_line = np.empty(n_pe)
        per_line[order] = phase  # acquired centre-out: the line index is the time
        per_line[0] = 0.0  # the k-space centre defines the reference position
        factor *= np.exp(1j * per_line).astype(np.complex64)[None, :]
    return factor


def texture_seed(params: KneeParams) -> int:
    """Seed of the marrow texture: fixed by the subject's anatomy (same at every visit)."""
    import hashlib

    anatomy = (params.scale, params.notch_width, params.distal_radius, params.patella_width)
    digest = hashlib.sha256(repr(anatomy).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def render_knee(params: KneeParams, size: SizeSpec) -> KneeSample:
    """Render ``params`` on the ``size`` grid: image, exact labels and truth.

    Deterministic: noise and bias come from ``params.intensity_seed``.

    Returns:
        :class:`KneeSample` with a uint16 image and a uint8 label map of shape
        ``size.shape`` sharing one oblique affine.
    """
    shape = KneeShape.from_params(params)
    affine = acquisition_affine(params, size)
    to_canonical = np.linalg.inv(canonical_to_world(params.side)) @ affine
    grid = size.shape
    labels = np.empty(grid, dtype=np.uint8)
    tissues = np.empty(grid, dtype=np.uint8)
    image = np.empty(grid, dtype=np.float32)
    vol_sum = np.zeros(N_LABELS, dtype=np.float64)
    texture = marrow_texture(texture_seed(params))
    table = CONTRASTS[params.contrast]
    for slab in render_slabs(shape, grid, size.spacing_mm, to_canonical, texture, table):
        n = slab.image.shape[0]
        labels[slab.i0 : slab.i0 + n] = slab.labels
        tissues[slab.i0 : slab.i0 + n] = slab.tissues
        image[slab.i0 : slab.i0 + n] = slab.image
        vol_sum += slab.fractions.reshape(N_LABELS, -1).sum(axis=1, dtype=np.float64)
    fixed = _one_component_per_label(labels)
    matched = _match_tissues_to_labels(tissues, labels) if fixed else 0
    logger.debug("relabelled %d fragment voxels (%d tissue voxels)", fixed, matched)
    voxel_mm3 = float(np.prod(size.spacing_mm))
    label_volumes = {v: float(vol_sum[v] * voxel_mm3) for v in range(1, N_LABELS)}

    rng = np.random.default_rng(params.intensity_seed)
    image *= _bias_field(grid, params.bias_strength, rng)
    kspace = kspace_filter(params, grid[1:])
    sigma = np.float32(params.noise_sigma * 0.62)
    for i0 in range(0, grid[0], 16):
        block = image[i0 : i0 + 16]
        n1 = rng.standard_normal(block.shape, dtype=np.float32) * sigma
        n2 = rng.standard_normal(block.shape, dtype=np.float32) * sigma
        if kspace is None:
            block[...] = np.sqrt((block + n1) ** 2 + n2**2)
        else:  # acquisition artefacts act on the complex signal, before the noise
            signal = np.fft.ifft2(np.fft.fft2(block) * kspace).astype(np.complex64)
            block[...] = np.sqrt((signal.real + n1) ** 2 + (signal.imag + n2) ** 2)
    pixels = np.clip(np.rint(image * np.float32(INTENSITY_SCALE)), 0, 65535).astype(np.uint16)

    meta = {
        "side": params.side,
        "size": size.name,
        "synthetic": True,
        "contrast": params.contrast,
    }
    truth = knee_truth(shape, label_volumes, visible_threshold_mm=0.5 * max(size.spacing_mm))
    return KneeSample(
        image=Volume(pixels, affine, meta),
        labels=Volume(labels, affine.copy(), meta),
        tissues=Volume(tissues, affine.copy(), meta),
        truth=truth,
        shape=shape,
        to_canonical=to_canonical,
    )
