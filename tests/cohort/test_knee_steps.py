"""The real knee steps through the runner: segment with a model file (loaded once per worker),
measure a label map against measure_knee itself, and a catalog selection as the item source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kneescope.biomarkers import measure_knee
from kneescope.biomarkers.knee_phantom import render_compact_toy_knee
from kneescope.cohort.item_task import worker_steps
from kneescope.cohort.pipeline_config import ExecutorConfig, PipelineConfig, StepConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.core import Volume
from kneescope.errors import ConfigError
from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, save_model
from kneescope.io import read_volume, write_nifti
from kneescope.models import NetworkConfig, build_network
from kneescope.workspace import Workspace


def _tiny_model_file(path: Path, seed: int = 0) -> Path:
    config = NetworkConfig(
        name="unet",
        spatial_dims=3,
        out_channels=3,
        features=(4, 8),
        strides=(2,),
        num_res_units=0,
    )
    torch.manual_seed(seed)
    spec = ModelSpec(
        network=config,
        mode="3d",
        labels={1: "femur", 2: "femoral_cartilage"},
        spacing_mm=(1.0, 1.0, 1.0),
        orientation="RAS",
        roi_size_vox=(8, 8, 8),
    )
    return save_model(
        SegmentationModel(spec=spec, state_dict=build_network(config).state_dict()), path
    )


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        image = Volume(rng.normal(100, 20, (12, 16, 10)).astype(np.float32), affine)
        paths.append(write_nifti(image, folder / f"img{i}.nii.gz"))
    return paths


def test_segment_writes_label_maps_on_the_input_grid(tmp_path: Path) -> None:
    model = _tiny_model_file(tmp_path / "model.pt")
    _images(tmp_path / "data", 3)
    config = PipelineConfig.model_validate(
        {
            "name": "seg",
            "items": {"glob": "data/*.nii.gz"},
            "steps": [
                {"name": "load_volume"},
                {"name": "segment", "options": {"model": str(model), "device": "cpu"}},
            ],
        }
    )
    result = run_pipeline(config, Workspace.resolve(tmp_path / "ws"), base_dir=tmp_path)
    assert (result.done, result.failed) == (3, 0)
    assert len(result.model_hash) == 16
    table = pd.read_parquet(result.results_path)
    for row in table.itertuples():
        labels = read_volume(Path(row.file_segment_labels))
        image = read_volume(Path(row.input_path))
        assert labels.array.shape == image.array.shape
        np.testing.assert_allclose(labels.affine_ras, image.affine_ras, atol=1e-5)
        assert labels.array.dtype == np.uint8 and int(labels.array.max()) <= 2
    assert (table["time_infer_s"] > 0).all() and (table["time_preprocess_s"] > 0).all()
    assert (table["model_hash"] == result.model_hash).all()
    # The model was loaded once for the process: the cached step holds one Segmenter.
    (_load, segment) = worker_steps(config.steps)
    assert segment._segmenter is not None  # type: ignore[attr-defined]
    assert worker_steps(config.steps)[1] is segment
    # A new model file changes the key: every item re-runs.
    _tiny_model_file(model, seed=1)
    again = run_pipeline(config, Workspace.resolve(tmp_path / "ws"), base_dir=tmp_path)
    assert again.ran == 3 and again.model_hash != result.model_hash


def test_measure_matches_measure_knee(tmp_path: Path) -> None:
    toy = render_compact_toy_knee()
    path = write_nifti(toy.labels, tmp_path / "knee_labels.nii.gz")
    config = PipelineConfig.model_validate(
        {
            "name": "measure",
            "items": {"rows": [{"item_id": "toy", "side": "right", "path": str(path)}]},
            "steps": [{"name": "load_labels"}, {"name": "measure"}],
        }
    )
    result = run_pipeline(config, Workspace.resolve(tmp_path / "ws"))
    assert result.done == 1, result
    row = pd.read_parquet(result.results_path).iloc[0]
    truth = measure_knee(read_volume(path), "right", with_maps=False).values
    assert row["measured_side"] == "right" and row["side"] == "right"
    compared = 0
    for key, value in truth.items():
        if np.isfinite(value):
            assert row[key] == pytest.approx(value, rel=1e-9), key
            compared += 1
    assert compared > 10
    assert (row["time_measure_s"] > 0) and row["time_read_s"] > 0


def test_measure_declares_every_column_it_returns_with_its_kind() -> None:
    """The biomarkers capability's declared columns are exactly the row measure_knee builds,
    for a whole knee and for one missing structures (its NaN and flag paths)."""
    from kneescope.capabilities.biomarkers.results import MEASURE_RESULTS
    from kneescope.cohort.step import value_problem

    declared = {c.name: c for c in MEASURE_RESULTS}
    assert len(declared) == len(MEASURE_RESULTS)
    toy = render_compact_toy_knee()
    partial = toy.labels.array.copy()
    partial[np.isin(partial, (7, 8))] = 0  # no patellar cartilage, no medial meniscus
    for labels in (toy.labels, Volume(partial, toy.labels.affine_ras)):
        row = measure_knee(labels, "right", with_maps=False).as_row()
        row["measured_side"] = row.pop("side")
        assert set(row) == set(declared)
        problems = [value_problem("measure", declared, k, v) for k, v in row.items()]
        assert [p for p in problems if p] == []
    units = {c.unit for c in MEASURE_RESULTS if c.name.endswith("_mm")}
    assert units == {"mm"}


def test_measure_refuses_a_volume_range_it_has_no_column_for() -> None:
    from kneescope.cohort.step_registry import build_steps

    ranges = {"femur": {"low": 1.0, "high": 2.0}}
    with pytest.raises(ConfigError, match="volume_ranges_mm3 names \\['femur'\\]"):
        build_steps([StepConfig(name="measure", options={"volume_ranges_mm3": ranges})])
    with pytest.raises(ConfigError, match="measure options: side"):
        build_steps([StepConfig(name="measure", options={"side": "up"})])


def test_segment_step_refuses_a_missing_model(tmp_path: Path) -> None:
    from kneescope.cohort.step_registry import build_steps

    with pytest.raises(ConfigError, match="cannot read model"):
        build_steps([StepConfig(name="segment", options={"model": str(tmp_path / "x.pt")})])
    model = _tiny_model_file(tmp_path / "m.pt")
    with pytest.raises(ConfigError, match="segment options"):
        build_steps([StepConfig(name="segment", options={"model": str(model), "tta": "maybe"})])


def test_catalog_selection_is_an_item_source(tmp_path: Path) -> None:
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.manifest import import_manifest

    images = _images(tmp_path / "cohort", 3)
    lines = ["path,subject,visit,side,sequence"]
    for i, p in enumerate(images):
        lines.append(f"{p.name},S{i},V00,{'right' if i else 'left'},{'DESS' if i < 2 else 'TSE'}")
    (tmp_path / "cohort" / "manifest.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace.resolve(tmp_path / "ws").ensure()
    with Catalog.for_workspace(ws, create=True) as catalog:
        import_manifest(catalog, tmp_path / "cohort" / "manifest.csv")
    config = PipelineConfig.model_validate(
        {
            "name": "fromcat",
            "items": {"catalog": {"sequence": "DESS"}},
            "steps": [{"name": "load_volume"}],
            "executor": ExecutorConfig().model_dump(),
        }
    )
    result = run_pipeline(config, ws)
    table = pd.read_parquet(result.results_path)
    assert sorted(table["subject"]) == ["S0", "S1"]
    assert sorted(table["side"]) == ["left", "right"]
    assert set(table["image_shape"]) == {"12x16x10"}
    assert table["input_checksum"].str.len().min() > 0
    bad = config.model_copy(
        update={"items": config.items.model_copy(update={"catalog": {"knee": "R"}})}
    )
    with pytest.raises(ConfigError, match=r"items\.catalog"):
        run_pipeline(bad, ws)
