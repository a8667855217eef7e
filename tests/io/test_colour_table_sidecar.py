"""Colour tables and side sidecars next to label maps, unit level."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kneescope.core import Volume
from kneescope.core.labels import KNEE_LABELS, OAI_ZIB_LABELS
from kneescope.errors import InputError
from kneescope.io import read_volume, write_nifti


@pytest.mark.parametrize("scheme", [KNEE_LABELS, OAI_ZIB_LABELS], ids=lambda s: s.name)
def test_both_colour_tables_round_trip_every_label(tmp_path: Path, scheme: object) -> None:
    from kneescope.io.colour_table import (
        read_itksnap_label_description,
        read_slicer_colour_table,
        write_colour_tables,
    )

    labels = scheme.labels  # type: ignore[attr-defined]
    slicer, itksnap = write_colour_tables(tmp_path / "case_seg.nii.gz", labels)
    assert (slicer.name, itksnap.name) == ("case_seg.ctbl", "case_seg.itksnap.txt")
    s = read_slicer_colour_table(slicer)
    i = read_itksnap_label_description(itksnap)
    assert (
        {v: n for v, (n, _) in s.items() if v} == labels == {v: n for v, (n, _) in i.items() if v}
    )
    assert s[0] == ("background", (0, 0, 0, 0))
    colours = [rgba[:3] for v, (_, rgba) in s.items() if v]
    assert len(set(colours)) == len(colours)  # every structure its own colour
    assert all(i[v][1] == s[v][1] for v in labels)  # the same colours in both viewers


def test_unknown_names_get_distinct_fixed_colours_and_names_are_made_safe(
    tmp_path: Path,
) -> None:
    from kneescope.io.colour_table import slicer_colour_table

    text = slicer_colour_table({1: "s1", 2: "s2", 3: "s3"})
    assert text == slicer_colour_table({1: "s1", 2: "s2", 3: "s3"})
    rows = [line.split()[2:5] for line in text.splitlines() if line[0].isdigit()][1:]
    assert len({tuple(r) for r in rows}) == 3
    assert "\n1 femoral_cartilage 111 184 210 255\n" in slicer_colour_table(
        {1: "femoral cartilage"}
    )  # Slicer splits names at spaces: they become '_' (and get the structure's colour)
    with pytest.raises(InputError, match=r"1\.\.65535"):
        slicer_colour_table({0: "background"})


def test_side_in_descrip_and_sidecar_is_read_back(tmp_path: Path) -> None:
    from kneescope.io.sidecar import describe, write_sidecar

    path = tmp_path / "knee.nii.gz"
    volume = Volume(np.zeros((4, 4, 4), np.uint8), np.eye(4))
    write_nifti(volume, path, description=describe("right", "series=7"))
    got = read_volume(path).metadata
    assert (got["side"], got["side_source"]) == ("right", "its NIfTI header")

    write_nifti(volume, path)  # no side in the header: the sidecar alone
    write_sidecar(path, {"side": "left", "subject": "S1"})
    assert json.loads((tmp_path / "knee.json").read_text())["subject"] == "S1"
    got = read_volume(path).metadata
    assert (got["side"], got["side_source"]) == ("left", "knee.json")

    write_nifti(volume, path, description=describe("right"))
    with pytest.raises(InputError, match=r"header says side right but knee\.json says left"):
        read_volume(path)
    with pytest.raises(InputError, match="not right or left"):
        write_sidecar(path, {"side": "both"})
