"""Loader steps: read the item's image (``load_volume``) or label map (``load_labels``).

Both are pure I/O (``prefetchable``): a run reads the next items on a reader thread while
the current one computes. Pipelines: ``load_volume -> segment -> measure`` (images) or
``load_labels -> measure`` (existing segmentations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from kneescope.capabilities.loaders.results import (
    CAPABILITY,
    LOAD_LABELS_RESULTS,
    LOAD_VOLUME_RESULTS,
)
from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, StepContext, StepResult
from kneescope.errors import InputError


def _read_volume(item: Item) -> Any:
    from kneescope.io import read_volume

    if item.path is None:
        raise InputError(f"item {item.item_id} has no input path; give one in the item list")
    return read_volume(Path(item.path))


class LoadVolume(BaseStep):
    """Read the item's image (NIfTI, MHA/NRRD or a DICOM series folder) into ``image``."""

    name = "load_volume"
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = LOAD_VOLUME_RESULTS
    writes: ClassVar[tuple[str, ...]] = ("image",)
    prefetchable = True

    def run(self, item: Item, context: StepContext) -> StepResult:
        with context.phase("read"):
            image = _read_volume(item)
        spacing = image.spacing_mm
        return StepResult(
            data={"image": image},
            values={
                "image_shape": "x".join(map(str, image.array.shape)),
                "image_spacing_mm": "x".join(f"{s:.4g}" for s in spacing),
            },
        )


class LoadLabels(BaseStep):
    """Read the item's label map into ``labels`` (to measure existing segmentations).

    For a catalog item that is the label map attached to the series in the catalog (never
    the series' image); an item without one fails with the reason. For an item from a file
    list or pattern, the item's file is the label map.
    """

    name = "load_labels"
    version = "2"
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = LOAD_LABELS_RESULTS
    writes: ClassVar[tuple[str, ...]] = ("labels",)
    prefetchable = True

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.io import read_volume

        if item.from_catalog:
            if not item.labels_path:
                raise InputError(
                    f"series {item.item_id} ({item.path}) has no label map in the catalog; "
                    "attach one at ingest (a label_path column or a labels/ folder) or use "
                    "load_volume -> segment -> measure"
                )
            source = Path(item.labels_path)
        elif item.path is None:
            raise InputError(f"item {item.item_id} has no input path; give one in the item list")
        else:
            source = Path(item.path)
        with context.phase("read"):
            labels = read_volume(source)
        if labels.array.dtype.kind not in "biu":
            raise InputError(
                f"{source}: expected an integer label map, found {labels.array.dtype}; "
                "use load_volume for images"
            )
        return StepResult(data={"labels": labels}, values={"labels_path": str(source)})
