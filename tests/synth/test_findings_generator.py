"""Bone-marrow lesions and meniscal tears of cohort knees (issue 16): their own random stream,
growth with the latent severity, and their exact truth in ``truth/knee_truth.csv``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from kneescope.synth.cohort import CohortSpec, plan_subject
from kneescope.synth.findings_truth import findings_truth
from kneescope.synth.subject_writer import write_subject

BASELINE_DIGEST = "6925df65fe3a16b4fc11d42f9d28b4dd81ab085eb6f7ffe7b34e1381c3f58ce5"
"""sha256 of every planned baseline value of the cohort below except ``marrow_lesions`` and
``meniscal_tears`` (and the rate, a post-baseline quantity), computed with the generator of
before issue 17's disease-model variance (main at e47f02d; equal to the generator of before the
findings at baseline). Follow-up visits changed in issue 17 (synth.disease: rate variation,
non-progressors, drift, fluctuation); that the findings leave them unchanged is checked by
comparing a cohort with and without findings."""


def _digest_without_findings(spec: CohortSpec, *, baseline_only: bool = False) -> str:
    h = hashlib.sha256()
    for i in range(spec.subjects):
        p = plan_subject(spec, i)
        head = {
            k: str(getattr(p, k))
            for k in (
                "participant_id",
                "age",
                "sex",
                "bmi",
                "arm",
                "baseline_date",
                "visit_dates",
                "baseline_klg",
                "medial_predominant",
            )
        }
        if not baseline_only:
            head["rate"] = str(p.rate)
        h.update(json.dumps(head, sort_keys=True).encode())
        for visits in p.knees.values():
            for kv in visits[:1] if baseline_only else visits:
                d = {f.name: getattr(kv, f.name) for f in dataclasses.fields(kv)}
                d["params"] = kv.params.model_dump(
                    mode="json", exclude={"marrow_lesions", "meniscal_tears"}
                )
                h.update(json.dumps(d, sort_keys=True).encode())
    return h.hexdigest()


def test_findings_leave_every_other_draw_of_a_cohort_unchanged() -> None:
    spec = CohortSpec(subjects=6, visits=("V00", "V01", "V03", "V06"), seed=16001)
    assert _digest_without_findings(spec, baseline_only=True) == BASELINE_DIGEST
    without = spec.model_copy(update={"findings": False})
    assert _digest_without_findings(spec) == _digest_without_findings(without)


def test_findings_appear_and_grow_with_the_latent_severity() -> None:
    spec = CohortSpec(subjects=120, visits=("V00", "V03", "V06", "V10"), seed=5)
    bml = {k: [0, 0] for k in range(5)}
    tear = {k: [0, 0] for k in range(5)}
    for i in range(spec.subjects):
        for visits in plan_subject(spec, i).knees.values():
            radius, length = 0.0, 0.0
            centres = set()
            for kv in visits:
                p = kv.params
                bml[kv.klg][0] += bool(p.marrow_lesions)
                bml[kv.klg][1] += 1
                tear[kv.klg][0] += bool(p.meniscal_tears)
                tear[kv.klg][1] += 1
                if p.marrow_lesions:  # grows, stays put
                    assert p.marrow_lesions[0].radius_mm >= radius
                    radius = p.marrow_lesions[0].radius_mm
                    centres.add(p.marrow_lesions[0].centre_mm)
                else:
                    assert radius == 0.0  # no lesion disappears
                if p.meniscal_tears:
                    assert p.meniscal_tears[0].length_mm >= length
                    length = p.meniscal_tears[0].length_mm
            assert len(centres) <= 1
    share_bml = [bml[k][0] / max(bml[k][1], 1) for k in range(5)]
    share_tear = [tear[k][0] / max(tear[k][1], 1) for k in range(5)]
    assert share_bml[0] == 0.0 and share_tear[0] == 0.0
    assert share_bml[1] < share_bml[2] < share_bml[3]
    assert share_tear[1] < share_tear[2] < share_tear[3]
    assert 0.3 < share_bml[2] < 0.75 and share_bml[3] > 0.65


@pytest.mark.slow
def test_knee_truth_rows_carry_the_findings_truth(tmp_path: Path) -> None:
    # subject 2 of seed 16002: its right knee (KL 2) has a medial BML and a medial tear
    spec = CohortSpec(subjects=3, visits=("V00",), seed=16002, radiographs=False, full_leg=False)
    plan = plan_subject(spec, 2)
    right = plan.knees["right"][0].params
    assert right.marrow_lesions and right.meniscal_tears
    rows = {r["Side"]: r for r in write_subject(spec, plan, tmp_path).knee_truth}
    row = rows["right"]
    medial = right.marrow_lesions[0].centre_mm[0] < 0
    c, other = ("medial", "lateral") if medial else ("lateral", "medial")
    assert row[f"finding_bml_{c}"] == "1" and row[f"finding_bml_{other}"] == "0"
    assert float(row[f"bml_{c}_volume_mm3"]) > 50.0
    assert row[f"finding_bml_{c}_grade"] in {"1", "2", "3"}
    t = "medial" if right.meniscal_tears[0].medial else "lateral"
    assert row[f"finding_tear_{t}"] == "1"
    for side in ("medial", "lateral"):
        extr = float(row[f"{side}_meniscus_extrusion_mm"])
        assert row[f"finding_extrusion_{side}"] == str(int(extr > 3.0))
        assert abs(extr - float(row[f"{'Med' if side == 'medial' else 'Lat'}Extrusion_mm"])) < 0.05
        area = float(row[f"defect_{side}_area_mm2"])
        assert row[f"finding_ftd_{side}"] == str(int(area >= 10.0))


def test_full_thickness_defect_truth_from_the_exact_regions() -> None:
    # exact we2008 values of a made-up knee: 60 mm^2 denuded in MT, 5 in cMF; cMT 40 % bare
    values = {
        "we2008_MT_tAB_mm2": 1200.0,
        "we2008_MT_dABp_pct": 5.0,
        "we2008_cMF_tAB_mm2": 1000.0,
        "we2008_cMF_dABp_pct": 0.5,
        "we2008_cMT_dABp_pct": 40.0,
        "we2008_LT_tAB_mm2": 1000.0,
        "we2008_LT_dABp_pct": 0.5,
        "we2008_cLF_tAB_mm2": 900.0,
        "we2008_cLF_dABp_pct": 0.0,
        "medial_meniscus_extrusion_mm": 3.5,
        "lateral_meniscus_extrusion_mm": 1.0,
    }
    spec = CohortSpec(subjects=1, visits=("V00",), seed=1)
    params = (
        plan_subject(spec, 0)
        .knees["right"][0]
        .params.model_copy(update={"marrow_lesions": (), "meniscal_tears": ()})
    )
    out = findings_truth(params, values)
    assert np.isclose(out["defect_medial_area_mm2"], 65.0)
    assert out["finding_ftd_medial"] == 1.0 and out["finding_ftd_medial_grade"] == 2.0
    assert np.isclose(out["defect_lateral_area_mm2"], 5.0)
    assert out["finding_ftd_lateral"] == 0.0 and out["finding_ftd_lateral_grade"] == 0.0
    assert out["finding_extrusion_medial"] == 1.0 and out["finding_extrusion_lateral"] == 0.0
    assert out["finding_bml_medial"] == 0.0 and out["bml_medial_volume_mm3"] == 0.0


def test_a_cohort_without_findings_differs_only_in_them() -> None:
    """``findings=False`` (the demo's cohort): no lesion or tear in any knee-visit, every
    other parameter the same as with them."""
    with_them = [
        plan_subject(CohortSpec(subjects=30, visits=("V00", "V06"), seed=7), i) for i in range(30)
    ]
    without = [
        plan_subject(CohortSpec(subjects=30, visits=("V00", "V06"), seed=7, findings=False), i)
        for i in range(30)
    ]
    seen = 0
    for a, b in zip(with_them, without, strict=True):
        for side in a.knees:
            for va, vb in zip(a.knees[side], b.knees[side], strict=True):
                assert vb.params.marrow_lesions == () and vb.params.meniscal_tears == ()
                seen += bool(va.params.marrow_lesions or va.params.meniscal_tears)
                keep = {"marrow_lesions", "meniscal_tears"}
                assert va.params.model_dump(exclude=keep) == vb.params.model_dump(exclude=keep)
                assert (va.severity, va.klg) == (vb.severity, vb.klg)
    assert seen > 0  # the comparison is not vacuous: the default cohort has findings
