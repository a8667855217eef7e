"""Adversarial cases for multi-series items, the catalog view and cohort-level steps: damaged
or tampered state files, output names that try to leave their folder, odd paths."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from kneescope.catalog.database import Catalog
from kneescope.catalog.view import CatalogView, replay_digest
from kneescope.cohort.cohort_steps import RESULTS_FILE, run_cohort_steps
from kneescope.cohort.item import Item, ItemPart
from kneescope.cohort.manifest import Manifest
from kneescope.cohort.pipeline_config import StepConfig
from kneescope.errors import InputError, RunError

ROWS = [
    {"item_id": "a", "subject": "S1", "visit": "V00", "side": "right", "value": 1.5},
    {"item_id": "b", "subject": "S1", "visit": "V00", "side": "left", "value": 2.0},
]


def _sum_step(**options: str) -> tuple[StepConfig, ...]:
    return (StepConfig(name="test_column_sum", options=dict(options)),)


def test_a_damaged_cohort_results_file_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    (tmp_path / RESULTS_FILE).write_text('{"format": "kneescope-cohort-res')  # cut short
    outcome = run_cohort_steps(_sum_step(), ROWS, tmp_path, None)
    assert outcome.ran == ("test_column_sum",)
    data = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert data["steps"][0]["values"] == {"sum": 3.5, "rows": 2}
    # a file naming another format is not trusted either
    data["format"] = "something-else"
    (tmp_path / RESULTS_FILE).write_text(json.dumps(data))
    assert run_cohort_steps(_sum_step(), ROWS, tmp_path, None).ran == ("test_column_sum",)
    assert run_cohort_steps(_sum_step(), ROWS, tmp_path, None).skipped == ("test_column_sum",)


def test_a_changed_row_or_a_changed_output_reruns_the_step(tmp_path: Path) -> None:
    run_cohort_steps(_sum_step(filename="sum.txt"), ROWS, tmp_path, None)
    changed = [dict(ROWS[0], value=10.0), ROWS[1]]
    outcome = run_cohort_steps(_sum_step(filename="sum.txt"), changed, tmp_path, None)
    assert outcome.ran == ("test_column_sum",)
    written = tmp_path / "cohort" / "test_column_sum" / "sum.txt"
    assert written.read_text() == "12.0\n"
    written.write_text("999\n")  # edited by hand: not trusted, computed again
    again = run_cohort_steps(_sum_step(filename="sum.txt"), changed, tmp_path, None)
    assert again.ran == ("test_column_sum",) and written.read_text() == "12.0\n"
    # timings and workers are not what a step sees: a re-run with only those changed skips it
    timed = [dict(r, time_total_s=7.0, worker="h:1", attempts=2) for r in changed]
    assert run_cohort_steps(_sum_step(filename="sum.txt"), timed, tmp_path, None).ran == ()


@pytest.mark.parametrize("name", ["../escape.txt", "sub/dir.txt", ".hidden", "/tmp/abs.txt"])
def test_an_output_name_cannot_leave_the_step_folder(tmp_path: Path, name: str) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(RunError, match="must be a plain file name"):
        run_cohort_steps(_sum_step(filename=name), ROWS, run_dir, None)
    assert not (tmp_path / "escape.txt").exists()
    entry = json.loads((run_dir / RESULTS_FILE).read_text())["steps"][0]
    assert entry["ok"] is False and "plain file name" in entry["reason"]


def test_a_tampered_catalog_read_log_asks_nothing_and_counts_as_changed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    Catalog.open(url).close()
    view = CatalogView(url, tmp_path)
    for reads in (
        [{"call": "__init__", "args": {"url": "sqlite:////etc/passwd"}, "digest": "x"}],
        [{"call": "recording", "args": {}, "digest": "x"}],
        [{"call": "visits", "args": "S1", "digest": "x"}],
        [{"call": "visits", "args": {"subject": "S1", "extra": 1}, "digest": "x"}],
    ):
        assert replay_digest(view, reads) is None
    assert view.visits("nobody") == [] and view.clinical("nobody") == {}
    with pytest.raises(InputError, match="needs a visit"):
        view.clinical("S1", side="right")
    with pytest.raises(InputError, match="not a visit code"):
        view.clinical("S1", visit="yesterday")


def test_a_recording_view_pickles_without_its_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    Catalog.open(url).close()
    view = CatalogView(url, tmp_path).recording()
    view.subjects()
    assert len(view.reads) == 1
    clone = pickle.loads(pickle.dumps(view))
    assert clone.reads == [] and clone.subjects() == [] and clone.reads == []


def test_item_parts_with_odd_paths_survive_the_manifest(tmp_path: Path) -> None:
    parts = (
        ItemPart("1.2.3", str(tmp_path / 'a, b "quoted" é.nii.gz'), "V00", "right", "DESS"),
        ItemPart("1.2.4", str(tmp_path / "line\nbreak"), "V01", "", "XR_PA", "radiograph"),
    )
    item = Item(
        "knee-S/../1-right",
        "S/../1",
        side="right",
        input_checksum="c" * 32,
        from_catalog=True,
        unit="knee_longitudinal",
        parts=parts,
    )
    with Manifest(tmp_path / "manifest.sqlite") as manifest:
        manifest.sync([(item, "k1")])
        (queued,) = manifest.queued(-1, 10, 3)
    assert queued.item == item
    assert queued.item.visits == ("V00", "V01") and queued.item.paths == tuple(
        p.path for p in parts
    )
