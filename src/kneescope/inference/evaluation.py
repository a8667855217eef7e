"""Accuracy of a predicted label map against the truth, and the lock of an evaluation set.

Metrics of one knee (``benchmarks/evaluate_segmentation.py`` runs them over a locked set):

- :func:`dice_per_label`: Dice overlap per structure.
- :func:`hd95_per_label`: the 95th-percentile symmetric surface distance (mm) per structure,
  MONAI's ``compute_hausdorff_distance(percentile=95, directed=False)``: the larger of the two
  directed 95th percentiles of the distances from the edge voxels of one mask to the nearest
  edge voxel of the other, with the grid's voxel spacing.
- :func:`thickness_errors`: measured minus true mean cartilage thickness per plate (the
  measurement itself comes from ``kneescope.biomarkers.measure_knee`` on the predicted map,
  done by the caller: biomarkers and inference are independent layers).
- :func:`summarise`: mean and worst knee of each of them over a set.

Conventions for structures that are missing: absent from both maps -> not scored (NaN);
absent from one of them -> Dice 0 and HD95 ``inf`` (counted as ``missing`` in the summary; the
HD95 mean is taken over the knees where both maps have the structure, the worst is ``inf``).

Locked sets (:func:`write_set_manifest`, :func:`verify_set_manifest`): ``manifest.json`` in
the set's folder lists the SHA-256 of every other file and one ``set_sha256`` over that list
(the value docs/benchmarks.md records); verification refuses a set whose files changed, went
missing or were added.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.core.labels import KNEE_LABELS
from kneescope.errors import InputError, NotFoundError
from kneescope.io.atomic import atomic_write_text
from kneescope.io.digest import file_sha256

STRUCTURES: Mapping[int, str] = dict(KNEE_LABELS.labels)
"""Label value -> structure name of the 9 scored structures."""

MANIFEST_NAME = "manifest.json"
HD_PERCENTILE = 95.0


def dice_per_label(
    pred: npt.NDArray[np.integer[Any]],
    truth: npt.NDArray[np.integer[Any]],
    labels: Iterable[int] = tuple(STRUCTURES),
) -> dict[int, float]:
    """Dice ``2|P & T| / (|P| + |T|)`` of each label value.

    Args:
        pred: integer label map (any shape).
        truth: integer label map of the same shape.
        labels: the label values to score.

    Returns:
        label value -> Dice in [0, 1]; NaN where the label is in neither map.
    """
    _same_shape(pred, truth)
    out: dict[int, float] = {}
    for value in labels:
        p, t = pred == value, truth == value
        denom = int(p.sum()) + int(t.sum())
        out[value] = math.nan if denom == 0 else 2.0 * int((p & t).sum()) / denom
    return out


def hd95_per_label(
    pred: npt.NDArray[np.integer[Any]],
    truth: npt.NDArray[np.integer[Any]],
    spacing_mm: Sequence[float],
    labels: Iterable[int] = tuple(STRUCTURES),
    percentile: float = HD_PERCENTILE,
) -> dict[int, float]:
    """95th-percentile symmetric surface distance (mm) of each label value (MONAI).

    Each structure is cropped to the bounding box of both masks plus a 2-voxel margin before
    the distance transforms (the distances between the two surfaces are the same; the whole
    160x384x384 grid would cost seconds per structure).

    Args:
        pred: integer (I, J, K) label map.
        truth: integer (I, J, K) label map on the same grid.
        spacing_mm: voxel spacing along i, j, k (mm); the grid axes must be orthogonal (true
            of every scanner grid, oblique or not).
        labels: the label values to score.
        percentile: the distance percentile (95: HD95; 100: the Hausdorff distance).

    Returns:
        label value -> distance in mm; NaN where the label is in neither map, ``inf`` where
        it is in one only.
    """
    from monai.metrics.hausdorff_distance import compute_hausdorff_distance

    _same_shape(pred, truth)
    if pred.ndim != len(spacing_mm):
        raise InputError(f"spacing {tuple(spacing_mm)} does not match a {pred.ndim}D label map")
    out: dict[int, float] = {}
    for value in labels:
        p, t = pred == value, truth == value
        has_p, has_t = bool(p.any()), bool(t.any())
        if not (has_p or has_t):
            out[value] = math.nan
            continue
        if not (has_p and has_t):
            out[value] = math.inf
            continue
        box = _union_box(p, t, margin=2)
        both = np.stack([p[box], t[box]])[:, None]  # (2, 1, ...): prediction, truth
        with warnings.catch_warnings():  # MONAI warns about its own deprecated internals
            warnings.simplefilter("ignore", FutureWarning)
            hd = compute_hausdorff_distance(
                both[:1],
                both[1:],
                include_background=True,
                percentile=percentile,
                directed=False,
                spacing=[float(s) for s in spacing_mm],
            )
        out[value] = float(hd.reshape(-1)[0])
    return out


def thickness_errors(
    measured: Mapping[str, float], truth: Mapping[str, float], plates: Iterable[str]
) -> dict[str, float]:
    """Measured minus true mean thickness (mm) of each plate.

    Args:
        measured: ``measure_knee(...).values`` of the predicted label map (keys
            ``<plate>_cartilage_thickness_mean_mm``).
        truth: plate -> true mean thickness (mm).
        plates: the plates to score.

    Returns:
        plate -> signed error in mm; NaN where the plate could not be measured.
    """
    out: dict[str, float] = {}
    for plate in plates:
        value = float(measured.get(f"{plate}_cartilage_thickness_mean_mm", math.nan))
        out[plate] = value - float(truth[plate])
    return out


def summarise(per_knee: Sequence[Mapping[str, float]], *, kind: str) -> dict[str, dict[str, Any]]:
    """Mean and worst knee of one metric per structure (or plate) over a set.

    Args:
        per_knee: one mapping structure -> value per knee.
        kind: ``"dice"`` (worst = lowest; 0 = missing), ``"hd95"`` (worst = highest;
            ``inf`` = missing; the mean is over the knees where both maps have the
            structure) or ``"error"`` (signed thickness error: ``mean`` of |error|, ``bias``
            = mean signed error, worst = largest |error|; NaN = not measured).

    Returns:
        structure -> ``{"mean", "worst", "worst_knee", "n", "missing"}`` (``bias`` too for
        errors). ``n``: knees scored (NaN = not scored is left out, except that an
        unmeasured plate counts as ``missing``); ``worst_knee``: index into ``per_knee``
        (-1 when no knee was scored).
    """
    if kind not in ("dice", "hd95", "error"):
        raise ValueError(f"unknown metric kind {kind!r}")
    names: dict[str, None] = {}
    for row in per_knee:
        names.update(dict.fromkeys(row))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        vals = np.array([float(row.get(name, math.nan)) for row in per_knee], dtype=np.float64)
        scored = ~np.isnan(vals)
        if kind == "dice":
            badness, averaged, missing = -vals, vals, int((vals == 0.0).sum())
        elif kind == "hd95":
            badness, averaged, missing = vals, vals, int(np.isinf(vals).sum())
        else:
            badness, averaged, missing = np.abs(vals), np.abs(vals), int((~scored).sum())
        usable = scored & np.isfinite(averaged)
        worst = int(np.argmax(np.where(scored, badness, -np.inf))) if scored.any() else -1
        entry: dict[str, Any] = {
            "mean": float(averaged[usable].mean()) if usable.any() else math.nan,
            "worst": float(averaged[worst]) if worst >= 0 else math.nan,
            "worst_knee": worst,
            "n": int(scored.sum()),
            "missing": missing,
        }
        if kind == "error":
            entry["bias"] = float(vals[scored].mean()) if scored.any() else math.nan
        out[name] = entry
    return out


# --- locked sets ------------------------------------------------------------------------------


def set_file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except the manifest, by POSIX relative path."""
    folder = Path(folder)
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST_NAME:
            continue
        if path.is_symlink() or not path.is_file():
            raise InputError(f"{path}: not a regular file; an evaluation set holds only files")
        out[rel] = file_sha256(path)
    return out


def set_digest(files: Mapping[str, str]) -> str:
    """One SHA-256 over the sorted ``"<sha256>  <path>\\n"`` lines of a set's files."""
    lines = "".join(f"{files[rel]}  {rel}\n" for rel in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def write_set_manifest(folder: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """Hash every file of ``folder`` and write ``folder/manifest.json`` (atomically).

    Args:
        folder: the finished set.
        info: what describes the set (name, seeds, grid, generator version, ...), stored
            under ``"set"``.

    Returns:
        The manifest: ``{"set": info, "files": {path: sha256}, "set_sha256": ...}``.
    """
    files = set_file_hashes(folder)
    manifest = {"set": dict(info), "files": files, "set_sha256": set_digest(files)}
    atomic_write_text(Path(folder) / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
    return manifest


def verify_set_manifest(folder: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Check every file of an evaluation set against its manifest.

    Args:
        folder: the set's folder (with ``manifest.json``).
        expected_sha256: the ``set_sha256`` recorded elsewhere (docs), when known.

    Returns:
        The manifest.

    Raises:
        NotFoundError: no such folder or no manifest in it.
        InputError: a file changed, went missing or was added; the manifest's own digest
            does not match its file list; or the digest is not ``expected_sha256``.
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise NotFoundError(
            f"{path} not found; an evaluation set is made by benchmarks/model_test_sets.py make"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        listed = {str(k): str(v) for k, v in manifest["files"].items()}
        recorded = str(manifest["set_sha256"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path} is not a set manifest ({exc}); remake the set") from None
    if set_digest(listed) != recorded:
        raise InputError(f"{path}: its file list does not give its set_sha256; it was edited")
    if expected_sha256 is not None and recorded != expected_sha256:
        raise InputError(
            f"{folder}: set_sha256 {recorded[:12]}... is not the expected "
            f"{expected_sha256[:12]}...; this is another set (or another version of it)"
        )
    found = set_file_hashes(folder)
    changed = sorted(rel for rel in listed.keys() & found.keys() if listed[rel] != found[rel])
    missing = sorted(listed.keys() - found.keys())
    added = sorted(found.keys() - listed.keys())
    problems = [
        f"{what} {len(names)} file(s) ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        for what, names in (("changed", changed), ("missing", missing), ("added", added))
        if names
    ]
    if problems:
        raise InputError(
            f"{folder} is not the set its manifest locks: {'; '.join(problems)}; "
            "use an untouched copy of the set"
        )
    return dict(manifest)


def _same_shape(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> None:
    if a.shape != b.shape:
        raise InputError(f"label maps differ in shape: {a.shape} vs {b.shape}")


def _union_box(
    a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_], margin: int
) -> tuple[slice, ...]:
    found = ndimage.find_objects((a | b).astype(np.uint8))[0]
    assert found is not None  # callers pass at least one voxel
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n))
        for s, n in zip(found, a.shape, strict=True)
    )
