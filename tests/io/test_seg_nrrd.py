"""Slicer .seg.nrrd and the one-folder viewer bundle: read back with SimpleITK, the same
labels and geometry, and each segment's name, colour and value as kneescope's label table."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK

from kneescope.core import Volume
from kneescope.core.geometry import affine_from_axes
from kneescope.core.labels import KNEE_LABELS, label_colour
from kneescope.errors import InputError
from kneescope.io.colour_table import read_itksnap_label_description
from kneescope.io.itk_formats import read_itk
from kneescope.io.seg_nrrd import read_seg_nrrd, write_seg_nrrd
from kneescope.io.viewer_bundle import write_viewer_bundle


def _knee(side: str) -> tuple[Volume, Volume]:
    """An oblique image and a label map holding every kneescope label once (left knees
    mirrored in x, as a left knee's scan is)."""
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    if side == "left":
        direction = np.diag([-1.0, 1.0, 1.0]) @ direction
    affine = affine_from_axes([12.0, -40.0, 7.5], direction, (0.7, 0.36, 0.45))
    labels = np.zeros((9, 12, 10), np.uint8)
    for value in KNEE_LABELS.labels:
        labels[value - 1, 2 : 4 + value % 5, 1:9] = value
    image = (labels * 50 + 7).astype(np.int16)
    return Volume(image, affine), Volume(labels, affine)


@pytest.mark.parametrize("side", ["right", "left"])
def test_seg_nrrd_round_trip(tmp_path: Path, side: str) -> None:
    _, labels = _knee(side)
    path = tmp_path / "knee.seg.nrrd"
    written = write_seg_nrrd(labels, path, KNEE_LABELS.labels)
    back, segments = read_seg_nrrd(path)
    assert np.array_equal(back.array, labels.array)
    assert np.allclose(back.affine_ras, labels.affine_ras, atol=1e-9)
    assert segments == written
    assert {s.label_value: s.name for s in segments} == KNEE_LABELS.labels
    for seg in segments:
        assert seg.colour_rgb == label_colour(seg.label_value, seg.name)

    # the header as text: NRRD key:=value fields, as 3D Slicer's NRRD reader sees them
    header = path.read_bytes().split(b"\n\n", 1)[0].decode("ascii").splitlines()
    assert header[0].startswith("NRRD")
    assert "type: unsigned char" in header
    assert "Segmentation_MasterRepresentation:=Binary labelmap" in header
    for n, (value, name) in enumerate(sorted(KNEE_LABELS.labels.items())):
        assert f"Segment{n}_Name:={name}" in header
        assert f"Segment{n}_LabelValue:={value}" in header

    # what Slicer reads: plain SimpleITK metadata, independent of kneescope's reader
    image: Any = SimpleITK.ReadImage(str(path))
    assert image.GetMetaData("Segmentation_MasterRepresentation") == "Binary labelmap"
    femur = next(n for n in range(9) if image.GetMetaData(f"Segment{n}_Name") == "femur")
    assert image.GetMetaData(f"Segment{femur}_LabelValue") == "1"
    assert image.GetMetaData(f"Segment{femur}_Layer") == "0"
    rgb = [float(v) for v in image.GetMetaData(f"Segment{femur}_Color").split()]
    assert np.allclose(np.array(rgb) * 255, label_colour(1, "femur"), atol=0.01)
    meniscus = next(
        n for n in range(9) if image.GetMetaData(f"Segment{n}_Name") == "lateral_meniscus"
    )
    tags = image.GetMetaData(f"Segment{meniscus}_Tags")
    assert tags.startswith("TerminologyEntry:") and tags.endswith("|")
    parts = tags.removeprefix("TerminologyEntry:").rstrip("|").split("~")
    assert len(parts) == 7
    assert parts[2] == "SCT^74135004^Meniscus"
    assert parts[6] == "SCT^49370004^Lateral"
    rows = np.nonzero(labels.array == 1)
    extent = " ".join(f"{int(r.min())} {int(r.max())}" for r in rows)
    assert image.GetMetaData(f"Segment{femur}_Extent") == extent


def test_seg_nrrd_bad_input(tmp_path: Path) -> None:
    _, labels = _knee("right")
    with pytest.raises(InputError, match=r"ends in \.seg\.nrrd"):
        write_seg_nrrd(labels, tmp_path / "knee.nrrd", KNEE_LABELS.labels)
    with pytest.raises(InputError, match=r"label values \[9\] have no name"):
        write_seg_nrrd(
            labels, tmp_path / "k.seg.nrrd", {v: n for v, n in KNEE_LABELS.labels.items() if v != 9}
        )
    with pytest.raises(InputError, match="3D and integer"):
        write_seg_nrrd(
            labels.with_array(labels.array.astype(np.float32)), tmp_path / "k.seg.nrrd", {}
        )
    assert list(tmp_path.iterdir()) == []


def test_viewer_bundle(tmp_path: Path) -> None:
    image, labels = _knee("left")
    folder = tmp_path / "knee_slicer"
    bundle = write_viewer_bundle(folder, image, labels, KNEE_LABELS.labels, "S1_V00_left_DESS_s2")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            "S1_V00_left_DESS_s2.nrrd",
            "S1_V00_left_DESS_s2_labels.seg.nrrd",
            "S1_V00_left_DESS_s2.itksnap",
            "S1_V00_left_DESS_s2_labels.itksnap.txt",
            "load_in_slicer.py",
        ]
    )
    back = read_itk(bundle.image)
    assert np.array_equal(back.array, image.array)
    assert np.allclose(back.affine_ras, image.affine_ras, atol=1e-9)
    seg, _ = read_seg_nrrd(bundle.segmentation)
    assert np.array_equal(seg.array, labels.array)

    # ITK-SNAP workspace: main image, segmentation layer, label table = kneescope's
    root = ET.parse(bundle.itksnap_workspace).getroot()
    assert root.tag == "registry"
    layers = {
        f.get("key"): {e.get("key"): e.get("value") for e in f.findall("entry")}
        for f in root.find("folder[@key='Layers']")  # type: ignore[union-attr]
    }
    assert layers["Layer[000]"] == {
        "AbsolutePath": str(bundle.image), "Role": "MainRole", "Tags": ""
    }  # fmt: skip
    assert layers["Layer[001]"]["Role"] == "SegmentationRole"
    assert layers["Layer[001]"]["AbsolutePath"] == str(bundle.segmentation)
    table = root.find(".//folder[@key='LabelTable']")
    assert table is not None
    elements = {
        int(el.find("entry[@key='Index']").get("value")): (  # type: ignore[union-attr,arg-type]
            el.find("entry[@key='Label']").get("value"),  # type: ignore[union-attr]
            el.find("entry[@key='Color']").get("value"),  # type: ignore[union-attr]
        )
        for el in table.findall("folder")
    }
    assert elements == {
        v: (n, " ".join(str(c) for c in label_colour(v, n))) for v, n in KNEE_LABELS.labels.items()
    }
    described = read_itksnap_label_description(bundle.itksnap_labels)
    assert {v: name for v, (name, _) in described.items() if v} == KNEE_LABELS.labels

    # Slicer loader: valid Python naming the two files next to it
    source = bundle.slicer_script.read_text()
    strings = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)}
    assert {bundle.image.name, bundle.segmentation.name} <= strings
    assert "slicer.util.loadSegmentation" in source

    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_viewer_bundle(folder, image, labels, KNEE_LABELS.labels, "x")
    shifted = Volume(labels.array, affine_from_axes([0, 0, 0], np.eye(3), (1, 1, 1)))
    with pytest.raises(InputError, match="not on the image's grid"):
        write_viewer_bundle(tmp_path / "other", image, shifted, KNEE_LABELS.labels, "x")
    assert not (tmp_path / "other").exists()
