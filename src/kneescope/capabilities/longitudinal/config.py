"""The ``longitudinal`` cohort step's options (a frozen pydantic model; unknown options are
refused)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from kneescope.config import FROZEN

DEFAULT_BIOMARKERS: tuple[str, ...] = (
    # cartilage thickness: Wirth-Eckstein 2008 regions (ThCtAB, ThCcAB) and plate statistics
    "we2008_*_ThCtAB_mm",
    "we2008_*_ThCcAB_mm",
    "*_cartilage_thickness_mean_mm",
    # volumes: cartilage and menisci per structure, Wirth-Eckstein cartilage volume VC
    "*_volume_mm3",
    "we2008_*_VC_mm3",
    # areas: articular and denuded per plate, Wirth-Eckstein tAB, cAB and denuded share
    "*_area_mm2",
    "we2008_*_tAB_mm2",
    "we2008_*_cAB_mm2",
    "we2008_*_dABp_pct",
    # meniscal extrusion and coverage
    "*_meniscus_extrusion*_mm",
    "*_tibial_coverage_pct",
    # radiographic joint space width (xray_jsw, synthetic endpoint tables)
    "mjsw_*_mm",
    "*_jsw_mm",
)
"""Biomarker column patterns (``fnmatch`` globs, case-sensitive) used when none are given:
thickness, volume, area and extrusion columns of ``measure`` (and radiographic JSW)."""

DEFAULT_EXCLUDE: tuple[str, ...] = ("true_*", "latent_*", "qc_*", "time_*")
"""Columns never followed even when a biomarker pattern matches them: a synthetic table's
noise-free truth twins and latent variables, QC flags, timings."""

DEFAULT_BONE_SIZE: tuple[str, ...] = ("*bone_volume_mm3", "*_subchondral_bone_area_mm2")
"""Columns that measure the size of a knee's bones, which must stay put across visits:
``measure``'s bone volumes (``femur_bone_volume_mm3``, ``tibia_bone_volume_mm3``,
``patella_bone_volume_mm3``) where present, else its total subchondral bone area per plate
(tAB: covered plus denuded bone under each cartilage plate; in a knee losing its cartilage
cover the plate's footprint, hence tAB, can change: 13 % in a synthetic KL 4 knee)."""


class LongitudinalConfig(BaseModel):
    """Options of the ``longitudinal`` cohort step.

    Attributes:
        biomarkers: column patterns of the biomarkers to follow (numeric columns only).
        exclude: column patterns left out even when a biomarker pattern matches.
        baseline: the baseline visit code (``V00``); None: each knee's first visit. A knee
            without the baseline visit is left out (listed in the step's values).
        bone_size: column patterns of bone-size quantities checked across visits.
        bone_tolerance_pct: a knee-visit whose bone size differs from the knee's baseline by
            more than this (%) is flagged (a different knee, or a failed segmentation).
        check_side: flag a knee-visit whose anatomy (``side_from_anatomy``) or measured side
            (``measured_side``) disagrees with the knee's side.
        exclude_flagged: leave flagged knee-visits out of the per-visit summaries (they stay
            in the change table, marked).
        qc_ok_only: also leave out knee-visits whose item-level QC failed (``qc_ok`` false).
        klg_variable: the catalog's knee-level KL grade variable; summaries are also given
            per baseline grade when the catalog (or the table's ``baseline_klg``/``klg``
            column) has it.
        precision: a precision table (JSON, ``benchmarks/biomarker_precision.py
            --precision-table``) for the smallest detectable change, relative to the
            workspace; None: kneescope's shipped table.
    """

    model_config = FROZEN

    biomarkers: tuple[str, ...] = DEFAULT_BIOMARKERS
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    baseline: str | None = None
    bone_size: tuple[str, ...] = DEFAULT_BONE_SIZE
    bone_tolerance_pct: float = Field(5.0, gt=0.0, le=100.0)
    check_side: bool = True
    exclude_flagged: bool = True
    qc_ok_only: bool = False
    klg_variable: str = Field("XRKL", min_length=1)
    precision: str | None = None

    @field_validator("biomarkers")
    @classmethod
    def _some_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not p for p in value):
            raise ValueError("give one or more non-empty column patterns")
        return value

    @field_validator("baseline")
    @classmethod
    def _visit_code(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from kneescope.catalog.naming import normalize_visit

        return normalize_visit(value)
