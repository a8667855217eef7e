"""Bad knee films: one knee, no knee, a lateral view, an implant, a side the anatomy
contradicts, an unreadable file. Each gets a clear per-knee reason (never a made-up
grade) or one error line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kneescope.cli.app import main
from kneescope.core import Volume
from kneescope.io import write_dicom_radiograph
from kneescope.io.dicom_write import DicomWriteMeta
from kneescope.synth.knee_film_set import bad_input_film
from kneescope.xray.locate import IMPLANT, LATERAL_VIEW, NO_KNEE, ONE_KNEE, locate_knees

META = DicomWriteMeta(
    patient_id="9000009",
    study_date="20050301",
    study_description="OAI^XR^ENROLLMENT",
    series_description="Bilateral PA Fixed Flexion Knee",
    modality="CR",
    uid_seed="bad-films",
)


@pytest.mark.parametrize("seed", [0, 1])
def test_one_knee_is_found_with_its_side_and_the_other_has_a_reason(seed: int) -> None:
    film = bad_input_film("one_knee", seed)
    (truth,) = film.knees
    located = locate_knees(film.image)
    knee = located.knee(truth.side)
    assert knee.gradable and knee.centre_rc is not None
    err = np.hypot(*np.subtract(knee.centre_rc, truth.centre_rc)) * truth.pixel_mm
    assert err <= 2.0
    assert "fibula" in knee.side_source  # the side came from the anatomy
    other = located.knee("left" if truth.side == "right" else "right")
    assert other.reason == ONE_KNEE and other.roi is None and not other.gradable


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_knee_film_finds_nothing(seed: int) -> None:
    located = locate_knees(bad_input_film("no_knee", seed).image)
    assert located.reason == NO_KNEE
    assert all(k.reason == NO_KNEE and k.roi is None and not k.found for k in located)


@pytest.mark.parametrize("seed", [0, 1])
def test_lateral_view_is_refused(seed: int) -> None:
    located = locate_knees(bad_input_film("lateral", seed).image)
    assert located.view == "lateral"
    assert all(k.reason is not None and LATERAL_VIEW in k.reason for k in located)
    assert all(k.roi is None for k in located)


def test_lateral_view_position_in_dicom_is_refused_before_any_search(tmp_path: Path) -> None:
    film = bad_input_film("one_knee", 0).image  # a PA knee, but the header says lateral
    path = write_dicom_radiograph(film, tmp_path / "lat.dcm", meta=META, view_position="LL")
    from kneescope.io import read_dicom_radiograph

    located = locate_knees(read_dicom_radiograph(path))
    assert all(k.reason == f"{LATERAL_VIEW} (DICOM ViewPosition LL)" for k in located)


@pytest.mark.parametrize("seed", [0, 3])
def test_implant_knee_is_flagged_and_the_other_stays_gradable(seed: int) -> None:
    film = bad_input_film("implant", seed)
    located = locate_knees(film.image)
    for truth in film.knees:
        knee = located.knee(truth.side)
        assert knee.found
        if truth.implant:
            assert knee.reason == IMPLANT and not knee.gradable
        else:
            assert knee.gradable, knee.reason


def test_single_knee_whose_anatomy_contradicts_image_laterality(tmp_path: Path) -> None:
    film = bad_input_film("one_knee", 0)
    (truth,) = film.knees
    wrong = "L" if truth.side == "right" else "R"
    path = write_dicom_radiograph(film.image, tmp_path / "k.dcm", meta=META, image_laterality=wrong)
    from kneescope.io import read_dicom_radiograph

    located = locate_knees(read_dicom_radiograph(path))
    said = "left" if wrong == "L" else "right"
    knee = located.knee(said)  # the header's side is reported, with the conflict
    assert knee.found and not knee.gradable
    assert knee.reason is not None and knee.reason.startswith("side conflict")


def test_blank_and_tiny_films() -> None:
    flat = Volume(np.full((700, 1650), 1000, dtype=np.uint16), np.diag([0.2, 0.2, 1.0, 1.0]))
    assert locate_knees(flat).reason == NO_KNEE
    with pytest.raises(Exception, match="too small"):
        locate_knees(Volume(np.zeros((1, 1), dtype=np.uint16), np.eye(4)))


def test_cli_unreadable_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a radiograph at all")
    code = main(["xray", "-i", str(junk)])
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "junk.dcm" in errors[0] and "Traceback" not in err
    assert main(["xray", "-i", str(tmp_path / "missing.dcm")]) == 2


def test_cli_lateral_film_alone_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_dicom_radiograph(
        bad_input_film("lateral", 0).image, tmp_path / "lat.dcm", meta=META
    )
    out = tmp_path / "out"
    code = main(["xray", "-i", str(path), "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    (line,) = [x for x in captured.err.splitlines() if x.startswith("error:")]
    assert "lateral view" in line
    # the table says why per knee, and the CSV holds both knees with the reason
    text = (out / "xray_knees.csv").read_text(encoding="utf-8")
    assert text.count("lateral view") >= 2
