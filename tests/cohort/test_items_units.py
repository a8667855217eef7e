"""Items beyond one series: each ``items.unit`` on a real synthetic catalog.

The catalog comes from ``kneescope synth`` + ``kneescope ingest`` (a bilateral PA knee film
at V00 and V01, a full-leg film at V00, clinical tables) plus two right-knee MRI files; the
synthetic truth tables say which film is where and each knee's KL grade.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from synth_catalog import SynthCatalog, copy_synth_catalog, kneescope

from kneescope.catalog.view import CatalogView
from kneescope.cohort.item_sources import iter_items
from kneescope.cohort.pipeline_config import ItemsConfig, PipelineConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.core import Volume
from kneescope.errors import InputError
from kneescope.io import write_nifti
from kneescope.workspace import Workspace


@pytest.fixture
def template(synth_catalog_template: SynthCatalog) -> SynthCatalog:
    return synth_catalog_template


@pytest.fixture
def cat(template: SynthCatalog, tmp_path: Path) -> SynthCatalog:
    return copy_synth_catalog(template, tmp_path)


def _items(cat: SynthCatalog, unit: str, **selection: str) -> list:  # type: ignore[type-arg]
    ws = Workspace.resolve(cat.workspace)
    config = ItemsConfig(catalog={"subject": cat.subject, **selection}, unit=unit)  # type: ignore[arg-type]
    return list(iter_items(config, cat.workspace, ws.catalog_url, ws.root))


def _run(cat: SynthCatalog, unit: str, name: str = "units") -> pd.DataFrame:
    config = PipelineConfig.model_validate(
        {
            "name": name,
            "items": {"catalog": {"subject": cat.subject}, "unit": unit},
            "steps": [{"name": "test_item_fields"}],
            "output_format": "csv",
        }
    )
    result = run_pipeline(config, Workspace.resolve(cat.workspace))
    assert result.failed == 0
    return pd.read_csv(result.results_path, keep_default_na=False, dtype={"subject": str})


def test_radiograph_knee_unit_gives_each_knee_of_every_bilateral_film(cat: SynthCatalog) -> None:
    truth = {(r["Visit"], r["Side"]): r for r in cat.xray_truth()}
    items = _items(cat, "radiograph_knee")
    assert sorted((i.visit, i.side) for i in items) == sorted(truth)
    assert len({i.item_id for i in items}) == len(items) == 4
    for item in items:
        film = (cat.synth / truth[(item.visit, item.side)]["Folder"]).resolve()
        assert Path(item.path).resolve() == film  # both knees read the same film
        assert item.unit == "radiograph_knee" and item.subject == cat.subject
    by_film: dict[str, set[str]] = {}
    for item in items:
        by_film.setdefault(item.path, set()).add(item.side)
    assert list(by_film.values()) == [{"right", "left"}] * 2
    # a side filter picks that knee of every bilateral film (the films have no side)
    rights = _items(cat, "radiograph_knee", side="R")
    assert [(i.item_id, i.side) for i in rights] == [
        (i.item_id, i.side) for i in items if i.side == "right"
    ]
    # through a run: the step sees the knee's side and reads its KL grade from the catalog
    table = _run(cat, "radiograph_knee")
    assert len(table) == 4
    for row in table.itertuples():
        assert row.unit == "radiograph_knee" and row.n_inputs == 1 and row.inputs_exist
        assert row.klg == float(truth[(str(row.visit), str(row.side))]["KLG"])
        assert row.catalog_visits == "V00,V01"


def test_full_leg_unit_gives_one_item_per_film(cat: SynthCatalog) -> None:
    legs = cat.leg_truth()
    folders = {r["Folder"] for r in legs}
    items = _items(cat, "full_leg")
    assert len(items) == len(folders) == 1
    (item,) = items
    assert Path(item.path).resolve() == (cat.synth / folders.pop()).resolve()
    assert (item.unit, item.side, item.visit) == ("full_leg", "", legs[0]["Visit"])


def test_subject_visit_unit_holds_every_series_of_the_visit(cat: SynthCatalog) -> None:
    items = {i.visit: i for i in _items(cat, "subject_visit")}
    assert sorted(items) == ["V00", "V01"]
    assert [p.sequence for p in items["V00"].parts] == ["DESS", "XR_FULL_LEG", "XR_PA"]
    assert [p.sequence for p in items["V01"].parts] == ["DESS", "XR_PA"]
    for visit, item in items.items():
        assert item.item_id == f"subject-{cat.subject}-{visit}"
        assert item.path is None and item.side == "" and item.visits == (visit,)
        assert all(Path(p).exists() for p in item.paths)
        assert {p.visit for p in item.parts} == {visit}
    assert items["V00"].input_checksum != items["V01"].input_checksum


def test_knee_longitudinal_unit_orders_one_knee_across_visits(cat: SynthCatalog) -> None:
    items = {i.side: i for i in _items(cat, "knee_longitudinal")}
    assert sorted(items) == ["left", "right"]
    right, left = items["right"], items["left"]
    assert right.item_id == f"knee-{cat.subject}-right" and right.visit == ""
    assert [(p.visit, p.sequence) for p in right.parts] == [
        ("V00", "DESS"),
        ("V00", "XR_FULL_LEG"),
        ("V00", "XR_PA"),
        ("V01", "DESS"),
        ("V01", "XR_PA"),
    ]
    # the bilateral films belong to both knees; the right-knee MRI only to the right one
    assert [(p.visit, p.sequence) for p in left.parts] == [
        ("V00", "XR_FULL_LEG"),
        ("V00", "XR_PA"),
        ("V01", "XR_PA"),
    ]
    assert right.visits == left.visits == ("V00", "V01")
    (only_left,) = _items(cat, "knee_longitudinal", side="left")
    assert only_left == left
    assert {p.side for p in right.parts} == {"right", ""}
    table = _run(cat, "knee_longitudinal")
    assert sorted(table["item_visits"]) == ["V00,V01", "V00,V01"]
    assert sorted(table["n_inputs"]) == [3, 5]
    assert sorted(table["part_sequences"]) == [
        "DESS,XR_FULL_LEG,XR_PA,DESS,XR_PA",
        "XR_FULL_LEG,XR_PA,XR_PA",
    ]


def test_multi_series_items_resume_on_every_file_they_read(cat: SynthCatalog) -> None:
    config = PipelineConfig.model_validate(
        {
            "name": "visits",
            "items": {"catalog": {"subject": cat.subject}, "unit": "subject_visit"},
            "steps": [{"name": "test_item_fields"}],
        }
    )
    ws = Workspace.resolve(cat.workspace)
    first = run_pipeline(config, ws)
    assert (first.total, first.ran, first.failed) == (2, 2, 0)
    assert run_pipeline(config, ws).ran == 0  # nothing changed: nothing runs
    # one series of V01 changes (its file rewritten, ingested again): only V01 runs again
    changed = cat.workspace / "mri" / f"{cat.subject}_V01_R.nii.gz"
    write_nifti(Volume(np.full((6, 5, 4), 7.0, dtype=np.float32), np.eye(4)), changed)
    kneescope("ingest", str(cat.workspace / "mri"), "-w", str(cat.workspace), "-j", "1")
    again = run_pipeline(config, ws)
    assert (again.ran, again.skipped) == (1, 1)
    table = pd.read_parquet(again.results_path)
    assert sorted(table["visit"]) == ["V00", "V01"]
    assert set(table["part_sequences"]) == {"DESS,XR_FULL_LEG,XR_PA", "DESS,XR_PA"}


def test_items_and_catalog_view_pickle_small(cat: SynthCatalog) -> None:
    ws = Workspace.resolve(cat.workspace)
    for unit in ("radiograph_knee", "subject_visit", "knee_longitudinal"):
        for item in _items(cat, unit):
            assert pickle.loads(pickle.dumps(item)) == item
    view = CatalogView(ws.catalog_url, ws.root)
    assert view.visits(cat.subject) == ["V00", "V01"]  # opened before pickling
    data = pickle.dumps(view)
    assert len(data) < 500
    clone = pickle.loads(data)
    assert clone.visits(cat.subject) == ["V00", "V01"]
    assert clone.clinical(cat.subject, "V00", "right")["XRKL"] == float(
        next(r["KLG"] for r in cat.xray_truth() if (r["Visit"], r["Side"]) == ("V00", "right"))
    )


def test_a_unit_needs_a_catalog_selection_and_a_match(cat: SynthCatalog, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unit 'full_leg' needs a catalog selection"):
        ItemsConfig(glob="*.nii.gz", unit="full_leg")
    with pytest.raises(InputError, match="matches no full-leg radiographs"):
        _items(cat, "full_leg", visit="V01")  # the synthetic full-leg film is at V00 only
    with pytest.raises(ValidationError):
        ItemsConfig.model_validate({"catalog": {"subject": "x"}, "unit": "knee"})
