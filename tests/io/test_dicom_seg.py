"""DICOM SEG of knee label maps (kneescope.io.dicom_seg): written over a DICOM series in the
OAI's sagittal DESS orientation (both knees), read back by highdicom voxel for voxel, the
standard codes in the file, lossless compression, and ``dciodvfy`` on every SEG written here
(0 errors)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from kneescope.core import Volume
from kneescope.core.geometry import affine_from_axes
from kneescope.core.labels import KNEE_LABELS
from kneescope.errors import DicomError, InputError
from kneescope.io.dicom_seg import (
    TRANSFER_SYNTAXES,
    SegAlgorithm,
    read_dicom_seg,
    seg_segments,
    write_dicom_seg,
)
from kneescope.io.dicom_series import read_dicom_series, scan_dicom_series
from kneescope.io.dicom_write import DicomWriteMeta, write_dicom_series

SHAPE = (24, 20, 9)
"""(columns, rows, slices) of the test series: small, so that each SEG takes well under 1 s."""
VALUES = {name: value for value, name in KNEE_LABELS.labels.items()}
MODEL = SegAlgorithm(
    kind="AUTOMATIC", name="knee-seg-2d", version="0.1.0", parameters={"model_hash": "ab12"}
)

# Direction cosines (columns of the voxel -> RAS rotation: i, j, k) of the demo's OAI-style
# sagittal DESS series (kneescope synth): i towards anterior, j inferior, k (slices) left.
RIGHT_AXES = np.array(
    [[0.0464, 0.0151, -0.9988], [0.9988, 0.0150, 0.0466], [0.0156, -0.9998, -0.0144]]
)
LEFT_AXES = np.array(
    [[-0.0709, -0.0572, -0.9958], [0.9895, -0.1304, -0.0630], [-0.1262, -0.9898, 0.0659]]
)


def _orthonormal(axes: np.ndarray) -> np.ndarray:
    q, r = np.linalg.qr(axes)
    return q * np.sign(np.diag(r))


# every DICOM SEG and SR a test leaves is checked by dciodvfy (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("dicom_objects_pass_dciodvfy")


def test_dciodvfy_available() -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) not installed: SEGs are not validated")
    assert shutil.which("dciodvfy")


def _knee_labels() -> np.ndarray:
    """All nine structures in slabs (known truth); some slices stay empty."""
    labels = np.zeros(SHAPE, np.uint8)
    for value in range(1, 10):
        labels[2 + value : 4 + value, 3:17, 1:7] = value
    labels[5:9, 4:8, 7] = 2  # one structure reaching a further slice
    return labels


def _series(tmp_path: Path, side: str) -> tuple[Path, Volume]:
    axes = _orthonormal(RIGHT_AXES if side == "right" else LEFT_AXES)
    affine = affine_from_axes([-42.0, -32.5, -38.0], axes, (0.365, 0.365, 0.85))
    rng = np.random.default_rng(1)
    image = Volume(rng.integers(0, 800, SHAPE).astype(np.uint16), affine)
    meta = DicomWriteMeta(
        patient_id="9000099",
        study_date="20040512",
        study_description="OAI^MR^ENROLLMENT",
        series_description=f"SAG_3D_DESS_{side.upper()}",
        series_number=3,
        laterality=side,
        uid_seed=f"seg-{side}",
    )
    folder = tmp_path / f"series_{side}"
    write_dicom_series(image, folder, meta=meta)
    return folder, read_dicom_series(folder)


@pytest.mark.parametrize("side", ["right", "left"])
def test_round_trip_voxel_for_voxel_with_codes(tmp_path: Path, side: str) -> None:
    folder, image = _series(tmp_path, side)
    truth = Volume(_knee_labels(), image.affine_ras)
    written = write_dicom_seg(
        truth,
        folder,
        tmp_path / "knee.dcm",
        label_names=KNEE_LABELS.labels,
        algorithm=MODEL,
        side=side,
    )
    assert written.segments == KNEE_LABELS.labels
    assert written.n_source_instances == SHAPE[2]
    assert written.n_frames == sum(
        int(np.any(truth.array[:, :, k] == v)) for v in range(1, 10) for k in range(SHAPE[2])
    )

    back = read_dicom_seg(written.path, label_values=VALUES, reference=image)
    assert back.shape == truth.shape
    assert np.array_equal(back.array, truth.array)
    assert np.allclose(back.affine_ras, image.affine_ras, atol=1e-4)
    # on the SEG's own grid (only the frames present): same voxels at the same places
    own = read_dicom_seg(written.path, label_values=VALUES)
    for value in range(1, 10):
        ijk = np.argwhere(own.array == value)
        world = own.affine_ras[:3, :3] @ ijk.T + own.affine_ras[:3, 3:4]
        back_ijk = np.linalg.solve(image.affine_ras[:3, :3], world - image.affine_ras[:3, 3:4])
        idx = tuple(np.rint(back_ijk).astype(int))
        assert len(ijk) == int(np.sum(truth.array == value))
        assert np.all(truth.array[idx] == value)

    ds = pydicom.dcmread(written.path)
    source = pydicom.dcmread(scan_dicom_series(folder).files[0], stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES["jpeg-ls"]
    assert ds.SegmentationType == "FRACTIONAL" and ds.SegmentationFractionalType == "OCCUPANCY"
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert ds.PatientID == source.PatientID
    refs = ds.ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == source.SeriesInstanceUID
    assert len(refs.ReferencedInstanceSequence) == SHAPE[2]
    by_label = {item.SegmentLabel: item for item in ds.SegmentSequence}
    femur = by_label["femur"]
    assert femur.SegmentedPropertyTypeCodeSequence[0].CodeValue == "71341001"
    assert femur.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert femur.SegmentAlgorithmType == "AUTOMATIC"
    assert femur.SegmentAlgorithmName == "knee-seg-2d"
    region = femur.AnatomicRegionSequence[0]
    assert region.CodeValue == "49076000"  # knee joint
    assert region.AnatomicRegionModifierSequence[0].CodeMeaning == side.capitalize()
    medial = by_label["medial_meniscus"]
    assert medial.SegmentedPropertyTypeCodeSequence[0].CodeValue == "74135004"
    structure = medial.PrimaryAnatomicStructureSequence[0]
    assert structure.PrimaryAnatomicStructureModifierSequence[0].CodeValue == "255561001"
    plate = by_label["lateral_tibial_cartilage"]
    assert plate.SegmentedPropertyTypeCodeSequence[0].CodeValue == "309312004"
    assert plate.PrimaryAnatomicStructureSequence[0].CodeValue == "12611008"
    assert [s.label for s in seg_segments(written.path)] == list(KNEE_LABELS.labels.values())


def test_compressions_are_lossless_and_smaller(tmp_path: Path) -> None:
    folder, image = _series(tmp_path, "right")
    truth = Volume(_knee_labels(), image.affine_ras)
    sizes = {}
    for compression in ("jpeg-ls", "rle", "none"):
        written = write_dicom_seg(
            truth,
            folder,
            tmp_path / f"{compression}.dcm",
            label_names=KNEE_LABELS.labels,
            algorithm=SegAlgorithm(kind="MANUAL"),
            side="right",
            compression=compression,  # type: ignore[arg-type]
        )
        back = read_dicom_seg(written.path, label_values=VALUES, reference=image)
        assert np.array_equal(back.array, truth.array), compression
        assert (
            pydicom.dcmread(written.path).file_meta.TransferSyntaxUID
            == (TRANSFER_SYNTAXES[compression])
        )
        sizes[compression] = written.size_bytes
    binary = write_dicom_seg(
        truth,
        folder,
        tmp_path / "binary.dcm",
        label_names=KNEE_LABELS.labels,
        algorithm=SegAlgorithm(kind="MANUAL"),
        compression="none",
        binary=True,
    )
    assert pydicom.dcmread(binary.path, stop_before_pixels=True).SegmentationType == "BINARY"
    back = read_dicom_seg(binary.path, label_values=VALUES, reference=image)
    assert np.array_equal(back.array, truth.array)
    assert sizes["jpeg-ls"] < sizes["none"] and sizes["rle"] < sizes["none"]
    with pytest.raises(InputError, match="BINARY segments are written uncompressed"):
        write_dicom_seg(
            truth,
            folder,
            tmp_path / "never.dcm",
            label_names=KNEE_LABELS.labels,
            algorithm=SegAlgorithm(kind="MANUAL"),
            binary=True,
        )


def test_label_values_missing_structures_and_a_mirrored_grid(tmp_path: Path) -> None:
    """Only three structures: segments 1..3 that read back as 2, 5 and 9; a label map written
    with its slice axis reversed (a mirrored write) lands on the series' grid unchanged."""
    folder, image = _series(tmp_path, "left")
    truth = np.zeros(SHAPE, np.uint8)
    truth[4:10, 2:9, 1:4] = 2
    truth[12:15, 5:12, 2:6] = 5
    truth[16:20, 9:18, 5:8] = 9
    flipped_affine = image.affine_ras.copy()
    flipped_affine[:3, 3] += flipped_affine[:3, 2] * (SHAPE[2] - 1)
    flipped_affine[:3, 2] *= -1
    mirrored = Volume(truth[:, :, ::-1].copy(), flipped_affine)
    written = write_dicom_seg(
        mirrored,
        folder,
        tmp_path / "three.dcm",
        label_names=KNEE_LABELS.labels,
        algorithm=MODEL,
        side="left",
    )
    assert written.segments == {
        1: "femoral_cartilage",
        2: "lateral_tibial_cartilage",
        3: "lateral_meniscus",
    }
    assert written.label_values == {1: 2, 2: 5, 3: 9}
    back = read_dicom_seg(written.path, label_values=VALUES, reference=image)
    assert np.array_equal(back.array, truth)
    # without the names, segment numbers come back
    numbers = read_dicom_seg(written.path, reference=image)
    assert set(np.unique(numbers.array)) == {0, 1, 2, 3}


def test_bad_inputs_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    folder, image = _series(tmp_path, "right")
    out = tmp_path / "bad.dcm"

    def write(labels: np.ndarray, affine: np.ndarray, source: Path = folder) -> None:
        write_dicom_seg(
            Volume(labels, affine), source, out, label_names=KNEE_LABELS.labels, algorithm=MODEL
        )

    with pytest.raises(InputError, match="not on the series' voxel grid"):
        write(np.ones((20, 24, 9), np.uint8), image.affine_ras)  # axes swapped
    shifted = image.affine_ras.copy()
    shifted[:3, 3] += 5.0
    with pytest.raises(InputError, match="not on the series' voxel grid"):
        write(_knee_labels(), shifted)
    with pytest.raises(InputError, match="empty"):
        write(np.zeros(SHAPE, np.uint8), image.affine_ras)
    unknown = _knee_labels()
    unknown[0, 0, 0] = 12
    with pytest.raises(InputError, match=r"label values \[12\]"):
        write(unknown, image.affine_ras)
    with pytest.raises(InputError, match="integer label map"):
        write(_knee_labels().astype(np.float32), image.affine_ras)
    not_dicom = tmp_path / "not_dicom"
    not_dicom.mkdir()
    (not_dicom / "a.txt").write_text("no DICOM here")
    with pytest.raises(DicomError):
        write(_knee_labels(), image.affine_ras, not_dicom)
    assert not out.exists()
    out.write_bytes(b"keep")
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write(_knee_labels(), image.affine_ras)
    assert out.read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with pytest.raises(InputError, match="not a readable DICOM Segmentation"):
        read_dicom_seg(scan_dicom_series(folder).files[0])
