"""Hygiene: one atomic-write helper, one volume reader dispatch, typed volume metadata.

Each test here failed on the code before these were unified (a step's failed write left its
temporary behind; the cohort array reader transposed MHA files against NIfTI; ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kneescope.cohort.step import StepContext
from kneescope.errors import InputError


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


def test_one_reader_dispatch_gives_one_array_whatever_the_format(tmp_path: Path) -> None:
    """The run's load_array step, the catalog and ``read_volume`` read one volume written as
    NIfTI, MHA and NRRD (and a DICOM series) as the same ``[i, j, k]`` array (the step used to
    read MHA through SimpleITK's ``[k, j, i]`` order and could not read DICOM at all)."""
    from kneescope.catalog.volumes import read_image_file
    from kneescope.cohort.builtin_steps import read_array_file
    from kneescope.core.volume import Volume
    from kneescope.io import read_volume, write_dicom_series, write_volume
    from kneescope.io.dicom_write import DicomWriteMeta

    rng = np.random.default_rng(3)
    array = rng.integers(0, 1000, size=(5, 6, 7)).astype(np.int16)
    affine = np.diag([0.5, 0.6, 0.7, 1.0])
    volume = Volume(array, affine)
    for name in ("knee.nii.gz", "knee.mha", "knee.nrrd"):
        path = write_volume(volume, tmp_path / name)
        assert np.array_equal(read_array_file(path), array), name
        assert np.array_equal(read_image_file(path).array, array), name
        assert np.array_equal(read_volume(path).array, array), name
    series = tmp_path / "series"
    write_dicom_series(
        volume,
        series,
        meta=DicomWriteMeta(patient_id="P1", study_date="20240102", uid_seed="hygiene"),
    )
    assert np.array_equal(read_array_file(series), read_volume(series).array)
    assert read_array_file(series).shape == read_volume(tmp_path / "knee.mha").shape


def _knee() -> tuple[Any, Any]:
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import SMALL, sample_knee_params

    sample = render_knee(sample_knee_params(np.random.default_rng(0), side="left", klg=3), SMALL)
    return sample.image, sample.labels


def test_is_label_refuses_a_uint16_mr_image_and_accepts_a_uint16_label_map(tmp_path: Path) -> None:
    """A DESS-like uint16 MR image whose intensities fit 0..9 (a low-signal scan) is no label
    map, read from DICOM or from NIfTI; the knee's uint16 label map (as ITK-SNAP saves one) is."""
    from kneescope.core.volume import Volume, label_map_problem
    from kneescope.io import read_volume, write_dicom_series, write_volume
    from kneescope.io.dicom_write import DicomWriteMeta

    image, labels = _knee()
    mr = image.array.astype(np.int64)
    low = (mr * 9 // int(mr.max())).astype(np.uint16)  # the same MR image, values 0..9
    assert int(low.max()) == 9 and len(np.unique(low)) == 10
    low_mr = Volume(low, image.affine_ras)
    assert not low_mr.is_label
    assert "not a label map" in (label_map_problem(low) or "")
    nifti = read_volume(write_volume(low_mr, tmp_path / "mr.nii.gz"))
    assert nifti.array.dtype == np.uint16 and not nifti.is_label
    series = tmp_path / "mr_dicom"
    meta = DicomWriteMeta(
        patient_id="P1", study_date="20240102", uid_seed="hygiene", laterality="left"
    )
    write_dicom_series(low_mr, series, meta=meta)
    dicom = read_volume(series)
    assert dicom.role == "image" and not dicom.is_label

    from kneescope.inference.output import write_labels

    with pytest.raises(InputError, match="not a label map"):  # never written as labels
        write_labels(low_mr, tmp_path / "mr_labels.nii.gz")
    assert not (tmp_path / "mr_labels.nii.gz").exists()

    label_map = Volume(labels.array.astype(np.uint16), labels.affine_ras)
    assert label_map.is_label and Volume(labels.array, labels.affine_ras).is_label
    read_back = read_volume(write_volume(label_map, tmp_path / "labels.nii.gz"))
    assert read_back.array.dtype == np.uint16 and read_back.is_label
    # a label map computed on the MR image's grid is no longer the image
    assert dicom.with_array(labels.array).is_label


def test_side_is_one_typed_key_whatever_the_reader(tmp_path: Path) -> None:
    """The DICOM readers and the NIfTI reader give the knee's side under one key (``side``,
    read through ``Volume.side``); the older ``laterality`` key is still read."""
    from kneescope.biomarkers.measure import _resolve_side
    from kneescope.core.volume import Volume
    from kneescope.io import read_volume, write_dicom_series
    from kneescope.io.dicom_write import DicomWriteMeta
    from kneescope.io.nifti import write_nifti
    from kneescope.io.sidecar import write_sidecar

    image, labels = _knee()
    series = tmp_path / "dicom"
    meta = DicomWriteMeta(
        patient_id="P1", study_date="20240102", uid_seed="hygiene", laterality="left"
    )
    write_dicom_series(image, series, meta=meta)
    dicom = read_volume(series)
    assert dicom.metadata["side"] == "left" and dicom.side == "left"
    assert dicom.side_source == "its DICOM Laterality"
    assert "laterality" not in dicom.metadata
    # a label map read from DICOM: measure's side="auto" takes the DICOM side
    assert _resolve_side(dicom.with_array(labels.array), "auto") == "left"

    nifti_path = write_nifti(labels, tmp_path / "knee.nii.gz")
    write_sidecar(nifti_path, {"side": "right"})
    assert read_volume(nifti_path).side == "right"

    legacy = Volume(labels.array, labels.affine_ras, {"laterality": "R"})
    assert legacy.side == "right" and legacy.metadata["side"] == "right"
    with pytest.raises(InputError, match="side"):
        Volume(labels.array, labels.affine_ras, {"side": "middle"})
