"""Atomic writes: the final path holds the whole new content or the old one, never a part."""

from __future__ import annotations

from pathlib import Path

import pytest

from kneescope.io.atomic import atomic_write_dir, atomic_write_path


def test_atomic_file_written_and_renamed(tmp_path: Path) -> None:
    final = tmp_path / "vol.nii.gz"
    with atomic_write_path(final) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".")
        assert tmp.name.endswith(".nii.gz")
        assert not final.exists()
        tmp.write_bytes(b"hello")
    assert final.read_bytes() == b"hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.nii.gz"]


def test_atomic_file_failure_leaves_old_content(tmp_path: Path) -> None:
    final = tmp_path / "a.bin"
    final.write_bytes(b"old")

    def write_and_fail() -> None:
        with atomic_write_path(final) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_and_fail()
    assert final.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_atomic_file_nothing_written_raises(tmp_path: Path) -> None:
    final = tmp_path / "a.bin"
    with pytest.raises(FileNotFoundError), atomic_write_path(final):
        pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_new_and_replace(tmp_path: Path) -> None:
    final = tmp_path / "series"
    with atomic_write_dir(final) as tmp:
        (tmp / "001").write_bytes(b"1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x").write_bytes(b"x")
        assert not final.exists()
    assert (final / "001").read_bytes() == b"1"
    with atomic_write_dir(final) as tmp:
        (tmp / "002").write_bytes(b"2")
    assert sorted(p.name for p in final.iterdir()) == ["002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_atomic_dir_failure_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "series"

    def write_and_fail() -> None:
        with atomic_write_dir(final) as tmp:
            (tmp / "001").write_bytes(b"1")
            raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        write_and_fail()
    assert list(tmp_path.iterdir()) == []
