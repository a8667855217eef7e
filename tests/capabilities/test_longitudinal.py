"""The longitudinal capability against known truth.

The results tables here are built from per-knee truth: each knee has a baseline thickness
and a true rate (mm per year, negative: loss), every visit's value is
``baseline + rate * months / 12`` (noise-free, so change and SRM must come out exactly), and
the table looks like a run's: one row per item with subject, visit, side, the anatomy's side
and each plate's subchondral bone area (constant per knee, as bone is). Then the faults the
QC must find are put in the way a catalog gets them: a series filed under the other side, a
visit that is another subject's knee.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kneescope.biomarkers.change import sdc95, shipped_precision
from kneescope.capabilities.longitudinal.change import align, knee_visits, visit_order
from kneescope.capabilities.longitudinal.config import LongitudinalConfig
from kneescope.capabilities.longitudinal.service import analyse
from kneescope.capabilities.longitudinal.step import Longitudinal
from kneescope.catalog.view import CatalogView
from kneescope.cli.app import main
from kneescope.cohort.cohort_steps import RESULTS_FILE, run_cohort_steps
from kneescope.cohort.pipeline_config import StepConfig
from kneescope.errors import ConfigError, InputError, RunError
from kneescope.stats.change import (
    annualised_rate,
    change_from_baseline,
    response_summary,
    srm_confidence_interval,
)

VISITS = ("V00", "V01", "V03")
MONTHS = {"V00": 0.0, "V01": 12.0, "V03": 24.0}
THICKNESS = "we2008_cMFTC_ThCtAB_mm"
VOLUME = "medial_tibial_cartilage_volume_mm3"
BONES = (
    "femoral_subchondral_bone_area_mm2",
    "medial_tibial_subchondral_bone_area_mm2",
    "lateral_tibial_subchondral_bone_area_mm2",
)


def truth_table(n_subjects: int, seed: int = 17001) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results table, truth per knee: subject, side, klg, base_mm, rate_mm_per_year)."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for s in range(n_subjects):
        subject = f"9{s:06d}"
        bone = rng.uniform(0.8, 1.25)  # the subject's bone size, both knees alike
        for side in ("right", "left"):
            klg = int(rng.integers(0, 5))
            base = rng.uniform(3.0, 5.0)
            rate = -0.02 - 0.03 * klg + rng.normal(0, 0.04)
            truth.append({"subject": subject, "side": side, "klg": klg, "base": base, "rate": rate})
            for visit in VISITS:
                years = MONTHS[visit] / 12.0
                rows.append(
                    {
                        "item_id": f"series-{subject}-{visit}-{side}",
                        "subject": subject,
                        "visit": visit,
                        "side": side,
                        "series": f"1.2.{s}.{visit}.{side}",
                        THICKNESS: base + rate * years,
                        VOLUME: 1000.0 * (base + rate * years),
                        "measured_side": side,
                        "side_from_anatomy": side,
                        "qc_ok": True,
                        **{b: bone * a for b, a in zip(BONES, (4700.0, 850.0, 650.0), strict=True)},
                        "time_total_s": float(rng.uniform(1, 2)),  # not a biomarker
                    }
                )
    return pd.DataFrame(rows), pd.DataFrame(truth)


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table's rows as a run hands them to cohort steps."""
    return [{str(k): v for k, v in row.items()} for row in table.to_dict("records")]


def cell(summary: pd.DataFrame, biomarker: str, visit: str, group: str) -> pd.Series:
    """The summary row of (biomarker, visit, group)."""
    mask = (summary["biomarker"] == biomarker) & (summary["visit"] == visit)
    (index,) = summary.index[mask & (summary["group"] == group)]
    return summary.loc[index]


def only(config: dict[str, object] | None = None) -> LongitudinalConfig:
    return LongitudinalConfig(
        **{"biomarkers": (THICKNESS, VOLUME), **(config or {})}  # type: ignore[arg-type]
    )


# -- stats -------------------------------------------------------------------------------------
def test_change_rate_and_response_summary_are_the_textbook_formulas() -> None:
    change, pct = change_from_baseline([2.0, 1.5, np.nan, 1.0], [2.0, 2.0, 2.0, 0.0])
    assert change[:2] == pytest.approx([0.0, -0.5]) and math.isnan(change[2])
    assert pct[1] == pytest.approx(-25.0) and math.isnan(pct[3])  # no % of a zero baseline
    rate = annualised_rate([-0.2, -0.2, 0.1], [24.0, 0.0, 6.0])
    assert rate[0] == pytest.approx(-0.1) and math.isnan(rate[1]) and rate[2] == pytest.approx(0.2)
    x = np.array([-0.3, -0.1, 0.05, -0.2, -0.25, np.nan])
    s = response_summary(x, sdc=0.15)
    finite = x[np.isfinite(x)]
    assert s.n == 5 and s.mean == pytest.approx(finite.mean())
    assert s.sd == pytest.approx(finite.std(ddof=1))
    assert s.srm == pytest.approx(finite.mean() / finite.std(ddof=1))
    assert s.share_increase == pytest.approx(0.2) and s.share_beyond_sdc == pytest.approx(0.6)
    half = 2.7764451 * s.sd / math.sqrt(5)  # t(0.975, 4)
    assert (s.mean_ci_low, s.mean_ci_high) == pytest.approx((s.mean - half, s.mean + half))
    assert response_summary([]).n == 0 and math.isnan(response_summary([1.0]).sd)


def test_srm_confidence_interval_covers_the_true_srm_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(17002)
    true_srm = -0.4
    for n in (12, 60):  # exact (noncentral t) and the normal approximation
        hits = 0
        trials = 300
        for _ in range(trials):
            x = rng.normal(true_srm, 1.0, size=n)
            lo, hi = srm_confidence_interval(float(x.mean() / x.std(ddof=1)), n)
            hits += lo <= true_srm <= hi
        assert 0.92 <= hits / trials <= 0.98, (n, hits)
    lo, hi = srm_confidence_interval(-0.4, 29)
    lo2, hi2 = srm_confidence_interval(-0.4, 30)  # the two methods meet at n = 30
    assert abs(lo - lo2) < 0.03 and abs(hi - hi2) < 0.03
    assert all(math.isnan(v) for v in srm_confidence_interval(float("nan"), 10))


# -- change and summaries against the truth ------------------------------------------------------
def test_change_rate_and_srm_equal_the_truth() -> None:
    table, truth = truth_table(40)
    result = analyse(table, only(), shipped_precision())
    changes = result.changes.loc[result.changes["biomarker"] == THICKNESS]
    merged = changes.merge(truth, on=["subject", "side"])
    years = merged["visit"].map(MONTHS) / 12.0
    assert np.allclose(merged["change"], merged["rate"] * years, atol=1e-12)
    assert np.allclose(merged["baseline_value"], merged["base"])
    assert np.allclose(
        merged["change_pct"], 100 * merged["rate"] * years / merged["base"], atol=1e-9
    )
    follow = merged["visit"] != "V00"
    assert np.allclose(merged.loc[follow, "annualised_rate"], merged.loc[follow, "rate"])
    assert merged.loc[~follow, "annualised_rate"].isna().all()
    assert set(merged["months_source"]) == {"visit code"}
    assert (changes["sdc95"] == sdc95(shipped_precision().columns[THICKNESS].sd)).all()
    # summaries: mean, SD and SRM of the true 2-year change over all 80 knees
    two_years = 2.0 * truth["rate"]
    row = cell(result.summary, THICKNESS, "V03", "all")
    assert row["n"] == 80 and row["months_mean"] == pytest.approx(24.0)
    assert row["mean_change"] == pytest.approx(two_years.mean())
    assert row["sd_change"] == pytest.approx(two_years.std(ddof=1))
    assert row["srm"] == pytest.approx(two_years.mean() / two_years.std(ddof=1))
    assert row["srm_ci_low"] < row["srm"] < row["srm_ci_high"]
    assert row["share_increase"] == pytest.approx(float((two_years > 0).mean()))
    assert row["mean_annualised_rate"] == pytest.approx(truth["rate"].mean())
    # by baseline KL grade from the table's klg column: the SRM of each grade's knees
    graded = table.merge(truth[["subject", "side", "klg"]], on=["subject", "side"])
    by_klg = analyse(graded, only(), shipped_precision())
    assert by_klg.klg_source == "results table column klg at baseline"
    for grade, knees in truth.groupby("klg"):
        got = cell(by_klg.summary, THICKNESS, "V03", f"KL{grade}")
        change = 2.0 * knees["rate"]
        assert got["n"] == len(knees)
        assert got["mean_change"] == pytest.approx(change.mean())
        if len(knees) > 1:
            assert got["srm"] == pytest.approx(change.mean() / change.std(ddof=1))


def test_two_series_of_one_knee_visit_are_averaged_and_rows_without_a_knee_counted() -> None:
    table, _ = truth_table(3)
    first = table.iloc[3].copy()  # subject 0, V01, right? (row order: visits inside sides)
    rescan = first.copy()
    rescan["item_id"], rescan["series"] = "rescan", "1.2.rescan"
    rescan[THICKNESS] = first[THICKNESS] + 0.2
    film = table.iloc[0].copy()
    film["side"], film["item_id"] = "", "bilateral"
    bad = table.iloc[0].copy()
    bad["visit"], bad["item_id"] = "baseline", "bad-visit"
    extra = pd.DataFrame([rescan, film, bad])
    kv = knee_visits(pd.concat([table, extra], ignore_index=True), [THICKNESS], [])
    assert kv.rows_without_knee == 1 and kv.rows_bad_visit == 1
    assert len(kv.frame) == len(table)
    f = kv.frame
    at = (f["subject"] == first["subject"]) & (f["side"] == first["side"])
    got = f.loc[at & (f["visit"] == first["visit"]), THICKNESS]
    assert len(got) == 1 and float(got.iloc[0]) == pytest.approx(first[THICKNESS] + 0.1)
    assert kv.biomarkers == (THICKNESS,)  # time_total_s and text columns never biomarkers


def test_months_from_the_table_then_dates_then_visit_codes_and_the_baseline_option() -> None:
    table, _ = truth_table(2)
    kv = knee_visits(table, [THICKNESS], [])
    dates = {("9000000", "V00"): "20040210", ("9000000", "V01"): "20050301"}
    aligned = align(kv, None, dates)
    frame = aligned.frame
    right_v01 = (frame["side"] == "right") & (frame["visit"] == "V01")
    dated = frame.loc[right_v01 & (frame["subject"] == "9000000")].iloc[0]
    undated = frame.loc[right_v01 & (frame["subject"] == "9000001")].iloc[0]
    assert dated["months"] == pytest.approx(
        385 / (365.25 / 12)  # 2004-02-10 -> 2005-03-01: 385 days (2004 is a leap year)
    )
    assert dated["months_source"] == "dates" and undated["months_source"] == "visit code"
    with_months = table.assign(months=table["visit"].map(MONTHS) + 1.5)
    aligned = align(knee_visits(with_months, [THICKNESS], []), None, dates)
    assert set(aligned.frame["months_source"]) == {"table"}
    assert np.allclose(aligned.frame["months"], aligned.frame["visit"].map(MONTHS))
    # baseline V01: V00 rows are left out, V03 is 12 months after it
    later = align(kv, "V01")
    assert set(later.frame["visit"]) == {"V01", "V03"}
    assert later.frame.loc[later.frame["visit"] == "V03", "months"].eq(12.0).all()
    # a knee without the baseline visit is listed; with none at all: one clear error
    no_v01 = table.loc[~((table["subject"] == "9000000") & (table["visit"] == "V01"))]
    missing = align(knee_visits(no_v01, [THICKNESS], []), "V01")
    assert missing.no_baseline == [("9000000", "left"), ("9000000", "right")]
    with pytest.raises(InputError, match="no knee has the baseline visit V05"):
        align(kv, "V05")
    assert visit_order(["V03", "V10", "V00", "V01"]) == ["V00", "V01", "V03", "V10"]


# -- QC ------------------------------------------------------------------------------------------
def test_a_swapped_side_and_another_subjects_knee_are_flagged_with_their_reasons() -> None:
    table, truth = truth_table(12)
    faulty = table.copy()
    # 1. subject 1's V01 series were filed under the wrong sides: the right knee's row is
    #    the left knee's image (the anatomy says left), and the other way round
    swap = (faulty["subject"] == "9000001") & (faulty["visit"] == "V01")
    faulty.loc[swap, "side"] = faulty.loc[swap, "side"].map({"right": "left", "left": "right"})
    # 2. subject 2's right knee at V03 is subject 3's knee (another bone size, thickness)
    wrong = (faulty["subject"] == "9000002") & (faulty["visit"] == "V03")
    wrong &= faulty["side"] == "right"
    donor = table.loc[
        (table["subject"] == "9000003") & (table["visit"] == "V03") & (table["side"] == "right")
    ]
    for column in (*BONES, THICKNESS, VOLUME):
        faulty.loc[wrong, column] = donor[column].to_numpy()
    bone_ratio = (
        table.loc[table["subject"] == "9000003", BONES[0]].iloc[0]
        / table.loc[table["subject"] == "9000002", BONES[0]].iloc[0]
    )
    assert abs(bone_ratio - 1) > 0.05  # the two subjects' knees differ (seeded)
    result = analyse(faulty, only(), shipped_precision())
    qc = result.qc
    sides = qc.loc[qc["check"] == "side"]
    assert set(zip(sides["subject"], sides["side"], sides["visit"], strict=True)) == {
        ("9000001", "right", "V01"),
        ("9000001", "left", "V01"),
    }
    reason = str(sides.loc[sides["side"] == "right", "reason"].iloc[0])
    assert "the anatomy shows a left knee" in reason and "files it as the right knee" in reason
    bone = qc.loc[qc["check"] == "bone_size"]
    assert list(zip(bone["subject"], bone["side"], bone["visit"], strict=True)) == [
        ("9000002", "right", "V03")
    ]
    assert float(bone["value"].iloc[0]) == pytest.approx(100 * (bone_ratio - 1), abs=0.05)
    assert "baseline V00 (tolerance 5 %)" in bone["reason"].iloc[0]
    assert result.qc_result.flagged.sum() == 3
    values = result.values()
    assert values["flagged_knee_visits"] == 3
    assert {(f["subject"], f["side"], f["visit"]) for f in values["flagged"]} == {
        ("9000001", "right", "V01"),
        ("9000001", "left", "V01"),
        ("9000002", "right", "V03"),
    }
    # flagged knee-visits stay in the change table, marked, and out of the summaries
    flagged = result.changes.loc[result.changes["flagged"]]
    assert len(flagged) == 3 * 2 and not flagged["in_summary"].any()
    s = result.summary
    assert cell(s, THICKNESS, "V01", "all")["n"] == 24 - 2
    assert cell(s, THICKNESS, "V03", "all")["n"] == 24 - 1
    clean = truth.loc[~((truth["subject"] == "9000002") & (truth["side"] == "right"))]
    assert cell(s, THICKNESS, "V03", "all")["mean_change"] == pytest.approx(
        2.0 * clean["rate"].mean()
    )
    # kept in when asked, and the side check can be switched off
    kept = analyse(faulty, only({"exclude_flagged": False}), shipped_precision())
    assert cell(kept.summary, THICKNESS, "V01", "all")["n"] == 24
    assert analyse(faulty, only({"check_side": False}), shipped_precision()).qc[
        "check"
    ].tolist() == ["bone_size"]
    # a wider tolerance lets the other knee through (the jump is ~bone_ratio)
    wide = only({"bone_tolerance_pct": 100 * abs(bone_ratio - 1) + 1})
    assert "bone_size" not in set(analyse(faulty, wide, shipped_precision()).qc["check"])


def test_a_flagged_baseline_flags_every_visit_of_its_knee() -> None:
    table, _ = truth_table(4)
    faulty = table.copy()
    at = (faulty["subject"] == "9000000") & (faulty["side"] == "left") & (faulty["visit"] == "V00")
    faulty.loc[at, "side_from_anatomy"] = "right"
    result = analyse(faulty, only(), shipped_precision())
    knee = result.qc.loc[(result.qc["subject"] == "9000000") & (result.qc["side"] == "left")]
    assert list(knee["check"]) == ["side", "baseline", "baseline"]
    assert list(knee["visit"]) == ["V00", "V01", "V03"]
    assert "the baseline V00 of this knee is flagged" in knee["reason"].iloc[1]


# -- the cohort step on a workspace ---------------------------------------------------------------
def _cli(argv: list[str]) -> None:
    assert main(argv) == 0, argv


def test_the_step_writes_its_files_and_summarises_by_the_catalogs_kl_grade(
    tmp_path: Path,
) -> None:
    table, truth = truth_table(10)
    ws = tmp_path / "ws"
    run_dir = ws / "runs" / "mri"
    run_dir.mkdir(parents=True)
    lines = ["ID,SIDE," + ",".join(f"{v}XRKL" for v in VISITS)]
    for row in truth.itertuples():
        text = f"{row.klg}: grade"
        lines.append(f"{row.subject},{1 if row.side == 'right' else 2},{text},{text},{text}")
    kxr = tmp_path / "kxr.csv"
    kxr.write_text("\n".join(lines) + "\n")
    _cli(["ingest", str(kxr), "--kind", "clinical", "-w", str(ws)])
    view = CatalogView(f"sqlite:///{ws / 'catalog.sqlite'}", ws)
    config = StepConfig(name="longitudinal", options={"biomarkers": [THICKNESS, VOLUME]})
    rows = records(table)
    outcome = run_cohort_steps([config], rows, run_dir, view)
    assert outcome.ran == ("longitudinal",)
    (entry,) = json.loads((run_dir / RESULTS_FILE).read_text())["steps"]
    assert entry["ok"] is True
    values = entry["values"]
    assert values["knees"] == 20 and values["knee_visits"] == 60
    assert values["visits"] == list(VISITS) and values["biomarkers"] == 2
    assert values["klg_source"] == "catalog XRKL at the baseline visit"
    assert values["flagged_knee_visits"] == 0 and values["bone_checked"] == 40
    assert values["bone_change_pct_max_abs"] == pytest.approx(0.0, abs=1e-9)
    head = {(h["biomarker"], h["visit"]): h for h in values["headline"]}
    assert head[(THICKNESS, "V03")]["mean_change"] == pytest.approx(2 * truth["rate"].mean())
    folder = run_dir / "cohort" / "longitudinal"
    changes = pd.read_parquet(folder / "longitudinal_changes.parquet")
    assert len(changes) == 60 * 2
    import pyarrow.parquet as pq

    assert pq.read_schema(folder / "longitudinal_changes.parquet").field(
        "annualised_rate"
    ).metadata == {b"unit": b"per year"}
    summary = pd.read_csv(folder / "longitudinal_summary.csv")
    groups = set(summary["group"])
    assert "all" in groups and {f"KL{g}" for g in truth["klg"]} <= groups
    for grade, knees in truth.groupby("klg"):
        got = cell(summary, THICKNESS, "V03", f"KL{grade}")
        assert got["n"] == len(knees)
        assert got["mean_change"] == pytest.approx(2.0 * knees["rate"].mean())
    png = (folder / "longitudinal_change.png").read_bytes()
    assert png.startswith(b"\x89PNG") and set(entry["files"]) == {
        "changes",
        "summary",
        "qc",
        "figure",
    }
    qc = pd.read_csv(folder / "longitudinal_qc.csv")
    assert qc.empty and list(qc.columns)[:3] == ["subject", "side", "visit"]
    calls = [r["call"] for r in entry["catalog_reads"]]  # (visit_dates where the view has it)
    assert calls[0] == "clinical_values" and set(calls) <= {"clinical_values", "visit_dates"}
    # nothing changed: skipped; a changed value re-runs it
    assert run_cohort_steps([config], rows, run_dir, view).skipped == ("longitudinal",)
    rows[5][THICKNESS] += 0.5
    assert run_cohort_steps([config], rows, run_dir, view).ran == ("longitudinal",)


def test_bad_options_and_bad_tables_give_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="longitudinal options: bone_tolerance_pct"):
        Longitudinal(bone_tolerance_pct=0)
    with pytest.raises(ConfigError, match="longitudinal options: baseline"):
        Longitudinal(baseline="baseline")
    with pytest.raises(ConfigError, match="longitudinal options: colour"):
        Longitudinal(colour="red")
    assert Longitudinal(baseline="1").config.baseline == "V01"
    table, _ = truth_table(2)
    with pytest.raises(InputError, match="no side column"):
        analyse(table.drop(columns="side"), only(), shipped_precision())
    with pytest.raises(InputError, match="no numeric column of the results table matches"):
        analyse(table, only({"biomarkers": ("nothing_*",)}), shipped_precision())
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    config = StepConfig(name="longitudinal", options={"baseline": "V06"})
    with pytest.raises(RunError, match="no knee has the baseline visit V06"):
        run_cohort_steps([config], records(table), run_dir, None)
    missing = StepConfig(name="longitudinal", options={"precision": "nope.json"})
    with pytest.raises(RunError, match="does not exist"):
        run_cohort_steps([missing], records(table), run_dir, None)


# -- the generator's endpoint table ------------------------------------------------------------
def test_on_the_generators_endpoint_table_change_and_srm_equal_its_own_arithmetic() -> None:
    """A's fast endpoint table (one row per knee x visit with months, baseline KL grade and
    noise-free twins): the step's per-knee change and its SRM in KL >= 2 knees equal what the
    table itself gives, and the truth twins are never followed."""
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.endpoints import endpoint_table

    spec = CohortSpec(subjects=60, visits=VISITS, seed=17003)
    table = endpoint_table(spec)
    name = "we2008_cMFTC_ThCtAB_mm"
    result = analyse(table, LongitudinalConfig(), shipped_precision())
    assert name in result.knee_visits.biomarkers
    assert not any(b.startswith(("true_", "latent_")) for b in result.knee_visits.biomarkers)
    assert result.klg_source == "results table column baseline_klg at baseline"
    assert set(result.changes["months_source"]) == {"table"}
    wide = table.pivot_table(index=["subject", "side"], columns="visit", values=name)
    klg = table.loc[table["visit"] == "V00"].set_index(["subject", "side"])["baseline_klg"]
    two_years = (wide["V03"] - wide["V00"]).rename("truth").reset_index()
    got = result.changes.loc[
        (result.changes["biomarker"] == name) & (result.changes["visit"] == "V03")
    ].merge(two_years, on=["subject", "side"])
    assert len(got) == 120
    assert np.allclose(got["change"], got["truth"], atol=1e-12)
    oa = (wide["V03"] - wide["V00"])[klg.reindex(wide.index) >= 2]
    row = cell(result.summary, name, "V03", "KL>=2")
    assert row["n"] == len(oa)
    assert row["srm"] == pytest.approx(oa.mean() / oa.std(ddof=1))
    assert row["share_increase"] == pytest.approx(float((oa > 0).mean()))


def test_item_qc_and_a_precision_table_of_ones_own(tmp_path: Path) -> None:
    from kneescope.biomarkers.change import Precision, PrecisionTable

    table, _ = truth_table(5)
    failed_base = (table["subject"] == "9000000") & (table["side"] == "right")
    failed_base &= table["visit"] == "V00"
    failed_v03 = (table["subject"] == "9000001") & (table["side"] == "left")
    failed_v03 &= table["visit"] == "V03"
    table.loc[failed_base | failed_v03, "qc_ok"] = False
    strict = analyse(table, only({"qc_ok_only": True}), shipped_precision())
    loose = analyse(table, only(), shipped_precision())
    assert cell(loose.summary, THICKNESS, "V01", "all")["n"] == 10
    assert cell(strict.summary, THICKNESS, "V01", "all")["n"] == 9  # its baseline failed
    assert cell(strict.summary, THICKNESS, "V03", "all")["n"] == 8  # and one V03 failed
    assert strict.qc.empty  # item QC is not a longitudinal flag
    # the SDC95 from a precision table given as an option (relative to the workspace)
    ws = tmp_path / "ws"
    run_dir = ws / "runs" / "mri"
    run_dir.mkdir(parents=True)
    own = PrecisionTable({THICKNESS: Precision(sd=0.05, cv_pct=2.0, knees=4, scans=3)}, "mine")
    (ws / "precision.json").write_text(own.to_json())
    step = StepConfig(
        name="longitudinal",
        options={"biomarkers": [THICKNESS, VOLUME], "precision": "precision.json"},
    )
    run_cohort_steps([step], records(table), run_dir, None)
    changes = pd.read_parquet(run_dir / "cohort" / "longitudinal" / "longitudinal_changes.parquet")
    thick = changes.loc[changes["biomarker"] == THICKNESS]
    assert np.allclose(thick["sdc95"], sdc95(0.05))
    assert (thick["exceeds_sdc95"] == (thick["change"].abs() > sdc95(0.05))).all()
    assert changes.loc[changes["biomarker"] == VOLUME, "sdc95"].isna().all()  # not in it
    (entry,) = json.loads((run_dir / RESULTS_FILE).read_text())["steps"]
    assert entry["values"]["precision_source"].startswith("mine (read from ")


def test_bone_volumes_from_measure_win_over_areas_that_follow_cartilage_cover() -> None:
    """A KL 4 knee whose femoral tAB shrinks 8 % by V03 as its cartilage cover goes (the bone
    surface the plate's footprint takes in), while its bones stay as they were: with
    ``measure``'s bone volumes in the table the bone-size check sums those and flags nothing;
    from the areas alone it would flag a knee that is the same knee."""
    table, _ = truth_table(4)
    shrink = (table["subject"] == "9000000") & (table["side"] == "right")
    shrink &= table["visit"] == "V03"
    table.loc[shrink, BONES[0]] *= 0.92
    areas_only = analyse(table, only(), shipped_precision())
    assert areas_only.bone_columns == BONES
    assert set(zip(areas_only.qc["subject"], areas_only.qc["visit"], strict=True)) == {
        ("9000000", "V03")
    }
    volumes = {"femur": 130_000.0, "tibia": 70_000.0, "patella": 9_000.0}
    for bone, mm3 in volumes.items():
        size = table["subject"].map({f"900000{i}": 1.0 + 0.1 * i for i in range(4)})
        table[f"{bone}_bone_volume_mm3"] = mm3 * size
    result = analyse(table, only(), shipped_precision())
    assert result.bone_columns == tuple(f"{b}_bone_volume_mm3" for b in volumes)
    assert result.qc.empty and result.values()["bone_checked"] == 4 * 2 * 2
