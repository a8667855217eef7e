"""Helpers of the cohort tests: small real cohorts on disk and pipeline configs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.cohort.pipeline_config import ExecutorConfig, PipelineConfig


def write_cohort(folder: Path, n: int, corrupt: tuple[int, ...] = ()) -> dict[str, float]:
    """``n`` small .npy volumes (4x5x6 float32, value = 10 * i + 0.5) and a items.csv.

    Returns the true mean per item id. Items whose index is in ``corrupt`` hold garbage bytes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, float] = {}
    lines = ["item_id,subject,visit,side,series,path"]
    for i in range(n):
        path = folder / f"vol{i:03d}.npy"
        item_id = f"S{i:03d}-V00-R"
        if i in corrupt:
            path.write_bytes(b"\x93NUMPY garbage that is not an array")
        else:
            np.save(path, np.full((4, 5, 6), 10.0 * i + 0.5, dtype=np.float32))
            truth[item_id] = 10.0 * i + 0.5
        side = "right" if i % 2 == 0 else "left"
        lines.append(f"{item_id},S{i:03d},V00,{side},DESS-{i},{path.name}")
    (folder / "items.csv").write_text("\n".join(lines) + "\n")
    return truth


def pipeline(
    name: str,
    folder: Path,
    executor: ExecutorConfig,
    steps: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> PipelineConfig:
    """A pipeline over ``folder/items.csv`` (load + stats unless ``steps`` are given)."""
    return PipelineConfig.model_validate(
        {
            "name": name,
            "items": {"list": str(folder / "items.csv")},
            "steps": steps or [{"name": "load_array"}, {"name": "array_stats"}],
            "executor": executor.model_dump(),
            **extra,
        }
    )


def python_exe() -> str:
    return sys.executable


def write_toml_config(
    path: Path,
    name: str,
    items_csv: Path,
    executor: ExecutorConfig,
    steps: list[tuple[str, dict[str, Any]]],
) -> Path:
    """Write a pipeline TOML file (the format ``kneescope run --config`` reads)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f'name = "{name}"', "", "[items]", f"list = {value(str(items_csv))}", ""]
    for step, options in steps:
        lines += ["[[steps]]", f'name = "{step}"']
        if options:
            lines.append(
                "options = { " + ", ".join(f"{k} = {value(v)}" for k, v in options.items()) + " }"
            )
        lines.append("")
    lines.append("[executor]")
    for key, v in executor.model_dump(exclude_defaults=True).items():
        lines.append(f"{key} = {value(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path
