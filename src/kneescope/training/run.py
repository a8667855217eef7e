"""``kneescope train`` as a library call: find pairs, prepare cases, split, train, save.

Sources of image/label pairs: a folder of NIfTI pairs (``config.data_dir``) or the catalog's
series that have a label map attached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kneescope.errors import InputError
from kneescope.training.config import TrainConfig
from kneescope.training.data import (
    Case,
    common_orientation,
    median_spacing,
    pairs_in_folder,
    prepare_case,
    remap_table,
    scheme_for,
    sides_in_folder,
)
from kneescope.training.loop import ProgressCallback, TrainResult, train
from kneescope.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One training pair: a name, an image path, a label-map path and the knee's side."""

    name: str
    image: Path
    labels: Path
    side: str | None = None


def find_pairs(config: TrainConfig, workspace: Workspace) -> list[Pair]:
    """Pairs from ``config.data_dir`` if set, else from the workspace catalog."""
    if config.data_dir is not None:
        folder = config.data_dir
        if not folder.is_absolute():
            folder = workspace.root / folder
        sides = sides_in_folder(folder)
        return [
            Pair(name=_stem(img), image=img, labels=lab, side=sides.get(_stem(img)))
            for img, lab in pairs_in_folder(folder)
        ]
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


def resolve_side_canonical(config: TrainConfig, sides: list[str | None]) -> bool:
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
    pairs: list[Pair], config: TrainConfig, *, side_canonical: bool = False
) -> tuple[list[Case], tuple[float, float, float], str]:
    """Read and prepare every pair; returns the cases, the working spacing and orientation."""
    from kneescope.io import read_volume

    volumes = [(p, read_volume(p.image), read_volume(p.labels)) for p in pairs]
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
        )
        for p, img, lab in volumes
    ]
    return cases, spacing, orientation


def run_training(
    config: TrainConfig,
    workspace: Workspace,
    *,
    progress: ProgressCallback | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train per ``config`` in ``workspace``; the model goes to ``WS/models/<name>.pt``."""
    pairs = find_pairs(config, workspace)
    tr, val = split_pairs(pairs, config.val_fraction, config.seed)
    log.info("training on %d pairs, validating on %d", len(tr), len(val))
    canonical = resolve_side_canonical(config, [p.side for p in [*tr, *val]])
    cases, spacing, orientation = load_cases([*tr, *val], config, side_canonical=canonical)
    train_cases, val_cases = cases[: len(tr)], cases[len(tr) :]
    return train(
        config,
        train_cases,
        val_cases,
        spacing_mm=spacing,
        orientation=orientation,
        side_canonical=canonical,
        run_dir=workspace.runs_dir / f"train-{config.name}",
        model_path=workspace.models_dir / f"{config.name}.pt",
        progress=progress,
        stop_after=stop_after,
    )
