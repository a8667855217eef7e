"""``kneescope measure --longitudinal``: change from baseline of one knee's visits with the
smallest detectable change, the SRM over several knees, and the truth of the generator's
progressing knees (synthetic cohort visits: the same knee, thinner cartilage, a new pose)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from kneescope.biomarkers.change import SDC_FACTOR, Precision, PrecisionTable
from kneescope.cli.app import main
from kneescope.io import write_volume
from kneescope.synth.cohort import CohortSpec, KneeVisit, plan_subject
from kneescope.synth.knee import render_knee
from kneescope.synth.params import FULL, SMALL, SizeSpec
from kneescope.synth.truth import KneeTruth

PLATE_COLUMNS = tuple(
    f"{p}_cartilage_thickness_mean_mm"
    for p in ("femoral", "medial_tibial", "lateral_tibial", "patellar")
)


def _visits(subject: int, visits: tuple[str, ...]) -> tuple[KneeVisit, ...]:
    """A knee of the synthetic cohort (seed 0) whose OA progresses: subject 35's right knee
    (KLG 3 -> 4 over 4 years), subject 2's left knee (KLG 2)."""
    side = "right" if subject == 35 else "left"
    plan = plan_subject(CohortSpec(subjects=subject + 1, visits=visits, seed=0), subject)
    return plan.knees[side]


def _render(
    folder: Path, name: str, states: tuple[KneeVisit, ...], size: SizeSpec
) -> list[tuple[Path, KneeTruth]]:
    out = []
    for st in states:
        sample = render_knee(st.params, size)
        out.append(
            (write_volume(sample.labels, folder / f"{name}_{st.visit}.nii.gz"), sample.truth)
        )
    return out


@pytest.fixture(scope="module")
def knees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Path, KneeTruth]]]:
    folder = tmp_path_factory.mktemp("longitudinal")
    return {
        "a": _render(folder, "s35R", _visits(35, ("V00", "V06")), SMALL),
        "b": _render(folder, "s2L", _visits(2, ("V00", "V06")), SMALL),
    }


@pytest.fixture
def precision(tmp_path: Path) -> Path:
    """A precision table with known SDs for the plate means (0.01-0.04 mm)."""
    table = PrecisionTable(
        {c: Precision(0.01 * (i + 1), 1.0, 4, 4) for i, c in enumerate(PLATE_COLUMNS)},
        "test SDs",
    )
    path = tmp_path / "precision.json"
    path.write_text(table.to_json(), encoding="utf-8")
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _num(text: str) -> float:
    return float(text) if text != "" else math.nan


def test_one_knee_change_with_sdc(
    knees: dict[str, list[tuple[Path, KneeTruth]]],
    precision: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (v0, t0), (v1, t1) = knees["a"]
    table = tmp_path / "change.csv"
    code = main(
        [
            "measure",
            "--longitudinal",
            str(v0),
            str(v1),
            "-o",
            str(table),
            "--precision",
            str(precision),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "SDC95" in out and "test SDs" in out and str(precision) in out
    rows = _read_csv(table)
    assert {r["visit"] for r in rows} == {"s35R_V00", "s35R_V06"}
    by = {(int(r["visit_index"]), r["biomarker"]): r for r in rows}
    sds = PrecisionTable.read(precision).columns
    for col in PLATE_COLUMNS:
        base, follow = by[(0, col)], by[(1, col)]
        assert _num(base["change_from_baseline"]) == 0.0
        change = _num(follow["value"]) - _num(base["value"])
        assert _num(follow["change_from_baseline"]) == pytest.approx(change)
        pct = 100 * change / _num(base["value"])
        assert _num(follow["change_from_baseline_pct"]) == pytest.approx(pct)
        sdc = SDC_FACTOR * sds[col].sd
        assert _num(follow["sdc95"]) == pytest.approx(sdc)
        assert follow["exceeds_sdc95"] == str(abs(change) > sdc)
        assert "test SDs" in follow["precision_source"]
    # the knee loses medial tibial cartilage (truth -17.6 %: KLG 3 -> 4, medial); on the
    # coarse small grid (2.3 mm slices) the measured change has the truth's sign only (the
    # DESS-grid test below checks its size)
    col = "medial_tibial_cartilage_thickness_mean_mm"
    true_pct = 100 * (
        t1.plates["medial_tibial"].thickness_mean_mm / t0.plates["medial_tibial"].thickness_mean_mm
        - 1
    )
    assert true_pct < -10
    assert _num(by[(1, col)]["change_from_baseline_pct"]) < 0


def test_default_sds_are_the_shipped_ones_and_json_is_strict(
    knees: dict[str, list[tuple[Path, KneeTruth]]], capsys: pytest.CaptureFixture[str]
) -> None:
    (v0, _), (v1, _) = knees["b"]
    code = main(["measure", "--longitudinal", str(v0), str(v1), "--json"])
    text = capsys.readouterr().out
    assert code == 0
    payload = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert "shipped" in payload["precision_source"]
    assert "biomarker_precision.py" in payload["precision_source"]
    follow = [r for r in payload["changes"] if r["visit_index"] == 1]
    assert {r["biomarker"] for r in follow} >= set(PLATE_COLUMNS)
    assert all(
        r["sdc95"] is not None and r["sdc95"] > 0 for r in follow if r["biomarker"] in PLATE_COLUMNS
    )
    assert payload["srm"] == []


def test_several_knees_from_a_visit_list_give_the_srm(
    knees: dict[str, list[tuple[Path, KneeTruth]]], precision: Path, tmp_path: Path
) -> None:
    visits = tmp_path / "visits.csv"
    lines = ["knee,visit,labelmap"]
    for knee in ("a", "b"):
        for (path, _), visit in zip(knees[knee], ("V00", "V06"), strict=True):
            lines.append(f"{knee},{visit},{path}")
    visits.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = tmp_path / "change.csv"
    code = main(
        ["measure", "--longitudinal", str(visits), "-o", str(table), "--precision", str(precision)]
    )
    assert code == 0
    rows = _read_csv(table)
    srm = _read_csv(tmp_path / "change_srm.csv")
    assert {r["knee"] for r in rows} == {"a", "b"}
    col = "medial_tibial_cartilage_thickness_mean_mm"
    (row,) = [r for r in srm if r["biomarker"] == col]
    assert row["visit"] == "V06" and row["knees"] == "2"
    changes = [
        _num(r["change_from_baseline"])
        for r in rows
        if r["biomarker"] == col and r["visit"] == "V06"
    ]
    assert _num(row["mean_change"]) == pytest.approx(np.mean(changes))
    assert _num(row["sd_change"]) == pytest.approx(np.std(changes, ddof=1))
    assert _num(row["srm"]) == pytest.approx(np.mean(changes) / np.std(changes, ddof=1))
    # an existing SRM table is not replaced unasked
    table.unlink()
    code = main(["measure", "--longitudinal", str(visits), "-o", str(table)])
    assert code == 2 and not table.exists()


def test_refusals(
    knees: dict[str, list[tuple[Path, KneeTruth]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (a0, _), (a1, _) = knees["a"]
    (b0, _), _ = knees["b"]
    bad_list = tmp_path / "visits.csv"
    bad_list.write_text(f"subject,file\nx,{a0}\n", encoding="utf-8")
    single = tmp_path / "single.csv"
    single.write_text(f"knee,labelmap\nx,{a0}\ny,{a1}\n", encoding="utf-8")
    bad_precision = tmp_path / "p.json"
    bad_precision.write_text('{"columns": 3}', encoding="utf-8")
    cases = [
        (["--longitudinal", str(a0)], "2 or more visits"),
        (["--longitudinal", str(bad_list)], "no column knee or labelmap"),
        (["--longitudinal", str(single)], "single visit"),
        (["--longitudinal", str(single), str(a0)], "either label maps"),
        ([str(a0), "--precision", str(bad_precision)], "--longitudinal only"),
        (
            ["--longitudinal", str(a0), str(a1), "--precision", str(bad_precision)],
            "not a precision table",
        ),
        (["--longitudinal", str(a0), str(b0)], "different sides"),  # right and left
        (["--longitudinal", str(single), "--maps", str(tmp_path)], "--maps with a visit list"),
    ]
    for args, said in cases:
        code = main(["measure", *args])
        err = capsys.readouterr().err
        assert code == 2, args
        (line,) = [x for x in err.splitlines() if x.startswith("error:")]
        assert said in line, (args, line)


WE_PLATES = ("MT", "LT", "cMF", "cLF", "TrMF", "TrLF", "pMF", "pLF", "P")


@pytest.mark.slow
def test_change_matches_the_truth_on_the_dess_grid(tmp_path: Path) -> None:
    """A progressing knee (KLG 3 -> 4, medial) at V00 and V03 on the OAI DESS grid, each
    visit scanned in two poses (the cohort's and a rescan's), given as a visit list of two
    pose series: the mean measured % change (the SRM table's mean_change_pct: pose noise
    halved, what remains is the measurement's systematic error) of every plate-level
    thickness (plate means; ThCtAB and ThCcAB of the Wirth-Eckstein plates) is within 1
    percentage point of the truth's (imposed thickness over the analytic bone surface).
    Single pairs and subregions: benchmarks/biomarker_change.py (docs/biomarkers.md)."""
    from kneescope.synth.rescan import rescan_params

    states = _visits(35, ("V00", "V03"))
    lines = ["knee,visit,labelmap"]
    truths = []
    for pose in (0, 1):
        for st in states:
            sample = render_knee(rescan_params(st.params, pose), FULL)
            path = write_volume(sample.labels, tmp_path / f"pose{pose}_{st.visit}.nii.gz")
            lines.append(f"pose{pose},{st.visit},{path.name}")
            truths.append(sample.truth)
    (tmp_path / "visits.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = tmp_path / "change.json"
    code = main(["measure", "--longitudinal", str(tmp_path / "visits.csv"), "-o", str(table)])
    assert code == 0
    srm = {r["biomarker"]: r for r in json.loads((tmp_path / "change_srm.json").read_text())}
    t0, t1 = truths[0], truths[1]
    truth0 = {c: t0.plates[c.split("_cartilage")[0]].thickness_mean_mm for c in PLATE_COLUMNS}
    truth1 = {c: t1.plates[c.split("_cartilage")[0]].thickness_mean_mm for c in PLATE_COLUMNS}
    plate_level = tuple(f"we2008_{r}_{q}_mm" for r in WE_PLATES for q in ("ThCtAB", "ThCcAB"))
    for name, value in getattr(t0, "biomarkers", {}).items():
        if name in srm and name in plate_level:
            truth0[name], truth1[name] = value, t1.biomarkers[name]  # type: ignore[attr-defined]
    errors = {c: srm[c]["mean_change_pct"] - 100 * (truth1[c] / truth0[c] - 1) for c in truth0}
    assert all(srm[c]["knees"] == 2 for c in truth0)
    assert len(errors) >= len(PLATE_COLUMNS)
    assert all(abs(e) <= 1.0 for e in errors.values()), errors
