"""Small real steps for runs and benchmarks (capability ``builtin``).

``load_array`` reads an item's NIfTI/MHA/NPY file, ``array_stats`` measures it, ``noop`` does
nothing (bookkeeping benchmarks), ``burn_cpu`` spins the CPU (scaling benchmarks) and
``peak_rss`` reports the worker's peak memory. The knee steps live in capability packages
(:mod:`kneescope.capabilities`), the test suite's steps in the test plug-in distribution
``tests/plugin_pkg``; all plug in through the ``kneescope.steps`` entry points.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, StepContext, StepResult
from kneescope.errors import InputError
from kneescope.io.readers import read_array

__all__ = ["ArrayStats", "BaseStep", "BurnCpu", "LoadArray", "Noop", "PeakRss", "read_array_file"]

CAPABILITY = "builtin"


def read_array_file(path: Path) -> np.ndarray[Any, Any]:
    """Read an item's image file into an array: ``.npy`` or any format kneescope reads
    (:func:`kneescope.io.readers.read_array`; indexed ``[i, j, k]`` whatever the format).

    Raises:
        InputError: missing, unreadable or corrupt file, or an unknown format.
    """
    if not os.path.lexists(path):
        raise InputError(f"item input {path} does not exist; fix the item list")
    return read_array(path)


class LoadArray(BaseStep):
    """Read the item's input file into ``volume`` (any-dtype ndarray)."""

    name = "load_array"
    capability = CAPABILITY
    results = (ResultColumn("shape", "str", "", "array size in voxels, e.g. 12x16x10"),)
    writes = ("volume",)
    prefetchable = True

    def run(self, item: Item, context: StepContext) -> StepResult:
        if item.path is None:
            raise InputError(f"item {item.item_id} has no input path; give one in the item list")
        with context.phase("read"):
            volume = read_array_file(Path(item.path))
        return StepResult(
            data={"volume": volume}, values={"shape": "x".join(map(str, volume.shape))}
        )


class ArrayStats(BaseStep):
    """Intensity statistics of ``volume``: mean, std, min, max, voxel and non-zero counts.

    Options:
        write_json: also write ``stats.json`` per item (atomically).
    """

    name = "array_stats"
    capability = CAPABILITY
    results = (
        ResultColumn("mean", "float", "", "mean intensity (the image's units)"),
        ResultColumn("std", "float", "", "standard deviation of the intensity"),
        ResultColumn("min", "float", "", "lowest intensity"),
        ResultColumn("max", "float", "", "highest intensity"),
        ResultColumn("voxels", "int", "1", "number of voxels"),
        ResultColumn("nonzero", "int", "1", "number of non-zero voxels"),
    )
    reads = ("volume",)

    def __init__(self, write_json: bool = False) -> None:
        self.write_json = write_json

    def run(self, item: Item, context: StepContext) -> StepResult:
        volume = context.data["volume"]
        with context.phase("measure"):
            values = np.asarray(volume, dtype=np.float64)
            stats: dict[str, float | int | str | bool | None] = {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "min": float(values.min()),
                "max": float(values.max()),
                "voxels": int(values.size),
                "nonzero": int(np.count_nonzero(values)),
            }
        files: dict[str, str] = {}
        if self.write_json:
            text = json.dumps(stats, indent=1)
            files["stats"] = context.write_output("stats.json", lambda p: _write_text(p, text))
        return StepResult(values=stats, files=files)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


class Noop(BaseStep):
    """A trivial step: returns the worker pid and how often setup() ran in this process."""

    name = "noop"
    capability = CAPABILITY
    results = (
        ResultColumn("pid", "int", "", "worker process id"),
        ResultColumn("setup_calls", "int", "1", "how often setup() ran in this process"),
        ResultColumn("cuda_visible_devices", "str", "", "the worker's CUDA_VISIBLE_DEVICES"),
    )
    setup_calls: ClassVar[int] = 0

    def setup(self) -> None:
        type(self).setup_calls += 1

    def run(self, item: Item, context: StepContext) -> StepResult:
        return StepResult(
            values={
                "pid": os.getpid(),
                "setup_calls": type(self).setup_calls,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            }
        )


class PeakRss(BaseStep):
    """Report the worker process's peak resident memory so far (MiB), e.g. last in a pipeline."""

    name = "peak_rss"
    capability = CAPABILITY
    results = (
        ResultColumn("worker_peak_rss_mib", "float", "MiB", "worker's peak resident memory"),
    )

    def run(self, item: Item, context: StepContext) -> StepResult:
        import resource

        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return StepResult(values={"worker_peak_rss_mib": peak_kib / 1024.0})


class BurnCpu(BaseStep):
    """CPU-bound pure-Python work holding the GIL: ``iterations`` multiply-adds."""

    name = "burn_cpu"
    capability = CAPABILITY
    results = (ResultColumn("burn", "int", "", "checksum of the work (proves it ran)"),)

    def __init__(self, iterations: int = 1_000_000) -> None:
        self.iterations = iterations

    def run(self, item: Item, context: StepContext) -> StepResult:
        with context.phase("infer"):
            acc = 0
            for i in range(self.iterations):
                acc = (acc * 31 + i) % 1_000_003
        return StepResult(values={"burn": acc})
