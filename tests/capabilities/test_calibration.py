"""Temperature scaling, ECE and reliability diagrams against known truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kneescope.capabilities.classification.calibration import (
    T_MAX,
    T_MIN,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_table,
    save_reliability_diagram,
    softmax,
)
from kneescope.errors import InputError


def _calibrated_set(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True logits ``(n, k)`` and labels drawn from their softmax: calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=(n, k))
    p = softmax(z)
    labels = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return z, labels


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_fitted_temperature_recovers_the_scale_of_the_logits(scale: float) -> None:
    # labels follow softmax(z); the "network" reports z * scale (over- or under-confident):
    # the NLL-optimal temperature is the scale
    z, labels = _calibrated_set(20_000, 5, seed=1)
    t = fit_temperature(z * scale, labels)
    assert t == pytest.approx(scale, rel=0.05)
    # and the fit is the minimum: nearby temperatures do worse
    nll = negative_log_likelihood(z * scale, labels, t)
    assert nll < negative_log_likelihood(z * scale, labels, t * 1.1)
    assert nll < negative_log_likelihood(z * scale, labels, t / 1.1)


def test_fit_temperature_takes_torch_tensors() -> None:
    z, labels = _calibrated_set(5_000, 3, seed=2)
    t = fit_temperature(torch.from_numpy(z * 2.0).float(), torch.from_numpy(labels))
    assert t == pytest.approx(2.0, rel=0.1)


def test_temperature_stops_at_its_bounds() -> None:
    # perfectly separated: the NLL keeps falling as T -> 0
    z = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]] * 10)
    labels = np.array([0, 1, 2] * 10)
    assert fit_temperature(z, labels) == pytest.approx(T_MIN)
    # logits that disagree with the labels as often as they agree: T -> infinity
    rng = np.random.default_rng(3)
    noise = rng.normal(size=(4_000, 4))
    assert fit_temperature(noise, rng.integers(0, 4, 4_000)) > 5.0
    assert fit_temperature(noise, rng.integers(0, 4, 4_000)) <= T_MAX


def test_calibrated_probabilities_have_ece_near_zero_and_overconfident_ones_do_not() -> None:
    z, labels = _calibrated_set(20_000, 5, seed=4)
    assert expected_calibration_error(softmax(z), labels) < 0.02
    over = softmax(z * 3.0)
    assert expected_calibration_error(over, labels) > 0.1
    # temperature scaling on a validation half repairs the other half
    t = fit_temperature(z[:10_000] * 3.0, labels[:10_000])
    repaired = apply_temperature(z[10_000:] * 3.0, t)
    assert expected_calibration_error(repaired, labels[10_000:]) < 0.03
    # and never changes a prediction
    assert (repaired.argmax(1) == z[10_000:].argmax(1)).all()


def test_ece_and_table_match_a_hand_computed_example() -> None:
    # 10 bins. Four cases at confidence 0.9 (bin (0.8, 0.9]), two right: gap 0.4.
    # Two cases at confidence 0.6 (bin (0.5, 0.6]), both right: gap 0.4. One at exactly 0.5
    # (bin (0.4, 0.5]), wrong: gap 0.5. ECE = (4 * 0.4 + 2 * 0.4 + 1 * 0.5) / 7.
    probs = np.array(
        [[0.9, 0.1]] * 4 + [[0.4, 0.6]] * 2 + [[0.5, 0.5]],
    )
    labels = np.array([0, 0, 1, 1, 1, 1, 1])
    table = reliability_table(probs, labels, n_bins=10)
    assert table.count.tolist() == [0, 0, 0, 0, 1, 2, 0, 0, 4, 0]
    assert table.confidence[8] == pytest.approx(0.9)
    assert table.accuracy[8] == pytest.approx(0.5)
    assert table.accuracy[5] == pytest.approx(1.0)
    assert table.accuracy[4] == pytest.approx(0.0)  # arg-max of a tie is class 0
    assert math.isnan(table.confidence[0]) and math.isnan(table.accuracy[0])
    expected = (4 * 0.4 + 2 * 0.4 + 1 * 0.5) / 7
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)
    assert table.ece == pytest.approx(expected)
    rows = table.rows()
    assert len(rows) == 10 and rows[8]["count"] == 4 and rows[9]["upper"] == pytest.approx(1.0)


def test_confidence_one_falls_in_the_last_bin() -> None:
    table = reliability_table(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0]), n_bins=15)
    assert table.count[-1] == 2 and table.count.sum() == 2
    assert table.accuracy[-1] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("probs", "labels", "what"),
    [
        (np.array([[2.0, -1.0]]), np.array([0]), "softmax outputs"),  # logits, not probs
        (np.array([[0.5, 0.2]]), np.array([0]), "sum to 1"),
        (np.array([0.5, 0.5]), np.array([0]), "(N, K)"),
        (np.array([[0.5, 0.5]]), np.array([2]), "0..1"),
        (np.array([[0.5, 0.5]]), np.array([0, 1]), "one label per case"),
        (np.array([[np.nan, 0.5]]), np.array([0]), "finite"),
    ],
)
def test_bad_inputs_are_refused(probs: np.ndarray, labels: np.ndarray, what: str) -> None:
    with pytest.raises(InputError, match=what.replace("(", r"\(").replace(")", r"\)")):
        expected_calibration_error(probs, labels)


def test_fit_temperature_refuses_broken_logits() -> None:
    with pytest.raises(InputError, match="NaN"):
        fit_temperature(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(InputError, match=r"\(N, K\)"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(InputError, match="positive"):
        apply_temperature(np.zeros((1, 3)), 0.0)


def test_reliability_diagram_is_a_png_written_atomically(tmp_path: Path) -> None:
    from PIL import Image

    z, labels = _calibrated_set(2_000, 5, seed=5)
    path = save_reliability_diagram(softmax(z * 2), labels, tmp_path / "rel.png", title="val")
    assert path == tmp_path / "rel.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200
    assert [p.name for p in tmp_path.iterdir()] == ["rel.png"]  # no temporary left behind
    # a failed write leaves the earlier file as it was
    before = path.read_bytes()
    with pytest.raises(InputError):
        save_reliability_diagram(z, labels, path)  # logits, refused before anything is written
    assert path.read_bytes() == before
    with pytest.raises(InputError, match="does not exist"):
        save_reliability_diagram(softmax(z), labels, tmp_path / "missing" / "rel.png")
