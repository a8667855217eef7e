"""The ``segment`` step: a kneescope segmentation model file applied to each item's image.

The model is loaded in ``setup()`` - once per worker process - and each label map is written
atomically to the item's output folder with its colour tables and sidecar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from kneescope.capabilities.segmentation.results import CAPABILITY, SEGMENT_RESULTS
from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, StepContext, StepResult
from kneescope.errors import ConfigError
from kneescope.io.digest import file_sha256


class Segment(BaseStep):
    """Segment ``image`` with a kneescope model file into ``labels`` (uint8, input grid).

    Options:
        model: path of the model file written by ``kneescope train``, a name in
            ``WS/models/``, or a shipped model's name (``kneescope models list``); default:
            the shipped ``knee-seg`` (:data:`kneescope.models.pretrained.DEFAULT_MODEL`).
        write_labels: write ``labels.nii.gz`` per item (atomically). Default true.
        any option of :class:`kneescope.inference.segmenter.SegmentConfig` (tta, cascade,
        device, precision, overlap, ...); see :mod:`.config`.
    """

    name = "segment"
    version = "1"
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = SEGMENT_RESULTS
    reads: ClassVar[tuple[str, ...]] = ("image",)
    writes: ClassVar[tuple[str, ...]] = ("labels",)
    model_options: ClassVar[tuple[str, ...]] = ("model",)

    @classmethod
    def model_hash_for(cls, options: Mapping[str, Any]) -> str:
        """sha256 (16 hex) of the model file named by ``options["model"]`` (default: the
        shipped default model)."""
        return _model_file_hash(_model_path(options.get("model")))

    def __init__(self, model: str | None = None, **options: Any) -> None:
        from kneescope.capabilities.segmentation.config import SegmentStepConfig
        from kneescope.config import validate_config

        self.model_path = _model_path(model)
        self._model_hash = _model_file_hash(self.model_path)
        step_config = validate_config(SegmentStepConfig, options, "segment options")
        self.config = step_config.segment_config()
        self.write_labels = step_config.write_labels
        self._segmenter: Any = None

    @property
    def model_hash(self) -> str:
        return self._model_hash

    def setup(self) -> None:
        from kneescope.inference.segmenter import Segmenter

        self._segmenter = Segmenter(self.model_path, self.config)

    def run(self, item: Item, context: StepContext) -> StepResult:
        import numpy as np

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
        present = int(np.count_nonzero(np.bincount(counts)[1:]))
        return StepResult(
            data={"labels": result.labels},
            values={"labels_present": present, "segment_device": str(self._segmenter.device)},
            files=files,
        )


def _model_path(model: object) -> Path:
    """The model file the ``model`` option names (default: the shipped default model)."""
    from kneescope.models.pretrained import DEFAULT_MODEL, step_model_path  # torch: only here

    return step_model_path(model, DEFAULT_MODEL)


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
