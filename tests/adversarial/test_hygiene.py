"""Hygiene: one atomic-write helper, one volume reader dispatch, typed volume metadata.

Each test here failed on the code before these were unified (a step's failed write left its
temporary behind; the cohort array reader transposed MHA files against NIfTI; ...).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kneescope.cohort.step import StepContext


def test_failed_step_write_leaves_no_temporary(tmp_path: Path) -> None:
    """A step whose writer fails half-way leaves neither the output nor a temporary file."""
    out = tmp_path / "item"

    def half_then_fail(path: Path) -> None:
        path.write_bytes(b"half a file")
        raise OSError("disk full")

    context = StepContext(out)
    with pytest.raises(OSError, match="disk full"):
        context.write_output("stats.json", half_then_fail)
    assert sorted(p.name for p in out.iterdir()) == []

    # the same context then writes a complete file, with nothing else beside it
    final = context.write_output("stats.json", lambda p: p.write_text("{}", encoding="utf-8"))
    assert Path(final) == out / "stats.json"
    assert sorted(p.name for p in out.iterdir()) == ["stats.json"]
    assert (out / "stats.json").read_text(encoding="utf-8") == "{}"


def test_atomic_write_helper_removes_its_temporary_on_error(tmp_path: Path) -> None:
    """``atomic_write`` keeps an older file as it was and leaves no temporary on error."""
    from kneescope.io.atomic import atomic_write, atomic_write_text

    final = tmp_path / "results.parquet"
    atomic_write_text(final, "old")

    def fail(path: Path) -> None:
        path.write_text("new but incomplete")
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError, match="writer crashed"):
        atomic_write(final, fail)
    assert final.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.parquet"]
    # the temporary keeps the final suffixes so that format-by-suffix writers work
    seen: list[str] = []
    atomic_write(tmp_path / "a.nii.gz", lambda p: (seen.append(p.name), p.write_bytes(b"x")))
    assert seen[0].endswith(".nii.gz") and seen[0].startswith(".a.nii.gz.tmp-")
