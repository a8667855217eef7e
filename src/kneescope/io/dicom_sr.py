"""DICOM SR measurement reports (TID 1500) of a knee's biomarkers, written and read with highdicom.

One Comprehensive 3D SR instance (SOP class 1.2.840.10008.5.1.4.1.1.88.34) per knee and
visit, in the study of its source MR series, whose content is an Imaging Measurement Report
(TID 1500, procedure ``363679005`` Imaging procedure) made by a device observer (kneescope):

* one measurement group (TID 1501) per structure: its tracking identifier is kneescope's
  structure name (``femoral_cartilage``, ``medial_meniscus``...; ``knee`` for measurements of
  the whole joint or of subregions), its finding site the structure's SNOMED CT code (as in
  the SEG, :data:`kneescope.io.dicom_seg.SEGMENT_CODES`) with the knee's side as laterality
  and medial/lateral as topographical modifier, its source images the series' slices, and the
  algorithm (model, version, parameters) that made the segmentation;
* one numeric measurement (TID 300) per biomarker: its concept name is the result column in
  kneescope's private coding scheme ``99KNEESCOPE`` (the biomarkers have no standard codes;
  docs/biomarkers.md defines each), its meaning the column's description, its unit the UCUM
  code of the column's unit (``mm``, ``mm2``, ``mm3``, ``%``, ``1``); values are stored as
  DS and, exactly, as FloatingPointValue.

:func:`read_measurement_report` reads the values back (column -> value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kneescope.errors import InputError
from kneescope.io.atomic import atomic_write
from kneescope.io.dicom_seg import KNEE_JOINT, LEFT, RIGHT, SEGMENT_CODES, Code, SegAlgorithm
from kneescope.io.dicom_series import scan_dicom_series
from kneescope.io.dicom_write import make_uid

SCHEME = "99KNEESCOPE"
"""kneescope's private coding scheme for biomarker names (the result column names)."""

UCUM_UNITS: Mapping[str, tuple[str, str]] = {
    "mm": ("mm", "millimeter"),
    "mm2": ("mm2", "square millimeter"),
    "mm3": ("mm3", "cubic millimeter"),
    "%": ("%", "percent"),
    "1": ("1", "no units"),
}
"""kneescope unit -> (UCUM code, meaning)."""

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


@dataclass(frozen=True)
class Biomarker:
    """One numeric biomarker of a knee for the report.

    Attributes:
        name: result column name, e.g. ``femoral_cartilage_thickness_mean_mm``.
        value: the value (finite).
        unit: kneescope unit (a key of :data:`UCUM_UNITS`).
        description: one line (the column's description), <= 64 characters used.
        structure: kneescope structure name it belongs to (a key of ``SEGMENT_CODES``), or
            None for the whole knee.
    """

    name: str
    value: float
    unit: str
    description: str
    structure: str | None


@dataclass(frozen=True)
class DicomSrWritten:
    """What :func:`write_measurement_report` wrote."""

    path: Path
    size_bytes: int
    groups: dict[str, int]
    n_measurements: int
    sop_instance_uid: str
    series_instance_uid: str
    source_series_uid: str


def _concept(code: Code) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _text(text: str, limit: int) -> str:
    clean = "".join(c if c.isprintable() and c != "\\" else " " for c in text).strip()
    return clean[:limit] or "-"


def write_measurement_report(
    biomarkers: Sequence[Biomarker],
    source_folder: Path,
    out: Path,
    *,
    algorithm: SegAlgorithm,
    side: str | None = None,
    series_description: str = "kneescope biomarkers",
    series_number: int = 301,
    overwrite: bool = False,
) -> DicomSrWritten:
    """Write ``biomarkers`` as a TID 1500 measurement report on the series in ``source_folder``.

    Args:
        biomarkers: the knee's biomarkers (finite values, known units).
        source_folder: the source MR series (one file per slice).
        out: the SR file (written atomically).
        algorithm: who made the segmentation measured.
        side: ``"right"``/``"left"`` (finding sites' laterality), None: not recorded.
        series_description: SeriesDescription (<= 64 characters used).
        series_number: SeriesNumber of the SR.
        overwrite: replace an existing ``out``.

    Raises:
        InputError: no biomarkers, a non-finite value, an unknown unit or structure, an
            existing ``out`` without ``overwrite``.
        DicomError: the source folder is not a readable DICOM series.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"--output {out} exists; pass --overwrite to replace it")
    if not biomarkers:
        raise InputError("no biomarkers to report; give a run with a measure step")
    for b in biomarkers:
        if not math.isfinite(b.value):
            raise InputError(f"biomarker {b.name} is {b.value}; report finite values only")
        if b.unit not in UCUM_UNITS:
            raise InputError(
                f"biomarker {b.name} has unit {b.unit!r}, not one of {list(UCUM_UNITS)}"
            )
        if b.structure is not None and b.structure not in SEGMENT_CODES:
            raise InputError(f"biomarker {b.name}: unknown structure {b.structure!r}")
    info = scan_dicom_series(Path(source_folder))
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in info.files]
    seed = (
        info.series_uid,
        algorithm.name,
        algorithm.version,
        *(f"{b.name}={b.value!r}" for b in biomarkers),
    )

    laterality = None
    if side in ("right", "left"):
        laterality = _concept(RIGHT if side == "right" else LEFT)
    algorithm_id = None
    if algorithm.kind != "MANUAL":
        algorithm_id = hd.sr.AlgorithmIdentification(
            name=algorithm.name or "kneescope",
            version=algorithm.version or "unknown",
            parameters=[f"{k}={v}" for k, v in algorithm.parameters.items()] or None,
        )
    source_refs = [hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in sources]
    by_group: dict[str, list[Biomarker]] = {}
    for b in biomarkers:
        by_group.setdefault(b.structure or "knee", []).append(b)
    groups = []
    for name, members in by_group.items():
        coding = SEGMENT_CODES.get(name)
        if coding is None:
            site = hd.sr.FindingSite(anatomic_location=_concept(KNEE_JOINT), laterality=laterality)
            finding = _concept(KNEE_JOINT)
        else:
            site = hd.sr.FindingSite(
                anatomic_location=_concept(coding.structure or coding.type),
                laterality=laterality,
                topographical_modifier=(
                    _concept(coding.modifier) if coding.modifier is not None else None
                ),
            )
            finding = _concept(coding.type)
        measurements = [
            hd.sr.Measurement(
                name=hd.sr.CodedConcept(
                    value=b.name,
                    scheme_designator=SCHEME,
                    meaning=_text(b.description or b.name, 64),
                ),
                value=float(b.value),
                unit=hd.sr.CodedConcept(
                    value=UCUM_UNITS[b.unit][0],
                    scheme_designator="UCUM",
                    meaning=UCUM_UNITS[b.unit][1],
                ),
            )
            for b in members
        ]
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=make_uid("sr-group", *seed, name), identifier=name
                ),
                finding_type=finding,
                finding_sites=[site],
                algorithm_id=algorithm_id,
                measurements=measurements,
                source_images=source_refs,
            )
        )
    observation = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=make_uid("kneescope-device"), name="kneescope"
            ),
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=observation,
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    from kneescope import __version__

    sr = hd.sr.Comprehensive3DSR(
        evidence=sources,
        content=report[0],
        series_instance_uid=make_uid("sr-series", *seed),
        series_number=series_number,
        sop_instance_uid=make_uid("sr-instance", *seed),
        instance_number=1,
        manufacturer="kneescope",
        series_description=_text(series_description, 64),
        is_complete=True,
        is_final=True,
    )
    sr.SoftwareVersions = f"kneescope {__version__}"
    scheme = pydicom.Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "kneescope biomarkers (result column names)"
    scheme.CodingSchemeResponsibleOrganization = "kneescope"
    sr.CodingSchemeIdentificationSequence = [scheme]
    atomic_write(out, lambda tmp: sr.save_as(tmp, enforce_file_format=True))
    return DicomSrWritten(
        path=out,
        size_bytes=out.stat().st_size,
        groups={name: len(members) for name, members in by_group.items()},
        n_measurements=len(biomarkers),
        sop_instance_uid=str(sr.SOPInstanceUID),
        series_instance_uid=str(sr.SeriesInstanceUID),
        source_series_uid=info.series_uid,
    )


def read_measurement_report(path: Path) -> dict[str, tuple[float, str, str]]:
    """The measurements of a kneescope SR: result column -> (value, UCUM unit, group).

    Values are the exact FloatingPointValue where present, else the DS value.

    Raises:
        InputError: not a readable Comprehensive 3D SR with a TID 1500 report.
    """
    import highdicom as hd
    import pydicom

    try:
        sr = hd.sr.srread(Path(path))
    except (OSError, ValueError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
        raise InputError(f"{path}: not a readable DICOM SR ({exc})") from None
    values: dict[str, tuple[float, str, str]] = {}
    try:
        report: Any = sr.content  # a MeasurementReport for a TID 1500 SR
        groups = report.get_image_measurement_groups()
    except (AttributeError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: no TID 1500 measurement report in it ({exc})") from None
    for group in groups:
        ident = group.tracking_identifier or ""
        for m in group.get_measurements():
            measured = m[0].MeasuredValueSequence[0]
            value = float(measured.get("FloatingPointValue", measured.NumericValue))
            values[str(m.name.value)] = (value, str(m.unit.value), str(ident))
    return values
