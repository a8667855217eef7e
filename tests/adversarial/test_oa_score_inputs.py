"""Hostile results tables for the OA score: infinities, text in a feature's name space,
numeric subject ids, odd side spellings, a model file that tries to be code. Each gives a
right answer or one clear error, never a silent wrong score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kneescope.capabilities.oa_score.features import knee_features
from kneescope.capabilities.oa_score.model_file import load_model, save_model
from kneescope.capabilities.oa_score.score import ScoreOptions, apply_score, fit_score, predict
from kneescope.errors import InputError


def _table(n: int = 40, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = rng.uniform(0, 4.9, n)
    table = pd.DataFrame(
        {
            "subject": [9000000 + i // 2 for i in range(n)],  # numeric ids, as a CSV reads them
            "visit": "V00",
            "side": ["Right", "LEFT"] * (n // 2),
            "mjsw_medial_mm": 5 - 0.8 * d + rng.normal(0, 0.3, n),
            "medial_tibial_cartilage_thickness_mean_mm": 2 - 0.3 * d + rng.normal(0, 0.2, n),
        }
    )
    return table, np.floor(d)


def test_numeric_ids_and_side_spellings_name_the_same_knees() -> None:
    table, _ = _table()
    kf = knee_features([table])
    assert len(kf.knees) == 40 and kf.rows_without_knee == 0
    assert set(kf.knees["side"]) == {"right", "left"}
    assert kf.knees["subject"].iloc[0] == "9000000"


def test_infinite_and_text_values_are_never_features_or_scores() -> None:
    table, grades = _table()
    table.loc[3, "mjsw_medial_mm"] = np.inf  # a broken measurement: treated as missing
    table["finding_note_medial"] = "looks fine"  # text under a feature pattern: not a feature
    kf = knee_features([table])
    assert "finding_note_medial" not in kf.features
    result = fit_score(kf, grades, ScoreOptions(), {})
    assert np.isfinite(result.scores["oa_score"]).all()
    row = result.scores.index[
        (kf.knees["subject"] == "9000001") & (kf.knees["side"] == "left")
    ]  # knee 3
    assert result.scores.loc[row, "oa_imputed_features"].item() == 1


def test_a_model_file_with_code_or_bad_numbers_is_refused(tmp_path: Path) -> None:
    table, grades = _table()
    result = fit_score(knee_features([table]), grades, ScoreOptions(), {})
    path = save_model(result.model, tmp_path / "m.json", "card")
    good = json.loads(path.read_text())
    cases = {
        "nan": {**good, "coef": [float("nan")] * len(good["coef"])},
        "zero_scale": {**good, "scales": [0.0] * len(good["scales"])},
        "short": {**good, "means": good["means"][:1]},
        "dunder": {**good, "__reduce__": "os.system"},
    }
    for name, data in cases.items():
        bad = tmp_path / f"{name}.json"
        bad.write_text(json.dumps(data))
        with pytest.raises(InputError):
            load_model(bad)
    # the loaded good model scores exactly as the fitted one
    loaded = load_model(path)
    x = knee_features([table]).matrix()
    assert predict(loaded, x)["oa_score"] == pytest.approx(predict(result.model, x)["oa_score"])


def test_applying_a_model_to_a_table_without_knees_is_one_error() -> None:
    table, grades = _table()
    result = fit_score(knee_features([table]), grades, ScoreOptions(), {})
    with pytest.raises(InputError, match="names a knee"):
        apply_score(result.model, [table.assign(side="both")], None)
    with pytest.raises(InputError, match="empty"):
        apply_score(result.model, [table.iloc[:0]], None)
