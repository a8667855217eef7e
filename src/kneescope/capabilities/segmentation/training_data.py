"""Segmentation training data: image/label pairs found (folder or catalog), split, and
prepared in memory (reoriented, resampled, remapped, normalised)."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
from kneescope.core import KNEE_LABELS, LabelScheme, Volume
from kneescope.core.labels import KNEESCOPE_TO_OAI_ZIB, OAI_ZIB_LABELS
from kneescope.core.tissues import N_TISSUES
from kneescope.errors import InputError
from kneescope.transforms.intensity import NormalisationConfig, intensity_stats
from kneescope.transforms.orientation import mirror_to_right, plan_reorientation
from kneescope.transforms.resample import plan_resampling
from kneescope.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """One prepared training case.

    Attributes:
        name: identifier (file stem or catalog id).
        image: float32 (I, J, K), normalised, on the working grid.
        labels: uint8 (I, J, K), training label values.
        mirrored: the arrays were mirrored onto right-knee anatomy (a left knee).
        tissues: uint8 (I, J, K) tissue map (``kneescope.core.tissues`` values) prepared like
            the labels, for domain randomisation; ``None`` when not used.
    """

    name: str
    image: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    mirrored: bool = False
    tissues: npt.NDArray[np.uint8] | None = None


def scheme_for(name: str) -> LabelScheme:
    return OAI_ZIB_LABELS if name == "oai-zib" else KNEE_LABELS


def remap_table(scheme: str, label_remap: Mapping[int, int] | None) -> dict[int, int] | None:
    """The source->training label table (``None``: identity)."""
    if label_remap is not None:
        return dict(label_remap)
    if scheme == "oai-zib":
        return dict(KNEESCOPE_TO_OAI_ZIB)
    return None


def apply_remap(
    labels: npt.NDArray[np.integer], table: Mapping[int, int] | None, classes: int
) -> npt.NDArray[np.uint8]:
    """Remap label values with ``table`` (unlisted -> 0) and check they fit ``classes``."""
    arr = np.asarray(labels)
    if table is not None:
        top = max(int(arr.max()), *table.keys()) + 1
        lut = np.zeros(top, dtype=np.uint8)
        for src, dst in table.items():
            lut[src] = dst
        arr = lut[arr.astype(np.int64)]
    if int(arr.max()) >= classes or int(arr.min()) < 0:
        raise InputError(
            f"label values {int(arr.min())}..{int(arr.max())} do not fit {classes} classes; "
            "set label_remap in the training config"
        )
    return arr.astype(np.uint8)


def pairs_in_folder(folder: Path) -> list[tuple[Path, Path]]:
    """Image/label NIfTI pairs of a folder: ``images/X.nii[.gz]`` with ``labels/X.nii[.gz]``."""
    images, labels = folder / "images", folder / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise InputError(f"{folder}: expected sub-folders images/ and labels/ with NIfTI pairs")
    pairs = []
    for img in sorted(images.iterdir()):
        if not img.name.endswith((".nii", ".nii.gz")):
            continue
        lab = labels / img.name
        if not lab.exists():
            raise InputError(f"{img} has no label map {lab}; add it or remove the image")
        pairs.append((img, lab))
    if not pairs:
        raise InputError(f"{images}: no .nii or .nii.gz images found")
    return pairs


def sides_in_folder(folder: Path) -> dict[str, str]:
    """Knee sides of a pair folder from ``folder/sides.csv`` (columns ``name,side``; side is
    right/left/R/L/1/2); an empty dict when the file does not exist."""
    import csv

    from kneescope.catalog.naming import side_from_text

    path = folder / "sides.csv"
    if not path.exists():
        return {}
    from kneescope.io.guards import require_regular_file

    require_regular_file(path, what="sides table")  # a FIFO would block for ever
    sides: dict[str, str] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"name", "side"} <= set(reader.fieldnames):
            raise InputError(f"{path}: needs a header with columns name,side")
        for n, row in enumerate(reader, start=2):
            side = side_from_text(row["side"])
            if side is None:
                raise InputError(
                    f"{path} line {n}: side {row['side']!r} is not right/left (R/L, 1/2)"
                )
            sides[row["name"].strip()] = side
    return sides


def common_orientation(volumes: Sequence[Volume]) -> str:
    return Counter(v.orientation for v in volumes).most_common(1)[0][0]


def median_spacing(volumes: Sequence[Volume], orientation: str) -> tuple[float, float, float]:
    rows = []
    for v in volumes:
        reo = plan_reorientation(v.affine_ras, v.shape, orientation)
        rows.append([v.spacing_mm[q] for q in reo.permutation])
    med = np.median(np.asarray(rows), axis=0)
    return (float(med[0]), float(med[1]), float(med[2]))


def prepare_case(
    name: str,
    image: Volume,
    labels: Volume,
    *,
    orientation: str,
    spacing_mm: Sequence[float],
    normalisation: NormalisationConfig,
    table: Mapping[int, int] | None,
    classes: int,
    side: str | None = None,
    side_canonical: bool = False,
    tissues: Volume | None = None,
) -> Case:
    """Reorient, resample (image linear, labels nearest), remap and normalise one pair.

    With ``side_canonical`` a left knee (``side == "left"``) is also mirrored along the
    left-right axis, so every case shows right-knee anatomy. A tissue map (domain
    randomisation) is prepared exactly like the labels (nearest), without a remap.
    """
    if image.shape != labels.shape:
        raise InputError(
            f"{name}: image shape {image.shape} and label shape {labels.shape} differ; "
            "the label map must be on the image grid"
        )
    tissue_values = None if tissues is None else tissue_map_values(name, tissues, image.shape)
    reo = plan_reorientation(image.affine_ras, image.shape, orientation)
    mirror_side = side if side_canonical else None
    img = mirror_to_right(reo.apply(image.array), orientation, mirror_side)
    lab = mirror_to_right(reo.apply(labels.array), orientation, mirror_side)
    spacing = [image.spacing_mm[q] for q in reo.permutation]
    grid = plan_resampling(img.shape, spacing, spacing_mm)
    img_t = grid.image_to_target(img)
    lab_t = grid.labels_to_target(np.ascontiguousarray(lab))
    stats = intensity_stats(img_t, normalisation)
    tis_t = None
    if tissue_values is not None:
        tis = mirror_to_right(reo.apply(tissue_values), orientation, mirror_side)
        tis_t = np.ascontiguousarray(grid.labels_to_target(np.ascontiguousarray(tis)))
        tis_t = tis_t.astype(np.uint8, copy=False)
    return Case(
        name=name,
        image=np.ascontiguousarray(stats.apply_numpy(img_t)),
        labels=apply_remap(np.ascontiguousarray(lab_t), table, classes),
        mirrored=mirror_side == "left",
        tissues=tis_t,
    )


def tissue_map_values(name: str, tissues: Volume, shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    """The uint8 values of a tissue map, which must be on the image grid and hold
    ``kneescope.core.tissues`` values (whole numbers 0..N_TISSUES-1, any numeric dtype)."""
    if tissues.shape != shape:
        raise InputError(
            f"{name}: tissue map shape {tissues.shape} and image shape {shape} differ; "
            "the tissue map must be on the image grid"
        )
    arr = np.asarray(tissues.array)
    integer = np.issubdtype(arr.dtype, np.integer)
    ok = integer or (np.issubdtype(arr.dtype, np.floating) and bool(np.isfinite(arr).all()))
    if ok and arr.size:
        ok = float(arr.min()) >= 0 and float(arr.max()) <= N_TISSUES - 1
        ok = ok and (integer or bool(np.all(arr == np.rint(arr))))
    if not ok:
        raise InputError(
            f"{name}: tissue map values must be integers 0..{N_TISSUES - 1} "
            "(kneescope.core.tissues); write it from render_knee(...).tissues"
        )
    return arr.astype(np.uint8, copy=False)


def fingerprint(cases: Sequence[Case]) -> str:
    """A 16-hex-digit hash of case names, shapes, per-class voxel counts and mirroring."""
    h = hashlib.sha256()
    for c in cases:
        counts = np.bincount(c.labels.reshape(-1), minlength=1)
        mirrored = ":mirrored" if c.mirrored else ""
        h.update(f"{c.name}:{c.image.shape}:{counts.tolist()}{mirrored};".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Pair:
    """One training pair: a name, an image path, a label-map path, the knee's side and
    (domain randomisation) a tissue-map path."""

    name: str
    image: Path
    labels: Path
    side: str | None = None
    tissues: Path | None = None


def find_pairs(config: SegmentationTrainConfig, workspace: Workspace, base_dir: Path) -> list[Pair]:
    """Pairs from ``config.data_dir`` (relative to ``base_dir``: a folder of pairs or an
    nnU-Net v2 raw dataset, see :mod:`.nnunet_data`) if set, else from the workspace
    catalog."""
    from kneescope.capabilities.segmentation.nnunet_data import (
        dataset_folder,
        read_training_dataset,
    )

    nnunet = dataset_folder(config, base_dir)
    if nnunet is not None:
        dataset = read_training_dataset(nnunet, config)
        sides = sides_in_folder(nnunet)
        return [
            Pair(
                name=case.case_id,
                image=case.images[0],
                labels=case.label,
                side=dataset.case_info(case.case_id).get("side") or sides.get(case.case_id),
            )
            for case in dataset.cases
        ]
    if config.data_dir is not None:
        folder = config.data_dir
        if not folder.is_absolute():
            folder = base_dir / folder
        sides = sides_in_folder(folder)
        with_tissues = config.domain_randomisation is not None
        return [
            Pair(
                name=_stem(img),
                image=img,
                labels=lab,
                side=sides.get(_stem(img)),
                tissues=tissue_map_for(folder, img) if with_tissues else None,
            )
            for img, lab in pairs_in_folder(folder)
        ]
    if config.domain_randomisation is not None:
        raise InputError(
            "domain_randomisation needs data_dir: a folder with images/, labels/ and tissues/"
        )
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.queries import SeriesFilter, list_series

    catalog = Catalog.for_workspace(workspace, create=False)
    try:
        records = list_series(catalog, SeriesFilter(status="ok"))
    finally:
        catalog.close()
    pairs = [
        Pair(
            name=f"series-{r.id}",
            image=Path(r.path),
            labels=Path(r.label_paths[0]),
            side=r.side if r.side in ("right", "left") else None,
        )
        for r in records
        if r.label_paths
    ]
    if not pairs:
        raise InputError(
            "the catalog holds no series with a label map; ingest labels or set data_dir "
            "to a folder of NIfTI pairs"
        )
    return pairs


def tissue_map_for(folder: Path, image: Path) -> Path:
    """``folder/tissues/<image file name>``; ``InputError`` when it does not exist."""
    path = folder / "tissues" / image.name
    if not path.is_file():
        raise InputError(
            f"{image} has no tissue map {path} (domain_randomisation needs one per image); "
            "render the data with tissue maps or set domain_randomisation off"
        )
    return path


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def split_pairs(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Deterministic train/validation split (at least one validation pair if fraction > 0)."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = 0 if val_fraction <= 0 else max(1, round(len(pairs) * val_fraction))
    if n_val >= len(pairs):
        n_val = len(pairs) - 1
    val = [pairs[i] for i in sorted(order[:n_val])]
    tr = [pairs[i] for i in sorted(order[n_val:])]
    return tr, val


def resolve_side_canonical(config: SegmentationTrainConfig, sides: list[str | None]) -> bool:
    """Whether left knees are mirrored: the config's choice, or (``None``) whether every
    case's side is known. Raises ``InputError`` when asked for but a side is missing."""
    known = all(s in ("right", "left") for s in sides)
    if config.side_canonical is None:
        if not known:
            log.warning(
                "some training cases have no known side: left knees are not mirrored, so "
                "medial and lateral structures are told apart by shape alone"
            )
        return known
    if config.side_canonical and not known:
        raise InputError(
            f"side_canonical needs every case's side; {sides.count(None)} of {len(sides)} have "
            "none: add data_dir/sides.csv (columns name,side) or set side_canonical = false"
        )
    return config.side_canonical


def load_cases(
    pairs: list[Pair], config: SegmentationTrainConfig, *, side_canonical: bool = False
) -> tuple[list[Case], tuple[float, float, float], str]:
    """Read and prepare every pair; returns the cases, the working spacing and orientation."""
    from kneescope.io import read_volume

    volumes = [(p, read_volume(p.image), read_volume(p.labels)) for p in pairs]
    tissues = [None if p.tissues is None else read_volume(p.tissues) for p in pairs]
    images = [v[1] for v in volumes]
    orientation = config.orientation or common_orientation(images)
    spacing = config.spacing_mm or median_spacing(images, orientation)
    classes = len(scheme_for(config.labels).labels) + 1
    table = remap_table(config.labels, config.label_remap)
    cases = [
        prepare_case(
            p.name,
            img,
            lab,
            orientation=orientation,
            spacing_mm=spacing,
            normalisation=config.normalisation,
            table=table,
            classes=classes,
            side=p.side,
            side_canonical=side_canonical,
            tissues=tis,
        )
        for (p, img, lab), tis in zip(volumes, tissues, strict=True)
    ]
    return cases, spacing, orientation
