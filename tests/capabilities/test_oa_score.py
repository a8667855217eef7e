"""The holistic OA score library against known truth.

The synthetic results tables here follow the generator's disease model in miniature: each
knee has a latent severity D (uniform 0..5), the reader's KL grade is floor(D) and every
feature is a noisy monotone function of D (MRI cartilage thickness, radiograph JSW, a
radiograph classifier's probabilities, denuded bone above D 3). So the right answers are
known: the score must order knees by D better than any single feature, also inside a KL
grade, and its P(KL >= 2) must be calibrated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from kneescope.capabilities.oa_score.features import knee_features
from kneescope.capabilities.oa_score.model_file import load_model, save_model
from kneescope.capabilities.oa_score.ordinal import fit_ordinal
from kneescope.capabilities.oa_score.score import (
    ScoreOptions,
    apply_score,
    expected_calibration_error,
    fit_score,
    predict,
    reliability_bins,
)
from kneescope.errors import InputError, NotFoundError


def cohort_tables(
    n_subjects: int, seed: int = 0, visits: tuple[str, ...] = ("V00", "V01")
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(MRI results, radiograph results, truth) of a synthetic cohort: one MRI item and one
    radiograph-knee item per knee-visit; truth has subject, visit, side, D, KLG."""
    rng = np.random.default_rng(seed)
    mri, xray, truth = [], [], []
    for s in range(n_subjects):
        subject = f"9{s:06d}"
        for side in ("right", "left"):
            d0 = rng.uniform(0.0, 4.7)
            for v, visit in enumerate(visits):
                d = min(d0 + 0.15 * v, 4.99)
                key = {"subject": subject, "visit": visit, "side": side}
                truth.append({**key, "D": d, "KLG": float(np.floor(d))})
                mri.append(
                    {
                        "item_id": f"mri-{subject}-{visit}-{side}",
                        **key,
                        "series": f"1.2.{s}.{v}.{side}",
                        "medial_tibial_cartilage_thickness_mean_mm": 2.2
                        - 0.3 * d
                        + rng.normal(0, 0.25),
                        "femoral_denuded_bone_area_mm2": max(d - 3.0, 0.0) * 60
                        + abs(rng.normal(0, 4)),
                        "measured_side": side,  # text: never a feature
                        "qc_ok": True,  # matches no default pattern
                    }
                )
                centre = d - 0.5 + rng.normal(0, 0.7)  # the classifier's reading of D
                logits = -((np.arange(5) - centre) ** 2) / 0.8
                p = np.exp(logits - logits.max())
                p /= p.sum()
                xray.append(
                    {
                        "item_id": f"xr-{subject}-{visit}-{side}",
                        **key,
                        "series": f"1.3.{s}.{v}",
                        "mjsw_medial_mm": 5.0 - 0.7 * d + rng.normal(0, 0.7),
                        "kl_label": str(int(np.argmax(p))),
                        **{f"kl_probability_{k}": float(p[k]) for k in range(5)},
                        "kl_probability": float(p.max()),
                    }
                )
    return pd.DataFrame(mri), pd.DataFrame(xray), pd.DataFrame(truth)


def _joined_truth(kf_knees: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    merged = kf_knees[["subject", "visit", "side"]].merge(truth, on=["subject", "visit", "side"])
    assert len(merged) == len(kf_knees)
    return merged


def test_ordinal_model_recovers_known_coefficients_and_thresholds() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4000, 3))
    beta = np.array([1.5, -0.8, 0.0])
    theta = np.array([-1.0, 0.5, 2.0, 3.5])
    latent = z @ beta + rng.logistic(size=len(z))
    grades = (latent[:, None] > theta[None, :]).sum(axis=1).astype(float)
    fit = fit_ordinal(z, grades, c=1e6)  # practically unpenalised
    assert fit.converged
    assert fit.coef == pytest.approx(beta, abs=0.1)
    assert fit.thresholds == pytest.approx(theta, abs=0.15)
    assert list(fit.classes) == [0, 1, 2, 3, 4]
    eta = fit.linear(z)
    expected = fit.expected_grade(eta)
    assert np.all(np.diff(expected[np.argsort(eta)]) >= 0)  # increasing in the logit
    assert expected.mean() == pytest.approx(grades.mean(), abs=0.02)  # MLE matches margins
    # a strong penalty shrinks the coefficients towards 0
    shrunk = fit_ordinal(z, grades, c=1e-3)
    assert np.abs(shrunk.coef).sum() < 0.5 * np.abs(fit.coef).sum()
    with pytest.raises(InputError, match="at least two grades"):
        fit_ordinal(z, np.zeros(len(z)))


def test_knee_features_join_mri_and_radiograph_items_of_one_knee_visit() -> None:
    mri, xray, _ = cohort_tables(3, visits=("V00",))
    bilateral = xray.iloc[:1].assign(side="", item_id="film")  # a film read as one item
    kf = knee_features([mri, pd.concat([xray, bilateral], ignore_index=True)])
    assert len(kf.knees) == 6 and kf.rows_without_knee == 1
    assert set(kf.features) == {
        "medial_tibial_cartilage_thickness_mean_mm",
        "femoral_denuded_bone_area_mm2",
        "mjsw_medial_mm",
        "kl_expected_grade",
    }
    assert kf.sources["kl_expected_grade"] == tuple(f"kl_probability_{k}" for k in range(5))
    row = kf.knees.iloc[0]
    source_x = xray[(xray.subject == row.subject) & (xray.side == row.side)].iloc[0]
    source_m = mri[(mri.subject == row.subject) & (mri.side == row.side)].iloc[0]
    expected_grade = sum(k * source_x[f"kl_probability_{k}"] for k in range(5))
    assert row.kl_expected_grade == pytest.approx(expected_grade)
    assert row.mjsw_medial_mm == pytest.approx(source_x.mjsw_medial_mm)
    assert row.medial_tibial_cartilage_thickness_mean_mm == pytest.approx(
        source_m.medial_tibial_cartilage_thickness_mean_mm
    )
    # two MRI series of one knee-visit: their mean
    second = mri.iloc[:1].assign(
        item_id="again", medial_tibial_cartilage_thickness_mean_mm=10.0, series="other"
    )
    kf2 = knee_features([pd.concat([mri, second], ignore_index=True)])
    first = mri.iloc[0]
    joined = kf2.knees.set_index(["subject", "visit", "side"]).loc[
        (first.subject, first.visit, first.side)
    ]
    assert joined.medial_tibial_cartilage_thickness_mean_mm == pytest.approx(
        (first.medial_tibial_cartilage_thickness_mean_mm + 10.0) / 2
    )
    # a mostly missing column and a constant one are dropped, and said why
    sparse = mri.assign(lateral_meniscus_extrusion_mm=[1.0] + [None] * 5, finding_bml=0)
    kf3 = knee_features([sparse])
    assert "lateral_meniscus_extrusion_mm" in kf3.dropped
    assert kf3.dropped["finding_bml"] == "one value for every knee"
    # nothing usable, no knee: one clear error each
    with pytest.raises(InputError, match="no usable score feature"):
        knee_features([mri[["item_id", "subject", "visit", "side", "measured_side"]]])
    with pytest.raises(InputError, match="names a knee"):
        knee_features([mri.assign(side="")])
    with pytest.raises(InputError, match="has no side column"):
        knee_features([mri.drop(columns="side")])


def test_score_tracks_the_latent_severity_better_than_every_single_feature() -> None:
    mri, xray, truth = cohort_tables(150)
    kf = knee_features([mri, xray])
    known = _joined_truth(kf.knees, truth)
    result = fit_score(kf, known["KLG"].to_numpy(), ScoreOptions(), {"test": True})
    scores = result.scores
    assert (scores["oa_fold"] >= 0).all()  # every graded knee scored out of fold
    d = known["D"].to_numpy()
    rho = spearmanr(scores["oa_score"], d).statistic
    singles = {f: abs(spearmanr(kf.knees[f], d).statistic) for f in kf.features}
    assert rho >= max(singles.values()) + 0.02, (rho, singles)
    for grade in (1, 2, 3):  # inside one KL grade the score still orders knees by D
        inside = known["KLG"].to_numpy() == grade
        assert spearmanr(scores["oa_score"][inside], d[inside]).statistic > 0.3, grade
    assert result.summary["ece_kl2_oof"] < 0.08
    assert result.summary["auc_kl2_oof"] > 0.9
    assert sum(b["count"] for b in result.reliability) == len(scores)
    coefficients = {c["feature"]: c["coefficient_per_sd"] for c in result.coefficients}
    assert coefficients["medial_tibial_cartilage_thickness_mean_mm"] < 0  # thinner: worse
    assert coefficients["mjsw_medial_mm"] < 0
    assert coefficients["kl_expected_grade"] > 0
    # the expected grade lies on the KL scale and P(KL >= 2) in [0, 1]
    assert scores["oa_score"].between(0, 4).all()
    assert scores["oa_probability_kl2"].between(0, 1).all()


def test_folds_keep_both_knees_and_every_visit_of_a_subject_together() -> None:
    mri, xray, truth = cohort_tables(30)
    kf = knee_features([mri, xray])
    known = _joined_truth(kf.knees, truth)
    grades = known["KLG"].to_numpy().copy()
    grades[:2] = np.nan  # two knee-visits without a reader grade: scored by the full model
    result = fit_score(kf, grades, ScoreOptions(folds=4), {})
    folds = result.scores.groupby("subject")["oa_fold"].unique()
    graded = result.scores[np.isfinite(grades)]
    assert graded.groupby("subject")["oa_fold"].nunique().max() == 1
    assert sorted(graded["oa_fold"].unique()) == [0, 1, 2, 3]
    assert list(result.scores["oa_fold"][:2]) == [-1, -1]
    assert len(folds) == 30
    full = predict(result.model, kf.matrix()[:2])
    assert result.scores["oa_score"][:2].to_numpy() == pytest.approx(full["oa_score"])


def test_saved_model_loads_safely_and_scores_another_run_the_same(tmp_path: Path) -> None:
    mri, xray, truth = cohort_tables(40)
    kf = knee_features([mri, xray])
    grades = _joined_truth(kf.knees, truth)["KLG"].to_numpy()
    result = fit_score(kf, grades, ScoreOptions(), {})
    path = save_model(result.model, tmp_path / "oa_score_model.json", "card")
    loaded = load_model(path)
    assert loaded == result.model
    assert (tmp_path / "oa_score_model.md").read_text() == "card"
    other_mri, other_xray, _ = cohort_tables(5, seed=9)
    applied = apply_score(loaded, [other_mri, other_xray], None)
    direct = predict(result.model, knee_features([other_mri, other_xray]).matrix())
    assert applied.scores["oa_score"].to_numpy() == pytest.approx(direct["oa_score"])
    assert (applied.scores["oa_fold"] == -1).all()
    # a run without a column the model needs: refused, naming it
    with pytest.raises(InputError, match="needs mjsw_medial_mm"):
        apply_score(loaded, [other_mri, other_xray.drop(columns="mjsw_medial_mm")], None)
    # a missing value of one knee: the training median, counted
    holes = other_xray.copy()
    holes.loc[0, "mjsw_medial_mm"] = np.nan
    assert applied.scores["oa_imputed_features"].sum() == 0
    assert apply_score(loaded, [other_mri, holes], None).scores["oa_imputed_features"].sum() == 1
    # files that are not a score model: one clear error, nothing executed
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(InputError, match="not a score model"):
        load_model(bad)
    data = json.loads(path.read_text())
    data["thresholds"] = sorted(data["thresholds"], reverse=True)
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="thresholds must increase"):
        load_model(bad)
    bad.write_text(json.dumps({**json.loads(path.read_text()), "exec": "rm -rf /"}))
    with pytest.raises(InputError, match="not a valid score model"):
        load_model(bad)
    with pytest.raises(NotFoundError):
        load_model(tmp_path / "absent.json")


def test_reliability_bins_and_ece_on_known_numbers() -> None:
    p = np.array([0.05, 0.05, 0.15, 0.95, 0.95, 0.95, 0.95])
    y = np.array([0, 0, 1, 1, 1, 1, 0])
    bins = reliability_bins(p, y, n_bins=10)
    assert [b["count"] for b in bins] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 4]
    assert bins[9]["observed"] == pytest.approx(0.75)
    # |0.05 - 0| * 2 + |0.15 - 1| * 1 + |0.95 - 0.75| * 4, over 7
    assert expected_calibration_error(bins) == pytest.approx((0.1 + 0.85 + 0.8) / 7)
    assert expected_calibration_error(reliability_bins(np.array([0.0, 1.0]), np.array([0, 1]))) == 0


def test_too_few_graded_knees_is_one_clear_error() -> None:
    mri, xray, truth = cohort_tables(4, visits=("V00",))
    kf = knee_features([mri, xray])
    grades = _joined_truth(kf.knees, truth)["KLG"].to_numpy()
    with pytest.raises(InputError, match="at least 20"):
        fit_score(kf, grades, ScoreOptions(), {})
    with pytest.raises(InputError, match="folds must be at least 2"):
        ScoreOptions(folds=1)
