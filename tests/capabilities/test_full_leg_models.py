"""The shipped full-leg cascade (full-leg-coarse + full-leg-fine) on held-out synthetic films,
through measure_full_leg and through the hka step, against the generator's exact truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kneescope.capabilities.landmarks.full_leg import measure_full_leg
from kneescope.capabilities.landmarks.hka_step import HKA_RESULTS, Hka
from kneescope.cohort.item import Item
from kneescope.cohort.step import StepContext, value_problem
from kneescope.cohort.step_registry import step_class
from kneescope.io import write_dicom_radiograph
from kneescope.io.dicom_write import DicomWriteMeta
from kneescope.synth.full_leg import full_leg_films, render_full_leg_film

HELD_OUT_SEED = 424242  # never used in training (7100, 7101) or the benchmark (910000)


def test_cascade_finds_the_landmarks_and_the_hka_of_held_out_films() -> None:
    for f in full_leg_films(2, HELD_OUT_SEED):
        legs = measure_full_leg(f.film)
        assert [leg.side for leg in legs] == ["right", "left"]
        for truth, found in zip(f.legs, legs, strict=True):
            assert found.reason is None, found.reason
            assert found.hka_deg is not None
            marks = truth.landmarks_mm()
            for name in ("hip", "knee", "ankle"):
                got = getattr(found, f"{name}_mm")
                assert np.hypot(*np.subtract(got, marks[name])) < 6.0, (name, got, marks[name])
                rc = getattr(found, f"{name}_rc")
                assert rc == pytest.approx((got[0] / f.pixel_mm, got[1] / f.pixel_mm))
            assert abs(found.hka_deg - truth.hka_deg) < 2.5
            assert (found.hka_deg < 180.0) == (truth.hka_deg < 180.0) or abs(
                truth.hka_deg - 180.0
            ) < 2.5


@pytest.mark.slow  # the steps' columns and reasons are covered by faster tests
def test_a_film_of_another_size_and_spacing(tmp_path: Path) -> None:
    """4000 x 1000 at 0.36 mm, read back from DICOM, measured by the hka step."""
    legs = {"right": (174.0, 1.02), "left": (185.0, 1.02)}
    film, truths, _ = render_full_leg_film(legs, seed=77, shape=(4000, 1000), pixel_mm=0.36)
    path = tmp_path / "leg.dcm"
    meta = DicomWriteMeta(patient_id="P1", study_date="20260101", uid_seed="leg")
    write_dicom_radiograph(film, path, meta=meta)
    assert step_class("hka") is Hka
    step = Hka()
    item = Item(item_id="film1", path=str(path), unit="full_leg")
    result = step.run(item, StepContext(tmp_path / "out"))
    columns = {c.name: c for c in HKA_RESULTS}
    for key, value in result.values.items():
        assert value_problem("hka", columns, key, value) == ""
    for truth in truths:
        side = truth.side
        assert result.values[f"leg_{side}_reason"] is None
        assert abs(float(result.values[f"hka_{side}_deg"]) - truth.hka_deg) < 2.5
        knee = truth.landmarks_mm()["knee"]
        got = (result.values[f"knee_{side}_row_mm"], result.values[f"knee_{side}_column_mm"])
        assert np.hypot(*np.subtract(got, knee)) < 6.0


@pytest.mark.parametrize("name", ["full-leg-coarse", "full-leg-fine"])
def test_the_landmark_models_are_shipped_with_their_cards(name: str) -> None:
    import re

    import torch

    from kneescope.io.digest import file_sha256
    from kneescope.models.pretrained import find_shipped

    model = find_shipped(name)
    assert model is not None and model.entry.kind == "landmarks"
    raw = torch.load(model.path, map_location="cpu", weights_only=True)
    assert raw["format"] == "kneescope-model" and raw["kind"] == "landmarks"
    sha = file_sha256(model.verified_path())
    assert model.path.stat().st_size == model.entry.size_bytes
    card = model.card_text()
    assert card.startswith(f"# {name}\n")
    assert re.findall(r"[0-9a-f]{64}", card)[0] == sha
    assert "not validated on real" in card
