"""Small real steps for runs, tests and benchmarks.

``load_array`` reads an item's NIfTI/MHA/NPY file, ``array_stats`` measures it, ``noop`` does
nothing (bookkeeping benchmarks), ``burn_cpu`` spins the CPU (scaling benchmarks), ``sleep``
waits (fault tests) and ``crash_once`` kills its worker process the first time it sees an item.
The segmentation and biomarker steps live with their own packages and plug in the same way.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kneescope.cohort.item import Item
from kneescope.cohort.step import StepContext, StepResult
from kneescope.errors import InputError
from kneescope.io.readers import read_array


class BaseStep:
    """Defaults for the optional parts of the Step protocol."""

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "1"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    prefetchable: ClassVar[bool] = False
    model_options: ClassVar[tuple[str, ...]] = ()
    path_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def model_hash_for(cls, options: Mapping[str, Any]) -> str:
        """Hash of the model used with ``options`` ("": none)."""
        del options
        return ""

    def setup(self) -> None:
        return None


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

    def run(self, item: Item, context: StepContext) -> StepResult:
        import resource

        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return StepResult(values={"worker_peak_rss_mib": peak_kib / 1024.0})


class BurnCpu(BaseStep):
    """CPU-bound pure-Python work holding the GIL: ``iterations`` multiply-adds."""

    name = "burn_cpu"

    def __init__(self, iterations: int = 1_000_000) -> None:
        self.iterations = iterations

    def run(self, item: Item, context: StepContext) -> StepResult:
        with context.phase("infer"):
            acc = 0
            for i in range(self.iterations):
                acc = (acc * 31 + i) % 1_000_003
        return StepResult(values={"burn": acc})


class Sleep(BaseStep):
    """Wait ``seconds``; with ``trace_dir`` first write ``<item_id>.<pid>.<job>`` there."""

    name = "sleep"
    path_options = ("trace_dir",)

    def __init__(self, seconds: float = 0.1, trace_dir: str | None = None) -> None:
        self.seconds = seconds
        self.trace_dir = trace_dir

    def run(self, item: Item, context: StepContext) -> StepResult:
        if self.trace_dir is not None:
            job = os.environ.get("SLURM_JOB_ID", "-")
            (Path(self.trace_dir) / f"{item.item_id}.{os.getpid()}.{job}").touch()
        with context.phase("infer"):
            time.sleep(self.seconds)
        return StepResult(values={"slept_s": self.seconds})


class CrashOnce(BaseStep):
    """Kill the worker process the first ``times`` times an item runs (counted in a marker
    file in ``marker_dir``).

    Options:
        marker_dir: folder shared by all workers.
        item_ids: only these items crash (all when empty).
        how: "exit" (os._exit) or "kill" (SIGKILL to itself).
        times: how many attempts of an item crash before one succeeds.
    """

    name = "crash_once"
    path_options = ("marker_dir",)

    def __init__(
        self,
        marker_dir: str,
        item_ids: list[str] | None = None,
        how: str = "exit",
        times: int = 1,
    ) -> None:
        self.marker_dir = Path(marker_dir)
        self.item_ids = set(item_ids or [])
        self.how = how
        self.times = times

    def run(self, item: Item, context: StepContext) -> StepResult:
        marker = self.marker_dir / f"{item.item_id}.crashed"
        pids = marker.read_text().split() if marker.exists() else []
        if (not self.item_ids or item.item_id in self.item_ids) and len(pids) < self.times:
            with marker.open("a") as handle:
                handle.write(f"{os.getpid()}\n")
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(17)
        crashed_pid = int(pids[-1]) if pids else 0
        return StepResult(values={"crashed_pid": crashed_pid, "ran_pid": os.getpid()})
