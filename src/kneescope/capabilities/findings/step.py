"""The ``mri_findings`` step: MRI findings of each knee item per compartment.

Pipeline: ``load_volume -> segment -> mri_findings`` (it reads ``image`` and ``labels``, on
one grid). It measures the label map itself (the ``measure`` step's definitions, without
maps) for the denuded areas and the meniscal extrusion, then detects the findings
(:func:`kneescope.biomarkers.findings.detect_findings`). Columns: :mod:`.results`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kneescope.capabilities.findings.results import CAPABILITY, FINDINGS_RESULTS
from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, Scalar, StepContext, StepResult
from kneescope.errors import InputError


class MriFindings(BaseStep):
    """Full-thickness cartilage defects, bone-marrow lesions, meniscal tears and meniscal
    extrusion of ``image`` + ``labels``, per tibiofemoral compartment.

    Options: every threshold of :class:`kneescope.biomarkers.findings.FindingsConfig`
    (``defect_area_mm2``, ``extrusion_mm``, ``bml_relative_intensity``, ``bml_edge_mm``,
    ``bml_volume_mm3``, ``tear_relative_intensity``, ``tear_volume_mm3``).
    """

    name = "mri_findings"
    version = "2"  # 2: extrusion_mm default 2.83 -> 2.63 (re-chosen on enriched validation)
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = FINDINGS_RESULTS
    reads: ClassVar[tuple[str, ...]] = ("image", "labels")

    def __init__(self, **options: Any) -> None:
        from kneescope.biomarkers.findings import FindingsConfig
        from kneescope.config import validate_config

        self.config = validate_config(FindingsConfig, options, "mri_findings options")

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.biomarkers.findings import detect_findings
        from kneescope.biomarkers.measure import measure_knee
        from kneescope.core import Volume

        image = context.data["image"]
        labels = context.data["labels"]
        if not isinstance(image, Volume) or not isinstance(labels, Volume):
            raise InputError("mri_findings: needs an MRI volume and its label map")
        if image.array.shape != labels.array.shape:
            raise InputError(
                f"mri_findings: the label map's grid {labels.array.shape} is not the image's "
                f"{image.array.shape}; segment the image (or give labels on its grid)"
            )
        side: Any = item.side if item.side in ("right", "left") else "auto"
        with context.phase("measure"):
            measured = measure_knee(labels, side, with_maps=False).values
        with context.phase("postprocess"):
            found = detect_findings(
                image.array, labels.array, labels.affine_ras, measured, self.config
            )
        values: dict[str, Scalar] = {c.name: float(found[c.name]) for c in self.results}
        return StepResult(values=values)
