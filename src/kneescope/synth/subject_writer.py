"""Render and write one synthetic subject: MRI series, radiographs, label maps, table rows.

Layout under the output folder (OAI style)::

    <release>/<ParticipantID>/<StudyDate>/<8-digit series>/001, 002, ...
    labels/<release>_<ParticipantID>_<StudyDate>_<series>.nii.gz  (+ labels/manifest.csv)
    tissues/<same name>.nii.gz  (with ``CohortSpec.tissues``: core.tissues values 0..25)

The function returns table rows (plain dicts of strings) that
:mod:`kneescope.synth.tables` assembles into CSV files. Everything written depends only on
the cohort seed and the subject's index, so parallel runs give the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kneescope.core import Volume
from kneescope.io import DicomWriteMeta, write_dicom_radiograph, write_dicom_series, write_nifti
from kneescope.synth.cohort import CohortSpec, KneeVisit, SubjectPlan, klg_text
from kneescope.synth.findings_truth import findings_truth_row
from kneescope.synth.full_leg import render_full_leg
from kneescope.synth.knee import render_knee
from kneescope.synth.layout import to_series_layout
from kneescope.synth.params import size_spec
from kneescope.synth.radiograph import render_knee_radiograph, truth_columns
from kneescope.synth.visits import VISIT_MONTHS, VISIT_NAME, VISIT_RELEASE

Row = dict[str, str]

XR_KNEE_DESCRIPTION = "Bilateral PA Fixed Flexion Knee"
MR_SERIES = {"dess": "SAG_3D_DESS", "iw-tse-fs": "SAG_IW_TSE_FS", "t1-gre": "SAG_T1_3D_FLASH"}
"""SeriesDescription stem per contrast (OAI names; the catalog reads DESS, IW_TSE, FLASH)."""
XR_LEG_DESCRIPTION = "Full Leg"


@dataclass
class SubjectRows:
    """Rows this subject contributes to each output table."""

    index: int
    contents: dict[str, list[Row]] = field(default_factory=dict)  # release -> rows
    labels: list[Row] = field(default_factory=list)
    knee_truth: list[Row] = field(default_factory=list)
    regional: list[Row] = field(default_factory=list)
    xray_truth: list[Row] = field(default_factory=list)
    leg_truth: list[Row] = field(default_factory=list)


def fmt(value: float, digits: int = 4) -> str:
    """Fixed-point text of a float (deterministic CSV output)."""
    return f"{value:.{digits}f}"


def series_folder_name(seed: int, pid: str, visit: str, kind: str) -> str:
    """Deterministic 8-digit series folder name."""
    digest = hashlib.sha256(f"{seed}|{pid}|{visit}|{kind}".encode()).digest()
    return f"{10_000_000 + int.from_bytes(digest[:8], 'little') % 89_999_999:08d}"


def barcode(seed: int, pid: str, visit: str) -> str:
    """Deterministic 12-digit OAI-like barcode."""
    digest = hashlib.sha256(f"barcode|{seed}|{pid}|{visit}".encode()).digest()
    return f"0166{int.from_bytes(digest[:8], 'little') % 10**8:08d}"


def _write_radiograph(
    image: Volume,
    folder: Path,
    release_dir: Path,
    meta: DicomWriteMeta,
    code: str,
    *,
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME1",
    pixel_spacing: bool = True,
    image_laterality: Literal["R", "L", "B", "U"] | None = None,
) -> Row:
    """Write one single-file CR series and return its contents.csv row (MONOCHROME1 with
    PixelSpacing and ImagerPixelSpacing unless told otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_dicom_radiograph(
        image,
        folder / "001",
        meta=meta,
        photometric=photometric,
        pixel_spacing=pixel_spacing,
        image_laterality=image_laterality,
    )
    return {
        "Folder": folder.relative_to(release_dir).as_posix(),
        "ParticipantID": meta.patient_id,
        "StudyDate": meta.study_date,
        "Barcode": code,
        "StudyDescription": meta.study_description,
        "SeriesDescription": meta.series_description,
    }


def knee_film_format(
    seed: int, pid: str, visit: str
) -> tuple[Literal["MONOCHROME1", "MONOCHROME2"], bool]:
    """How a knee film is stored, varied across films (seeded): (photometric interpretation,
    whether PixelSpacing is written besides ImagerPixelSpacing; two films in three)."""
    h = int(series_folder_name(seed, pid, visit, "xr-format"))
    return ("MONOCHROME1" if h % 2 == 0 else "MONOCHROME2"), (h // 2) % 3 != 0


def write_subject(spec: CohortSpec, plan: SubjectPlan, out: Path) -> SubjectRows:
    """Render every scan of one subject under ``out`` and return its table rows."""
    rows = SubjectRows(index=plan.index)
    pid = plan.participant_id
    size = size_spec(spec.size)
    for v_index, visit in enumerate(spec.visits):
        release = VISIT_RELEASE[visit]
        study_date = plan.visit_dates[visit].strftime("%Y%m%d")
        date_dir = out / release / pid / study_date
        contents = rows.contents.setdefault(release, [])
        code = barcode(spec.seed, pid, visit)
        states: dict[str, KneeVisit] = {side: plan.knees[side][v_index] for side in plan.knees}
        base_row = {"ParticipantID": pid, "Visit": visit, "Months": str(VISIT_MONTHS[visit])}
        for side, state in states.items():
            truth_row: Row = {
                **base_row,
                "Side": side,
                "Arm": plan.arm,
                "KLG": str(state.klg),
                "Severity": fmt(state.severity),
                "JSN_M": str(state.jsn_medial),
                "JSN_L": str(state.jsn_lateral),
                "OsteophyteGrade": str(state.osteophyte_grade),
                "HKA_deg": fmt(state.hka_deg, 2),
                "WOMKP": str(state.pain),
            }
            if spec.mri:
                sample = render_knee(state.params, size)
                # DESS keeps its series name (and so its folder name) of before contrasts
                stem = MR_SERIES[spec.contrast]
                kind = f"DESS_{side}" if spec.contrast == "dess" else f"{stem}_{side}"
                folder = date_dir / series_folder_name(spec.seed, pid, visit, kind)
                series_description = f"{stem}_{side.upper()}"
                study_description = f"OAI^MR^{VISIT_NAME[visit]}^{side.upper()}"
                meta = DicomWriteMeta(
                    patient_id=pid,
                    study_date=study_date,
                    study_description=study_description,
                    series_description=series_description,
                    series_number=5 if side == "right" else 6,
                    laterality=side,
                    modality="MR",
                    uid_seed=f"{spec.seed}|{pid}|{visit}|{kind}",
                )
                folder.parent.mkdir(parents=True, exist_ok=True)
                write_dicom_series(to_series_layout(sample.image), folder, meta=meta)
                # named like the series' path ("0.E.1_9000099_20040909_10219306"), the
                # convention by which the catalog attaches label maps to series
                series_key = folder.relative_to(out).as_posix().replace("/", "_")
                label_rel = Path("labels") / f"{series_key}.nii.gz"
                (out / "labels").mkdir(parents=True, exist_ok=True)
                write_nifti(
                    to_series_layout(sample.labels),
                    out / label_rel,
                    description=f"kneescope synth labels {pid} {visit} {side}",
                )
                if spec.tissues:
                    (out / "tissues").mkdir(parents=True, exist_ok=True)
                    write_nifti(
                        to_series_layout(sample.tissues),
                        out / "tissues" / f"{series_key}.nii.gz",
                        description=f"kneescope synth tissues {pid} {visit} {side}",
                    )
                rel_folder = folder.relative_to(out).as_posix()
                contents.append(
                    {
                        "Folder": folder.relative_to(out / release).as_posix(),
                        "ParticipantID": pid,
                        "StudyDate": study_date,
                        "Barcode": code,
                        "StudyDescription": study_description,
                        "SeriesDescription": series_description,
                    }
                )
                rows.labels.append(
                    {
                        "Folder": rel_folder,
                        "ParticipantID": pid,
                        "Visit": visit,
                        "Side": side,
                        "LabelPath": label_rel.as_posix(),
                        "LabelScheme": "kneescope",
                    }
                )
                t = sample.truth
                truth_row["Folder"] = rel_folder
                truth_row["LabelPath"] = label_rel.as_posix()
                for plate, pt in t.plates.items():
                    truth_row[f"{plate}_ThMean_mm"] = fmt(pt.thickness_mean_mm)
                    truth_row[f"{plate}_ThMeanAB_mm"] = fmt(pt.thickness_mean_ab_mm)
                    truth_row[f"{plate}_ThMeanVisible_mm"] = fmt(pt.thickness_mean_visible_mm)
                    truth_row[f"{plate}_Vol_mm3"] = fmt(pt.volume_mm3, 2)
                    truth_row[f"{plate}_Area_mm2"] = fmt(pt.area_mm2, 2)
                    truth_row[f"{plate}_Denuded_mm2"] = fmt(pt.denuded_area_mm2, 2)
                    for region, value in pt.regional_thickness_mm.items():
                        rows.regional.append(
                            {
                                **base_row,
                                "Side": side,
                                "Plate": plate,
                                "Region": region,
                                "Thickness_mm": fmt(value),
                            }
                        )
                truth_row["MedMeniscus_Vol_mm3"] = fmt(t.meniscus_volume_mm3["medial"], 2)
                truth_row["LatMeniscus_Vol_mm3"] = fmt(t.meniscus_volume_mm3["lateral"], 2)
                truth_row["MedExtrusion_mm"] = fmt(t.extrusion_mm["medial"])
                truth_row["LatExtrusion_mm"] = fmt(t.extrusion_mm["lateral"])
                truth_row["MedBoneGap_mm"] = fmt(t.bone_gap_mm["medial"])
                truth_row["LatBoneGap_mm"] = fmt(t.bone_gap_mm["lateral"])
                truth_row.update(findings_truth_row(state.params, t.biomarkers))
            rows.knee_truth.append(truth_row)
        if spec.radiographs:
            kind = "XR_PA"
            folder = date_dir / series_folder_name(spec.seed, pid, visit, kind)
            knees = {
                side: (s.params, s.klg, s.osteophyte_grade, plan.medial_predominant[side])
                for side, s in states.items()
            }
            seed = int(series_folder_name(spec.seed, pid, visit, "noise"))
            image, truths = render_knee_radiograph(knees, seed=seed)
            photometric, pixel_spacing = knee_film_format(spec.seed, pid, visit)
            contents.append(
                _write_radiograph(
                    image,
                    folder,
                    out / release,
                    DicomWriteMeta(
                        patient_id=pid,
                        study_date=study_date,
                        study_description=f"OAI^XR^{VISIT_NAME[visit]}",
                        series_description=XR_KNEE_DESCRIPTION,
                        series_number=1,
                        modality="CR",
                        uid_seed=f"{spec.seed}|{pid}|{visit}|{kind}",
                    ),
                    code,
                    photometric=photometric,
                    pixel_spacing=pixel_spacing,
                    image_laterality="B",
                )
            )
            for tr in truths:
                rows.xray_truth.append(
                    {
                        **base_row,
                        "Side": tr.side,
                        "Folder": folder.relative_to(out).as_posix(),
                        "KLG": str(tr.klg),
                        "OsteophyteGrade": str(tr.osteophyte_grade),
                        "mJSW_M_mm": fmt(tr.mjsw_medial_mm),
                        "mJSW_L_mm": fmt(tr.mjsw_lateral_mm),
                        **truth_columns(tr),
                        "Photometric": photometric,
                        "SpacingTag": "PixelSpacing" if pixel_spacing else "ImagerPixelSpacing",
                    }
                )
        if spec.full_leg and (v_index == 0 or VISIT_MONTHS[visit] % 24 == 0):
            kind = "XR_LEG"
            folder = date_dir / series_folder_name(spec.seed, pid, visit, kind)
            scale = float(states["right"].params.scale)
            legs = {side: (s.hka_deg, scale) for side, s in states.items()}
            seed = int(series_folder_name(spec.seed, pid, visit, "leg-noise"))
            image, legs_truth = render_full_leg(legs, seed=seed)
            contents.append(
                _write_radiograph(
                    image,
                    folder,
                    out / release,
                    DicomWriteMeta(
                        patient_id=pid,
                        study_date=study_date,
                        study_description=f"OAI^XR^{VISIT_NAME[visit]}",
                        series_description=XR_LEG_DESCRIPTION,
                        series_number=2,
                        modality="CR",
                        body_part="LEG",
                        uid_seed=f"{spec.seed}|{pid}|{visit}|{kind}",
                    ),
                    code,
                )
            )
            for lt in legs_truth:
                rows.leg_truth.append(
                    {
                        **base_row,
                        "Side": lt.side,
                        "Folder": folder.relative_to(out).as_posix(),
                        "HipRow": fmt(lt.hip_rc[0], 2),
                        "HipCol": fmt(lt.hip_rc[1], 2),
                        "KneeRow": fmt(lt.knee_rc[0], 2),
                        "KneeCol": fmt(lt.knee_rc[1], 2),
                        "AnkleRow": fmt(lt.ankle_rc[0], 2),
                        "AnkleCol": fmt(lt.ankle_rc[1], 2),
                        "HKA_deg": fmt(lt.hka_deg, 2),
                    }
                )
    return rows


__all__ = ["SubjectRows", "klg_text", "write_subject"]
