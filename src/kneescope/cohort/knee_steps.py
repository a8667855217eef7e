"""The knee pipeline's steps: load an image or label map, segment it, measure biomarkers.

``segment`` loads its model in ``setup()`` - once per worker process - and writes each label
map atomically to the item's output folder; ``measure`` turns a label map into biomarker
columns. Pipelines: ``load_volume -> segment -> measure`` (images), or
``load_labels -> measure`` (existing segmentations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from kneescope.cohort.builtin_steps import BaseStep
from kneescope.cohort.item import Item
from kneescope.cohort.step import Scalar, StepContext, StepResult
from kneescope.errors import ConfigError, InputError
from kneescope.io.digest import file_sha256


def _read_volume(item: Item) -> Any:
    from kneescope.io import read_volume

    if item.path is None:
        raise InputError(f"item {item.item_id} has no input path; give one in the item list")
    return read_volume(Path(item.path))


class LoadVolume(BaseStep):
    """Read the item's image (NIfTI, MHA/NRRD or a DICOM series folder) into ``image``."""

    name = "load_volume"
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


class Segment(BaseStep):
    """Segment ``image`` with a kneescope model file into ``labels`` (uint8, input grid).

    Options:
        model: path of the model file written by ``kneescope train``.
        write_labels: write ``labels.nii.gz`` per item (atomically). Default true.
        any option of :class:`kneescope.inference.segmenter.SegmentConfig` (tta, cascade,
        device, precision, overlap, ...).
    """

    name = "segment"
    version = "1"
    reads: ClassVar[tuple[str, ...]] = ("image",)
    writes: ClassVar[tuple[str, ...]] = ("labels",)
    model_options: ClassVar[tuple[str, ...]] = ("model",)

    @classmethod
    def model_hash_for(cls, options: Mapping[str, Any]) -> str:
        """sha256 (16 hex) of the model file named by ``options["model"]``."""
        return _model_file_hash(Path(str(options.get("model", ""))).expanduser().absolute())

    def __init__(self, model: str, write_labels: bool = True, **options: Any) -> None:
        from kneescope.config import validate_config
        from kneescope.inference.segmenter import SegmentConfig

        self.model_path = Path(model).expanduser().absolute()
        self._model_hash = _model_file_hash(self.model_path)
        self.config = validate_config(SegmentConfig, options, "segment options")
        self.write_labels = write_labels
        self._segmenter: Any = None

    @property
    def model_hash(self) -> str:
        return self._model_hash

    def setup(self) -> None:
        from kneescope.inference.segmenter import Segmenter

        self._segmenter = Segmenter(self.model_path, self.config)

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.inference.output import write_labels

        if self._segmenter is None:
            self.setup()
        side = item.side if item.side in ("right", "left") else None
        result = self._segmenter.segment(context.data["image"], side=side)
        for source, phase in (
            ("prepare", "preprocess"),
            ("infer", "infer"),
            ("finish", "postprocess"),
        ):
            context.phase_s[phase] = context.phase_s.get(phase, 0.0) + result.seconds.get(
                source, 0.0
            )
        files: dict[str, str] = {}
        if self.write_labels:
            files["labels"] = context.write_output(
                "labels.nii.gz", lambda p: _write(write_labels, result.labels, p, result.side)
            )
            _label_companions(context, item, result.side, self._segmenter)
        counts = result.labels.array.reshape(-1)
        import numpy as np

        present = int(np.count_nonzero(np.bincount(counts)[1:]))
        return StepResult(
            data={"labels": result.labels},
            values={"labels_present": present, "segment_device": str(self._segmenter.device)},
            files=files,
        )


def _model_file_hash(path: Path) -> str:
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise ConfigError(
            f"segment: cannot read model {path} ({exc.strerror}); "
            "give the file written by `kneescope train`"
        ) from None
    return digest[:16]


def _write(writer: Any, volume: Any, path: Path, side: str | None) -> None:
    from kneescope.io.sidecar import describe

    writer(volume, path, description=describe(side))


def _label_companions(context: StepContext, item: Item, side: str | None, segmenter: Any) -> None:
    """Next to ``labels.nii.gz``: ``labels.ctbl`` (3D Slicer) and ``labels.itksnap.txt``
    (ITK-SNAP) colour tables naming every label, and ``labels.json`` (side, item, labels).
    Derived from the label map, they are not listed among the step's files (no columns in
    the results table)."""
    from kneescope.io.colour_table import itksnap_label_description, slicer_colour_table
    from kneescope.io.sidecar import sidecar_text

    spec = segmenter.model.spec
    names = {int(v): str(n) for v, n in spec.labels.items()}
    sidecar = sidecar_text(
        {
            "kind": "labels",
            "side": side,
            "item_id": item.item_id,
            "subject": item.subject or None,
            "visit": item.visit or None,
            "series": item.series or None,
            "source": item.path,
            "label_scheme": spec.label_scheme,
            "labels": {str(v): n for v, n in sorted(names.items())},
        }
    )
    texts = {
        "labels.ctbl": slicer_colour_table(names, title="labels"),
        "labels.itksnap.txt": itksnap_label_description(names),
        "labels.json": sidecar,
    }
    for name, text in texts.items():
        context.write_output(name, _text_writer(text))


def _text_writer(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8", newline="\n")

    return write


class Measure(BaseStep):
    """Biomarkers of ``labels`` (cartilage thickness, volumes, menisci, QC flags).

    Options:
        side: "auto" (the item's side when known, else the anatomy's), "right" or "left".
        any option of :class:`kneescope.biomarkers.measure_config.MeasureConfig`.
    """

    name = "measure"
    version = "1"
    reads: ClassVar[tuple[str, ...]] = ("labels",)

    def __init__(self, side: str = "auto", **options: Any) -> None:
        from kneescope.biomarkers.measure_config import MeasureConfig
        from kneescope.config import validate_config

        if side not in ("auto", "right", "left"):
            raise ConfigError(f"measure: side must be auto, right or left, got {side!r}")
        self.side = side
        self.config = validate_config(MeasureConfig, options, "measure options")

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.biomarkers import measure_knee

        side: Any = self.side
        if side == "auto" and item.side in ("right", "left"):
            side = item.side
        with context.phase("measure"):
            measured = measure_knee(context.data["labels"], side, self.config, with_maps=False)
        row = measured.as_row()
        values: dict[str, Scalar] = {"measured_side": row.pop("side")}
        for key, value in row.items():
            values[key] = value if isinstance(value, str | bool | int | float) else str(value)
        return StepResult(values=values)
