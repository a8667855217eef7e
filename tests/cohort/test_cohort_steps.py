"""Cohort-level steps: run after every item on the whole results table plus the catalog view,
resumable by what they saw.

The test cohort step (``test_visit_means`` of the test plug-in distribution, registered under
``kneescope.cohort_steps``) averages a results column per visit and the clinical variable
XRKL over the same knees, read through the catalog view. On a synthetic catalog both equal the
truth table's KL grades.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from synth_catalog import SynthCatalog, copy_synth_catalog, kneescope

from kneescope.cohort.cohort_steps import RESULTS_FILE
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import RunResult, run_pipeline
from kneescope.errors import ConfigError
from kneescope.workspace import Workspace


@pytest.fixture
def template(synth_catalog_template: SynthCatalog) -> SynthCatalog:
    return synth_catalog_template


@pytest.fixture
def cat(template: SynthCatalog, tmp_path: Path) -> SynthCatalog:
    return copy_synth_catalog(template, tmp_path)


def _config(cat: SynthCatalog, **options: Any) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "knees",
            "items": {"catalog": {"subject": cat.subject}, "unit": "radiograph_knee"},
            "steps": [{"name": "test_item_fields"}],
            "cohort_steps": [{"name": "test_visit_means", "options": options}],
        }
    )


def _run(cat: SynthCatalog, **options: Any) -> RunResult:
    return run_pipeline(_config(cat, **options), Workspace.resolve(cat.workspace))


def _step_entry(result: RunResult) -> dict[str, Any]:
    data = json.loads((result.run_dir / RESULTS_FILE).read_text())
    (entry,) = data["steps"]
    assert entry["name"] == "test_visit_means"
    return dict(entry)


def _truth_klg_means(cat: SynthCatalog, override: dict[tuple[str, str], float] | None = None):  # type: ignore[no-untyped-def]
    by_visit: dict[str, list[float]] = {}
    for row in cat.xray_truth():
        key = (row["Visit"], row["Side"])
        value = (override or {}).get(key, float(row["KLG"]))
        by_visit.setdefault(row["Visit"], []).append(value)
    return {v: sum(x) / len(x) for v, x in by_visit.items()}


def test_cohort_step_sees_every_result_and_the_catalog_clinical_values(cat: SynthCatalog) -> None:
    result = _run(cat)
    assert result.cohort is not None
    assert (result.cohort.ran, result.cohort.skipped) == (("test_visit_means",), ())
    entry = _step_entry(result)
    truth = _truth_klg_means(cat)
    assert entry["ok"] is True
    assert entry["values"]["rows"] == result.done == 4  # the whole table, every knee
    assert entry["values"]["mean_by_visit"] == pytest.approx(truth)
    assert entry["values"]["clinical_mean_by_visit"] == pytest.approx(truth)
    # the questions it asked the catalog are recorded (one per knee)
    assert [r["call"] for r in entry["catalog_reads"]] == ["clinical"] * 4
    # its file was written into RUN/cohort/<step>/ and is recorded with its digest
    csv_path = result.run_dir / entry["files"]["visit_means"]["path"]
    assert csv_path == result.run_dir / "cohort" / "test_visit_means" / "visit_means.csv"
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "visit,mean,clinical_mean" and len(lines) == 1 + len(truth)
    assert not [p for p in csv_path.parent.iterdir() if p.name.startswith(".")]  # no temporaries


def test_a_rerun_with_nothing_changed_skips_it_and_a_changed_item_reruns_it(
    cat: SynthCatalog,
) -> None:
    first = _run(cat)
    before = _step_entry(first)
    second = _run(cat)
    assert second.ran == 0
    assert second.cohort is not None
    assert (second.cohort.ran, second.cohort.skipped) == ((), ("test_visit_means",))
    assert _step_entry(second) == before  # kept as it was, not recomputed
    # a deleted output file makes it run again
    (first.run_dir / before["files"]["visit_means"]["path"]).unlink()
    third = _run(cat)
    assert third.cohort is not None and third.cohort.ran == ("test_visit_means",)
    # a changed item (the V01 film touched and ingested again): its two knees and the
    # cohort step run again
    v01 = next(r for r in cat.xray_truth() if r["Visit"] == "V01")
    film = cat.synth / v01["Folder"]
    for f in film.rglob("*"):
        if f.is_file():
            st = f.stat()
            os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    kneescope("ingest", str(cat.synth), "-w", str(cat.workspace), "-j", "1")
    fourth = _run(cat)
    assert fourth.ran == 2
    assert fourth.cohort is not None and fourth.cohort.ran == ("test_visit_means",)
    # a changed option re-runs it too
    fifth = _run(cat, variable="XRJSM")
    assert fifth.ran == 0
    assert fifth.cohort is not None and fifth.cohort.ran == ("test_visit_means",)


def test_a_changed_clinical_value_it_read_reruns_it(cat: SynthCatalog, tmp_path: Path) -> None:
    first = _run(cat)
    assert first.cohort is not None and first.cohort.ran == ("test_visit_means",)
    # the right knee's V00 KL grade is corrected in the clinical tables
    table = tmp_path / "kl_correction.csv"
    table.write_text(f"ID,SIDE,V00XRKL\n{cat.subject},1,4: severe\n")
    kneescope("ingest", str(table), "--kind", "clinical", "-w", str(cat.workspace))
    second = _run(cat)
    assert second.ran == 0  # no item input changed
    assert second.cohort is not None and second.cohort.ran == ("test_visit_means",)
    values = _step_entry(second)["values"]
    corrected = _truth_klg_means(cat, {("V00", "right"): 4.0})
    assert values["clinical_mean_by_visit"] == pytest.approx(corrected)
    assert values["clinical_mean_by_visit"]["V00"] != pytest.approx(_truth_klg_means(cat)["V00"])


def test_an_unknown_cohort_step_fails_before_any_item_runs(cat: SynthCatalog) -> None:
    config = _config(cat).model_copy(
        update={"cohort_steps": (_config(cat).cohort_steps[0].model_copy(update={"name": "nope"}),)}
    )
    with pytest.raises(ConfigError, match=r"unknown cohort step 'nope'.*kneescope.cohort_steps"):
        run_pipeline(config, Workspace.resolve(cat.workspace))
    assert not (cat.workspace / "runs" / "knees").exists()
    with pytest.raises(ConfigError, match="bad options"):
        _run(cat, colour="red")


def test_a_failing_cohort_step_is_recorded_and_stops_the_run(cat: SynthCatalog) -> None:
    with pytest.raises(KeyError):
        _run(cat, column="no_such_column")  # a bug in the step: its error propagates
    data = json.loads((cat.workspace / "runs" / "knees" / RESULTS_FILE).read_text())
    (entry,) = data["steps"]
    assert entry["ok"] is False and "KeyError" in entry["reason"]
    # the items are done and kept: the next run only re-runs the cohort step
    result = _run(cat)
    assert result.ran == 0 and result.cohort is not None
    assert result.cohort.ran == ("test_visit_means",)


@pytest.mark.slow  # default suite time; its logic is covered by faster tests
def test_kneescope_run_reports_its_cohort_steps(cat: SynthCatalog) -> None:
    config = cat.workspace / "knees.toml"
    config.write_text(
        'name = "knees"\n\n[items]\nunit = "radiograph_knee"\n'
        f'catalog = {{ subject = "{cat.subject}" }}\n\n'
        '[[steps]]\nname = "test_item_fields"\n\n'
        '[[cohort_steps]]\nname = "test_visit_means"\n'
    )
    ws = ["-w", str(cat.workspace)]
    plan = json.loads(kneescope("run", "-c", str(config), "--dry-run", "--json", *ws).stdout)
    assert plan["plan"]["cohort_steps"] == ["test_visit_means"]
    assert plan["plan"]["to_run"] == 4  # two knees on each of two films
    first = json.loads(kneescope("run", "-c", str(config), "--json", *ws).stdout)
    assert (first["done"], first["cohort_steps_ran"]) == (4, ["test_visit_means"])
    assert first["cohort_results"] == str(cat.workspace / "runs" / "knees" / RESULTS_FILE)
    again = json.loads(kneescope("run", "-c", str(config), "--json", *ws).stdout)
    assert (again["ran"], again["cohort_steps_skipped"]) == (0, ["test_visit_means"])
