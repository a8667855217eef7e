"""The ``measure`` step: biomarkers of each item's label map (``labels``).

Pipelines: ``load_volume -> segment -> measure`` (images) or ``load_labels -> measure``
(existing segmentations). Every column is declared in :mod:`.results` with its unit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from kneescope.capabilities.biomarkers.results import CAPABILITY, MEASURE_RESULTS
from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, Scalar, StepContext, StepResult


class Measure(BaseStep):
    """Biomarkers of ``labels`` (cartilage thickness, volumes, menisci, QC flags).

    Options:
        side: "auto" (the item's side when known, else the anatomy's), "right" or "left".
        labels: the label maps' scheme: "kneescope", "oai-zib", "oaizib-cm" or a JSON file
            (:mod:`kneescope.biomarkers.label_schemes`; a relative path is read from the
            folder the run starts in). The file's content is part of every item's key
            (:meth:`model_hash_for`): editing it re-measures the items.
        maps: keep the knee's 2D thickness maps in ``thickness_maps.npz`` (default true; the
            knee pages of ``kneescope report`` draw them).
        any option of :class:`kneescope.biomarkers.measure_config.MeasureConfig`; see
        :mod:`.config`.
    """

    name = "measure"
    version = "3"  # 2: label schemes (qc_not_labelled_*, ...); 3: <bone>_bone_volume_mm3
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = MEASURE_RESULTS
    reads: ClassVar[tuple[str, ...]] = ("labels",)

    @classmethod
    def model_hash_for(cls, options: Mapping[str, Any]) -> str:
        """Not a model: the hash of a JSON label scheme's content ("" for a built-in scheme
        or none), so that items are measured again when the file changes."""
        from kneescope.biomarkers.label_schemes import BUILTIN_SCHEMES

        labels = str(options.get("labels", "kneescope"))
        if labels.lower() in BUILTIN_SCHEMES:
            return ""
        try:
            content = Path(labels).read_bytes()
        except OSError:
            return ""  # refused with its reason when the step is built
        return "labels-" + hashlib.sha256(content).hexdigest()[:16]

    def __init__(self, **options: Any) -> None:
        from kneescope.biomarkers.label_schemes import resolve_scheme
        from kneescope.capabilities.biomarkers.config import MeasureStepConfig
        from kneescope.config import validate_config

        step_config = validate_config(MeasureStepConfig, options, "measure options")
        self.side = step_config.side
        self.scheme = resolve_scheme(step_config.labels)
        self.config = step_config.measure_config()
        self.maps = step_config.maps

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.biomarkers.label_schemes import measure_labelled

        side: Any = self.side
        if side == "auto" and item.side in ("right", "left"):
            side = item.side
        with context.phase("measure"):
            measured = measure_labelled(
                context.data["labels"], self.scheme, side, self.config, with_maps=self.maps
            )
        files: dict[str, str] = {}
        if self.maps and measured.maps:
            from kneescope.biomarkers.maps import save_maps

            files["thickness_maps"] = context.write_output(
                "thickness_maps.npz", lambda p: save_maps(measured.maps, p)
            )
        row = measured.as_row()
        values: dict[str, Scalar] = {"measured_side": row.pop("side")}
        for key, value in row.items():
            values[key] = value if isinstance(value, str | bool | int | float) else str(value)
        return StepResult(values=values, files=files)
