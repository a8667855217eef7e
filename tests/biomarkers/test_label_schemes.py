"""Label schemes in (kneescope.biomarkers.label_schemes): synthetic knees converted to OAI-ZIB
(combined tibial cartilage, with and without the patella), OAIZIB-CM and a JSON scheme measure
like the same knee in kneescope's labels; the combined tibial cartilage is split back into
exactly the generator's medial and lateral plates (right and left knees, oblique slice stacks
and knees rotated in the scanner); what a scheme does not label is NaN with its flag and does
not fail qc_ok; the CLI option and the measure step's option."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from kneescope.biomarkers import KneeMeasurements, measure_knee
from kneescope.biomarkers.label_schemes import (
    OAI_ZIB_SCHEME,
    measure_labelled,
    to_kneescope_labels,
)
from kneescope.biomarkers.qc import value_structures
from kneescope.cli.app import main
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.core import Volume
from kneescope.core.labels import KNEE_LABELS
from kneescope.errors import InputError
from kneescope.io import read_volume, write_nifti
from kneescope.synth.knee import render_knee
from kneescope.synth.params import SMALL, sample_knee_params
from kneescope.workspace import Workspace

# kneescope value -> value in another scheme (index = kneescope label 0..9)
TO_OAI_ZIB = np.array([0, 1, 2, 3, 4, 4, 0, 0, 0, 0], dtype=np.uint8)
TO_OAI_ZIB_WITH_PATELLA = np.array([0, 1, 2, 3, 4, 4, 5, 6, 0, 0], dtype=np.uint8)
TO_OAIZIB_CM = np.array([0, 1, 2, 3, 4, 5, 0, 0, 0, 0], dtype=np.uint8)
PERMUTED = {  # a scheme of one's own: every structure, other values
    "patellar_cartilage": 1,
    "femoral_cartilage": 2,
    "medial_tibial_cartilage": 3,
    "lateral_tibial_cartilage": 4,
    "medial_meniscus": 5,
    "lateral_meniscus": 6,
    "femur": 7,
    "tibia": 8,
    "patella": 9,
}
MENISCI = frozenset({"medial_meniscus", "lateral_meniscus"})
PATELLA = frozenset({"patella", "patellar_cartilage"})


def _rotated(volume: Volume, deg_about_s: float, deg_about_a: float) -> Volume:
    """The same label map with the knee rotated in the scanner (about its own centre):
    ``deg_about_s`` about the superior axis (leg rotation), ``deg_about_a`` about the
    anterior one (varus-valgus)."""
    s, a = np.deg2rad(deg_about_s), np.deg2rad(deg_about_a)
    about_s = np.array([[np.cos(s), -np.sin(s), 0], [np.sin(s), np.cos(s), 0], [0, 0, 1]])
    about_a = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rot = about_s @ about_a
    affine = volume.affine_ras.copy()
    centre = affine[:3, :3] @ ((np.asarray(volume.shape) - 1) / 2.0) + affine[:3, 3]
    affine[:3, :3] = rot @ affine[:3, :3]
    affine[:3, 3] = centre + rot @ (affine[:3, 3] - centre)
    return Volume(volume.array, affine, dict(volume.metadata))


KNEES = {
    "right": (0, 2, "right", (0.0, 0.0, 0.0), 0.0, 0.0),
    "left-oblique-rotated": (1, 4, "left", (8.0, -8.0, 8.0), 30.0, 8.0),
    "right-oblique-rotated": (2, 3, "right", (-6.0, 6.0, -6.0), -25.0, -6.0),
}


@functools.cache
def _knee(name: str) -> tuple[Volume, KneeMeasurements]:
    """A synthetic knee (small grid) in kneescope labels, posed, and its measurement."""
    seed, klg, side, oblique, about_s, about_a = KNEES[name]
    params = sample_knee_params(np.random.default_rng(seed), klg=klg)
    params = params.model_copy(update={"side": side, "obliquity_deg": oblique})
    labels = _rotated(render_knee(params, SMALL).labels, about_s, about_a)
    return labels, measure_knee(labels, with_maps=False)


@pytest.fixture(params=sorted(KNEES), ids=str)
def knee(request: pytest.FixtureRequest) -> tuple[Volume, KneeMeasurements]:
    return _knee(request.param)


@pytest.fixture
def one_knee() -> tuple[Volume, KneeMeasurements]:
    return _knee("right")


def _convert(labels: Volume, lut: npt.NDArray[np.uint8], *, keep_side: bool = True) -> Volume:
    meta = {"side": labels.side} if keep_side else {}
    return Volume(lut[labels.array], labels.affine_ras, meta)


def _assert_measures_like(
    m: KneeMeasurements, ref: KneeMeasurements, absent: frozenset[str], scheme: str
) -> None:
    """``m`` (another scheme) equals ``ref`` (kneescope labels) on every labelled structure;
    every value of an absent structure is NaN and explained by its raised flag."""
    assert m.values.keys() == ref.values.keys()
    compared = 0
    for key, value in ref.values.items():
        if value_structures(key) & absent or math.isnan(value):
            assert math.isnan(m.values[key]), key
        else:
            assert m.values[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
            compared += 1
    assert compared > 40
    for structure in absent:
        assert m.qc[f"qc_not_labelled_{structure}"] is True
        assert m.qc[f"qc_missing_{structure}"] is False
        assert structure.replace("_", " ") in m.reasons[f"qc_not_labelled_{structure}"]
        assert scheme in m.reasons[f"qc_not_labelled_{structure}"]
    for structure in set(PATELLA | MENISCI) - absent:
        assert m.qc[f"qc_not_labelled_{structure}"] is False
    # no NaN without a flag: the NaN values of absent structures are explained by their
    # flags; any other NaN (one the kneescope-label measurement also has) is still counted
    others = [
        k for k, v in ref.values.items() if math.isnan(v) and not value_structures(k) & absent
    ]
    assert m.qc["qc_unmeasured_values"] == len(others)
    assert m.qc["qc_tibial_split_unclear"] is False
    assert m.qc["qc_ok"] is (not others), m.reasons


def test_oai_zib_split_gives_back_the_generators_plates(knee: tuple[Volume, object]) -> None:
    labels, _ = knee
    conv = to_kneescope_labels(_convert(labels, TO_OAI_ZIB), "oai-zib")
    original = labels.array
    for value in (4, 5):
        assert np.array_equal(conv.labels.array == value, original == value), value
    assert conv.split is not None and conv.split.gap_ratio < 0.2
    assert conv.labelled == frozenset(
        {"femur", "femoral_cartilage", "tibia", "medial_tibial_cartilage"}
        | {"lateral_tibial_cartilage"}
    )


def test_oai_zib_measures_like_kneescope_labels(knee: tuple[Volume, KneeMeasurements]) -> None:
    labels, ref = knee
    m = measure_labelled(_convert(labels, TO_OAI_ZIB), "oai-zib", with_maps=False)
    assert m.side == labels.side
    assert m.side_from_anatomy is None and m.qc["qc_side_unverified"] is True  # no patella
    # the small grid is too coarse for extrusion, but there is no meniscus to measure
    assert m.qc["qc_extrusion_grid_too_coarse"] is False
    _assert_measures_like(m, ref, PATELLA | MENISCI, "oai-zib")


def test_an_oai_zib_knee_is_not_failed_for_lacking_menisci_and_patella() -> None:
    labels, ref = _knee("right")
    m = measure_labelled(_convert(labels, TO_OAI_ZIB), "oai-zib", with_maps=False)
    assert ref.qc["qc_ok"] is False  # kneescope labels on the small grid: extrusion refused
    assert m.qc["qc_ok"] is True, m.reasons
    failing = {k for k, v in m.qc.items() if v and not k.startswith("qc_not_labelled_")}
    assert failing == {"qc_ok", "qc_side_unverified"}  # the latter informative: no patella
    nan = {k for k, v in m.values.items() if math.isnan(v)}
    assert nan and all(value_structures(k) & (PATELLA | MENISCI) for k in nan)


def test_oai_zib_with_patella_measures_the_patella_too(
    knee: tuple[Volume, KneeMeasurements],
) -> None:
    labels, ref = knee
    m = measure_labelled(_convert(labels, TO_OAI_ZIB_WITH_PATELLA), OAI_ZIB_SCHEME)
    assert m.side_from_anatomy == labels.side  # the patella tells the side: it agrees
    assert m.values["patellar_cartilage_volume_mm3"] > 0
    _assert_measures_like(m, ref, MENISCI, "oai-zib")


def test_oaizib_cm_and_a_json_scheme(knee: tuple[Volume, KneeMeasurements], tmp_path: Path) -> None:
    labels, ref = knee
    m = measure_labelled(_convert(labels, TO_OAIZIB_CM), "OAIZIB-CM", with_maps=False)
    _assert_measures_like(m, ref, PATELLA | MENISCI, "oaizib-cm")
    scheme = tmp_path / "mine.json"
    scheme.write_text(json.dumps(PERMUTED), encoding="utf-8")
    lut = np.zeros(10, dtype=np.uint8)
    for value, name in KNEE_LABELS.labels.items():
        lut[value] = PERMUTED[name]
    mine = measure_labelled(_convert(labels, lut), scheme, with_maps=False)
    assert mine.values.keys() == ref.values.keys()
    for key, value in ref.values.items():
        assert mine.values[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
    assert mine.qc == ref.qc


def test_combined_tibial_cartilage_needs_the_side_and_a_plausible_header(
    one_knee: tuple[Volume, KneeMeasurements],
) -> None:
    labels, _ = one_knee
    no_side = _convert(labels, TO_OAI_ZIB, keep_side=False)
    with pytest.raises(InputError, match="pass --side right or left"):
        measure_labelled(no_side, "oai-zib")
    # the side given instead of recorded: the same plates
    given = to_kneescope_labels(no_side, "oai-zib", labels.side)
    assert np.array_equal(given.labels.array, TO_OAIZIB_CM[labels.array])
    # a header whose left-right axis is not the knee's: refused, not guessed
    turned = _rotated(_convert(labels, TO_OAI_ZIB), 75.0, 0.0)
    with pytest.raises(InputError, match="cannot tell its medial plate"):
        measure_labelled(turned, "oai-zib")


def test_one_plate_missing_is_flagged_not_silently_split() -> None:
    labels, _ = _knee("right")
    zib = TO_OAI_ZIB[labels.array]
    zib[labels.array == 5] = 0  # the lateral plate not segmented: nothing to split from
    m = measure_labelled(Volume(zib, labels.affine_ras, {"side": labels.side}), "oai-zib")
    assert m.qc["qc_tibial_split_unclear"] is True and m.qc["qc_ok"] is False
    assert "no clear gap" in m.reasons["qc_tibial_split_unclear"]


def test_every_measure_column_names_the_structures_it_is_measured_from() -> None:
    """So that a scheme without a structure explains every NaN it causes (no NaN without a
    flag), every float column of the measure step maps to the structures it comes from."""
    from kneescope.capabilities.biomarkers.results import MEASURE_RESULTS

    floats = [c.name for c in MEASURE_RESULTS if c.kind == "float"]
    assert len(floats) > 50
    assert [name for name in floats if not value_structures(name)] == []


def test_cli_measure_labels_oai_zib(
    one_knee: tuple[Volume, KneeMeasurements], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, ref = one_knee
    path = write_nifti(_convert(labels, TO_OAI_ZIB, keep_side=False), tmp_path / "zib.nii.gz")
    table = tmp_path / "meas.csv"
    args = ["measure", str(path), "--labels", "oai-zib", "--side", str(labels.side)]
    code = main([*args, "-o", str(table), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (row,) = json.loads(captured.out)
    assert row["qc_ok"] is True and row["qc_not_labelled_medial_meniscus"] is True
    assert row["medial_meniscus_volume_mm3"] is None
    assert "not labelled_medial_meniscus" not in row["qc_reasons"]
    assert "no medial meniscus label" in row["qc_reasons"]
    key = "medial_tibial_cartilage_thickness_mean_mm"
    assert row[key] == pytest.approx(ref.values[key], rel=1e-9)
    written = pd.read_csv(table)
    assert bool(written.loc[0, "qc_not_labelled_patella"]) is True
    assert written.loc[0, key] == pytest.approx(ref.values[key], rel=1e-9)


def test_measure_step_option_labels(
    one_knee: tuple[Volume, KneeMeasurements], tmp_path: Path
) -> None:
    from kneescope.capabilities.biomarkers.results import MEASURE_RESULTS

    labels, _ = one_knee
    path = write_nifti(_convert(labels, TO_OAI_ZIB, keep_side=False), tmp_path / "zib.nii.gz")
    config = PipelineConfig.model_validate(
        {
            "name": "measure-oai-zib",
            "items": {"rows": [{"item_id": "k", "side": labels.side, "path": str(path)}]},
            "steps": [
                {"name": "load_labels"},
                {"name": "measure", "options": {"labels": "oai-zib"}},
            ],
        }
    )
    result = run_pipeline(config, Workspace.resolve(tmp_path / "ws"))
    assert result.done == 1, result
    row = pd.read_parquet(result.results_path).iloc[0]
    want = measure_labelled(read_volume(path), "oai-zib", labels.side, with_maps=False)
    for key, value in want.values.items():
        assert row[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
    assert bool(row["qc_ok"]) and bool(row["qc_not_labelled_lateral_meniscus"])
    assert {c.name for c in MEASURE_RESULTS} <= set(row.index)


def test_a_json_schemes_content_is_part_of_the_items_key(tmp_path: Path) -> None:
    from kneescope.cohort.pipeline_config import StepConfig
    from kneescope.cohort.step_registry import steps_fingerprint

    scheme = tmp_path / "mine.json"
    scheme.write_text(json.dumps(PERMUTED), encoding="utf-8")
    steps = [StepConfig(name="measure", options={"labels": str(scheme)})]
    before = steps_fingerprint(steps)
    scheme.write_text(json.dumps({**PERMUTED, "femur": 9, "patella": 7}), encoding="utf-8")
    after = steps_fingerprint(steps)
    assert before["config_hash"] == after["config_hash"]  # same options
    assert before["model_hash"] != after["model_hash"]  # other content: measured again
    builtin = steps_fingerprint([StepConfig(name="measure", options={"labels": "oai-zib"})])
    assert builtin["model_hash"] == ""
