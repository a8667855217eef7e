"""Attacks on `measure --labels` and the measure step's `labels` option: a label map that is not
written in the scheme named (values beyond it; OAIZIB-CM given as OAI-ZIB and back), a JSON
scheme that is malformed or inconsistent, a file without orientation. Each is refused with
one line on stderr and exit 2, before anything is measured or written."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kneescope.biomarkers.knee_phantom import ToyKnee, render_compact_toy_knee
from kneescope.cli.app import main
from kneescope.cohort.pipeline_config import StepConfig
from kneescope.cohort.step_registry import build_steps
from kneescope.core import Volume
from kneescope.errors import ConfigError
from kneescope.io import write_volume

TO_OAI_ZIB = np.array([0, 1, 2, 3, 4, 4, 0, 0, 0, 0], dtype=np.uint8)
TO_OAIZIB_CM = np.array([0, 1, 2, 3, 4, 5, 0, 0, 0, 0], dtype=np.uint8)


@pytest.fixture(scope="module")
def toy() -> ToyKnee:
    return render_compact_toy_knee()


@pytest.fixture(scope="module")
def maps(toy: ToyKnee, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("schemes")
    labels = toy.labels
    return {
        "kneescope": write_volume(labels, folder / "kneescope.nii.gz"),
        "oai-zib": write_volume(labels.with_array(TO_OAI_ZIB[labels.array]), folder / "z.nii"),
        "oaizib-cm": write_volume(
            labels.with_array(TO_OAIZIB_CM[labels.array]), folder / "cm.nii.gz"
        ),
    }


def _refused(args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    """Run ``measure`` with ``args`` and an output table; assert exit 2, one error line,
    no table; return the line."""
    table = tmp_path / "never.csv"
    code = main(["measure", *args, "-o", str(table)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert not table.exists()
    return lines[0]


def test_a_kneescope_map_is_not_taken_as_oai_zib(
    maps: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _refused([str(maps["kneescope"]), "--labels", "oai-zib"], capsys, tmp_path)
    assert "label values 7, 8, 9" in line and "oai-zib scheme does not have" in line


def test_oaizib_cm_given_as_oai_zib_and_back(
    maps: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # OAIZIB-CM's 5 (lateral tibial cartilage) would be OAI-ZIB's patella: told by anatomy
    line = _refused([str(maps["oaizib-cm"]), "--labels", "oai-zib"], capsys, tmp_path)
    assert "label 5 lies on the tibia" in line and "--labels oaizib-cm" in line
    line = _refused(
        [str(maps["oai-zib"]), "--labels", "oaizib-cm", "--side", "right"], capsys, tmp_path
    )
    assert "no lateral tibial cartilage 5" in line and "--labels oai-zib" in line


def test_an_unknown_scheme_name(
    maps: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _refused([str(maps["oai-zib"]), "--labels", "oai_zib2"], capsys, tmp_path)
    assert "neither a scheme kneescope knows" in line and "oaizib-cm" in line


BAD_SCHEMES = {
    "malformed": ('{"femur": 1, "tibia": 3,', "not valid JSON (line 1"),
    "a list": ('[["femur", 1]]', "holds a JSON list, not an object"),
    "unknown name": (
        '{"femur": 1, "tibia": 3, "tibial_cartilage": 4, "fibula": 5}',
        "names 'fibula', which kneescope does not know",
    ),
    "shared value": (
        '{"femur": 1, "tibia": 3, "tibial_cartilage": 3}',
        "gives value 3 to tibia and tibial_cartilage",
    ),
    "name twice": ('{"femur": 1, "femur": 2, "tibia": 3, "tibial_cartilage": 4}', "named twice"),
    "zero": ('{"femur": 0, "tibia": 3, "tibial_cartilage": 4}', "outside the label values"),
    "too large": ('{"femur": 1, "tibia": 300, "tibial_cartilage": 4}', "is 300, outside"),
    "a string": ('{"femur": "1", "tibia": 3, "tibial_cartilage": 4}', "not an integer"),
    "a bool": ('{"femur": true, "tibia": 3, "tibial_cartilage": 4}', "not an integer"),
    "a float": ('{"femur": 1.0, "tibia": 3, "tibial_cartilage": 4}', "not an integer"),
    "no tibia": ('{"femur": 1, "tibial_cartilage": 4}', "does not label tibia"),
    "both tibial forms": (
        '{"femur": 1, "tibia": 3, "tibial_cartilage": 4, "medial_tibial_cartilage": 5}',
        "either as one label or as its two plates",
    ),
    "one plate only": (
        '{"femur": 1, "tibia": 3, "medial_tibial_cartilage": 4}',
        "no tibial cartilage plate pair",
    ),
    "not utf-8": (b'{"femur": 1, "tibia": 3, "tibial_cartilage": 4, "\xff": 5}', "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCHEMES), ids=str)
def test_a_bad_json_scheme_is_refused_before_any_work(
    case: str, maps: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text, said = BAD_SCHEMES[case]
    scheme = tmp_path / "scheme.json"
    if isinstance(text, bytes):
        scheme.write_bytes(text)
    else:
        scheme.write_text(text, encoding="utf-8")
    line = _refused([str(maps["oai-zib"]), "--labels", str(scheme)], capsys, tmp_path)
    assert said in line, line
    assert str(scheme) in line
    # the measure step refuses the same file when the pipeline is built
    with pytest.raises(ConfigError, match="labels"):
        build_steps([StepConfig(name="measure", options={"labels": str(scheme)})])


def test_a_missing_scheme_file(
    maps: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gone = tmp_path / "gone.json"
    line = _refused([str(maps["oai-zib"]), "--labels", str(gone)], capsys, tmp_path)
    assert "does not exist" in line


def test_a_map_with_values_beyond_a_json_scheme(
    maps: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scheme = tmp_path / "three.json"
    scheme.write_text('{"femur": 1, "tibia": 3, "tibial_cartilage": 4}', encoding="utf-8")
    line = _refused([str(maps["oai-zib"]), "--labels", str(scheme)], capsys, tmp_path)
    assert "holds label values 2," in line and "1 femur, 3 tibia, 4 tibial cartilage" in line


def test_an_image_is_not_a_label_map_in_any_scheme(
    toy: ToyKnee, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1200, toy.labels.shape).astype(np.int16)
    path = write_volume(toy.labels.with_array(image), tmp_path / "mr.nii.gz")
    line = _refused([str(path), "--labels", "oai-zib", "--side", "right"], capsys, tmp_path)
    assert "not a 3D label map" in line


def test_combined_tibial_cartilage_without_side_or_orientation(
    toy: ToyKnee, maps: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    no_side = write_volume(
        Volume(TO_OAI_ZIB[toy.labels.array], toy.labels.affine_ras), tmp_path / "ns.nii.gz"
    )
    line = _refused([str(no_side), "--labels", "oai-zib"], capsys, tmp_path)
    assert "pass --side right or left" in line
    img = nib.Nifti1Image(TO_OAI_ZIB[toy.labels.array], None)
    img.header["pixdim"][1:4] = 0.6
    img.header.set_sform(None, code=0)
    img.header.set_qform(None, code=0)
    bare = tmp_path / "bare.nii"
    nib.save(img, bare)
    line = _refused([str(bare), "--labels", "oai-zib", "--side", "right"], capsys, tmp_path)
    assert "states no orientation" in line


def test_the_default_scheme_still_measures_kneescope_maps(
    maps: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["measure", str(maps["kneescope"]), "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert code == 0 and row["qc_ok"] is True
    flags = [k for k in row if k.startswith("qc_not_labelled_")]
    assert len(flags) == 9 and not any(row[k] for k in flags)  # every structure labelled
