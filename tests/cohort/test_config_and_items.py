"""Pipeline configs from TOML, item sources (CSV, glob, inline rows) and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cohort_helpers import write_cohort, write_toml_config

from kneescope.cohort.item import file_checksum
from kneescope.cohort.item_sources import iter_items
from kneescope.cohort.pipeline_config import ExecutorConfig, ItemsConfig, PipelineConfig
from kneescope.config import load_config
from kneescope.errors import ConfigError, InputError


def test_toml_round_trip(tmp_path: Path) -> None:
    executor = ExecutorConfig(kind="slurm", queue="debug", account="a", gpus=1, workers=4)
    path = write_toml_config(
        tmp_path / "p.toml",
        "r1",
        tmp_path / "items.csv",
        executor,
        [("load_array", {}), ("array_stats", {"write_json": True})],
    )
    config = load_config(PipelineConfig, path)
    assert config.executor == executor
    assert config.steps[1].options == {"write_json": True}
    assert config.output_format == "parquet" and config.max_attempts == 3
    assert config.executor.in_flight_limit() == 2 * 4 + 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nsteps = [{name = "noop"}]\n[items]\n', "exactly one item source"),
        ('name = "x y"\nsteps = [{name = "noop"}]\n[items]\nglob = "*"\n', "name"),
        ('name = "x"\nsteps = []\n[items]\nglob = "*"\n', "steps"),
        (
            'name = "x"\nsteps = [{name = "noop"}]\n[items]\nglob = "*"\n'
            '[executor]\nkind = "address"\n',
            "needs address",
        ),
        ('name = "x"\nsteps = [{name = "noop"}]\nretries = 3\n[items]\nglob = "*"\n', "retries"),
    ],
)
def test_bad_configs_are_one_line_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(PipelineConfig, path)
    assert "\n" not in str(info.value)


def test_csv_items_resolve_paths_against_the_list(tmp_path: Path) -> None:
    write_cohort(tmp_path / "data", 3)
    items = list(iter_items(ItemsConfig(list="data/items.csv"), tmp_path))
    assert [i.item_id for i in items] == ["S000-V00-R", "S001-V00-R", "S002-V00-R"]
    assert items[1].side == "left" and items[1].visit == "V00" and items[1].series == "DESS-1"
    assert all(Path(i.path or "").is_file() for i in items)


def test_glob_and_rows_sources(tmp_path: Path) -> None:
    write_cohort(tmp_path / "data", 2)
    globbed = list(iter_items(ItemsConfig(glob="data/*.npy"), tmp_path))
    assert [i.item_id for i in globbed] == ["data/vol000.npy", "data/vol001.npy"]
    rows = ItemsConfig.model_validate({"rows": [{"item_id": "a", "side": "left"}]})
    assert [(i.item_id, i.side, i.path) for i in iter_items(rows, tmp_path)] == [
        ("a", "left", None)
    ]
    with pytest.raises(InputError, match="no files match"):
        list(iter_items(ItemsConfig(glob="*.nii.gz"), tmp_path))


def test_item_list_errors(tmp_path: Path) -> None:
    (tmp_path / "dup.csv").write_text("item_id,path\na,x.npy\na,y.npy\n")
    with pytest.raises(InputError, match="appears twice"):
        list(iter_items(ItemsConfig(list="dup.csv"), tmp_path))
    (tmp_path / "cols.csv").write_text("item_id,knee\na,R\n")
    with pytest.raises(InputError, match="unknown columns"):
        list(iter_items(ItemsConfig(list="cols.csv"), tmp_path))
    with pytest.raises(InputError, match="no such item list"):
        list(iter_items(ItemsConfig(list="missing.csv"), tmp_path))


def test_checksum_follows_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.zeros(10))
    np.save(b, np.zeros(10))
    assert file_checksum(a) == file_checksum(b)
    np.save(b, np.ones(10))
    assert file_checksum(a) != file_checksum(b)
    with pytest.raises(InputError, match="cannot read item input"):
        file_checksum(tmp_path / "gone.npy")
