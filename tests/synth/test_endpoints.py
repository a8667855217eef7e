"""The fast endpoint table (issue 17): its columns, its noise, its agreement with the exact
truth, simulated futures and the true treatment effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kneescope.errors import InputError
from kneescope.synth.anatomy import KneeShape
from kneescope.synth.cohort import CohortSpec, jsn_grade, plan_cohort
from kneescope.synth.disease import loss_of_severity
from kneescope.synth.endpoints import (
    ENDPOINTS,
    MEASUREMENT_SD_MM,
    endpoint_table,
    index_knees,
    simulate_future,
    true_endpoints,
    true_treatment_effect,
)
from kneescope.synth.region_truth import we2008_truth

MFTC = "we2008_MFTC_ThCtAB_mm"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return endpoint_table(CohortSpec(subjects=400, visits=("V00", "V01", "V03"), seed=17020))


def test_one_row_per_knee_visit_with_every_column(table: pd.DataFrame) -> None:
    assert len(table) == 400 * 2 * 3
    for col in ("subject", "side", "visit", "months", "arm", "age", "sex", "bmi", "klg"):
        assert col in table.columns
    for col in ("jsn_medial", "jsn_lateral", "severity", "effusion", "pain", "rate"):
        assert col in table.columns
    assert {"baseline_klg", "medial_predominant"} <= set(table.columns)
    assert set(table["progression"]) == {"non-progressor", "typical", "fast"}
    assert (table["non_progressor"] == (table["rate"] == 0)).all()
    fast = table.loc[table["fast_progressor"] & (table["months"] == 0), "rate"]
    typical = table.loc[(table["progression"] == "typical") & (table["months"] == 0), "rate"]
    assert fast.median() > 2 * typical.median()  # x3 the rate
    for name in ENDPOINTS:
        assert table[name].notna().all() and table[f"true_{name}"].notna().all()
    assert set(table["arm"]) == {"control"}
    assert table.groupby(["subject", "side"]).size().eq(3).all()


def test_measurement_noise_has_the_published_sd(table: pd.DataFrame) -> None:
    for region in ("MT", "cMF", "LT"):
        col = f"we2008_{region}_ThCtAB_mm"
        err = (table[col] - table[f"true_{col}"]).to_numpy()
        sd = MEASUREMENT_SD_MM[region]
        assert abs(err.mean()) < 4 * sd / np.sqrt(len(err))
        assert abs(err.std() / sd - 1.0) < 0.06  # 2400 draws: SE of the SD ~1.5 %
    parts = table["we2008_MT_ThCtAB_mm"] + table["we2008_cMF_ThCtAB_mm"]
    np.testing.assert_allclose(table[MFTC], parts, rtol=0, atol=1e-12)
    quiet = endpoint_table(
        CohortSpec(subjects=5, visits=("V00", "V03"), seed=17020), measurement_noise=False
    )
    for name in ENDPOINTS:
        np.testing.assert_array_equal(quiet[name], quiet[f"true_{name}"])


def test_noise_does_not_depend_on_the_other_visits() -> None:
    a = endpoint_table(CohortSpec(subjects=3, visits=("V00", "V03"), seed=17021))
    b = endpoint_table(CohortSpec(subjects=3, visits=("V00", "V01", "V03"), seed=17021))
    b = b[b["visit"] != "V01"].reset_index(drop=True)
    pd.testing.assert_frame_equal(a[list(ENDPOINTS)], b[list(ENDPOINTS)])


def test_analytic_values_follow_the_exact_truth() -> None:
    """A progressing knee at baseline and 4 years: the analytic ThCtAB within 0.1 mm of the
    exact region truth (we2008_truth of the knee's parameters), and its change within 0.03 mm."""
    spec = CohortSpec(subjects=40, visits=("V00", "V06"), seed=17022)
    plans = plan_cohort(spec)
    df = endpoint_table(spec, plans, measurement_noise=False)
    knee = df[(df["baseline_klg"] == 3) & (df["rate"] > 0.05) & df["medial_predominant"]]
    index, side = knee.iloc[0][["subject_index", "side"]]
    rows = df[(df["subject_index"] == index) & (df["side"] == side)].sort_values("months")
    states = plans[int(index)].knees[str(side)]
    exact = [we2008_truth(KneeShape.from_params(s.params)) for s in states]
    for region in ("MT", "cMF", "MFTC"):
        col = f"we2008_{region}_ThCtAB_mm"
        analytic = rows[f"true_{col}"].to_numpy()
        truth = np.array([e[col] for e in exact])
        assert np.all(np.abs(analytic - truth) < 0.1), (region, analytic, truth)
        assert abs((analytic[1] - analytic[0]) - (truth[1] - truth[0])) < 0.03, region
    assert truth[1] < truth[0] - 0.05  # it did progress


def test_simulated_futures_match_the_table(table: pd.DataFrame) -> None:
    base = table[table["months"] == 0].reset_index(drop=True)
    fu = table[table["months"] == 24].reset_index(drop=True)
    planned = (fu[f"true_{MFTC}"] - base[f"true_{MFTC}"]).to_numpy()
    sims = [simulate_future(base, [24], np.random.default_rng(k)) for k in range(4)]
    sim = np.concatenate(
        [s[f"true_{MFTC}"].to_numpy() - base[f"true_{MFTC}"].to_numpy() for s in sims]
    )
    se = np.sqrt(planned.var() / len(planned) + sim.var() / len(sim))
    assert abs(planned.mean() - sim.mean()) < 4 * se
    assert 0.8 < sim.std() / planned.std() < 1.25
    assert list(sims[0].columns[:3]) == ["row", "months", "severity"]
    assert (sims[0]["klg"] >= base["baseline_klg"]).all()
    loss = loss_of_severity(sims[0]["severity"].to_numpy())
    medial = base["medial_predominant"].to_numpy(bool)
    expected = [jsn_grade(x) for x in np.where(medial, loss, 0.3 * loss)]
    assert sims[0]["jsn_medial"].tolist() == expected


def test_true_treatment_effect_grows_with_the_effect() -> None:
    """Effect 0: exactly 0; effect e: the mean over the same knees of the noise-free endpoint
    at the severity ``d0 + (1 - e)(d - d0)`` minus that at ``d``; monotone in e."""
    spec = CohortSpec(subjects=3, visits=("V00", "V03"), seed=17024)
    effects = [
        true_treatment_effect(spec.model_copy(update={"treatment_effect": e}), MFTC, "V03", 400)
        for e in (0.0, 0.25, 0.5, 1.0)
    ]
    assert effects[0] == 0.0
    assert 0 < effects[1] < effects[2] < effects[3]
    df = endpoint_table(spec.model_copy(update={"subjects": 200}), measurement_noise=False)
    fu = df[df["months"] == 24]
    d0, d = fu["latent_d0"].to_numpy(), fu["severity"].to_numpy()
    for effect, expected in zip((0.5, 1.0), effects[2:], strict=True):
        treated = true_endpoints(
            d0 + (1 - effect) * (d - d0),
            fu["medial_predominant"],
            fu["latent_cart_femoral_mm"],
            fu["latent_cart_medial_tibial_mm"],
            fu["latent_cart_lateral_tibial_mm"],
            fu["latent_lesion_radius_mm"],
            fu["latent_fluctuation"],
        )[MFTC]
        assert float(np.mean(treated - fu[f"true_{MFTC}"])) == pytest.approx(expected, abs=1e-12)
    loss = float(np.mean(fu[f"true_{MFTC}"].to_numpy() - df[df["months"] == 0][f"true_{MFTC}"]))
    assert loss < 0 and effects[3] > 0.5 * abs(loss)  # stopping progression saves the loss


@pytest.mark.slow
def test_true_treatment_effect_matches_the_arms() -> None:
    """Effect 0.5: the difference of the arms' mean 2-year change in a randomised cohort is the
    true effect within sampling error; effect 0: exactly 0."""
    spec = CohortSpec(subjects=1200, visits=("V00", "V03"), seed=17023, treatment_effect=0.5)
    truth = true_treatment_effect(spec, MFTC, "V03", knees=4000)
    df = endpoint_table(spec)
    base = df[df["months"] == 0].reset_index(drop=True)
    fu = df[df["months"] == 24].reset_index(drop=True)
    d = fu[MFTC] - base[MFTC]
    arm = base["arm"]
    treated, control = d[arm == "treatment"], d[arm == "control"]
    diff = treated.mean() - control.mean()
    se = np.sqrt(treated.var() / len(treated) + control.var() / len(control))
    assert truth > 0.01
    assert abs(diff - truth) < 4 * se, (diff, truth, se)
    null = spec.model_copy(update={"treatment_effect": 0.0})
    assert true_treatment_effect(null, MFTC, "V03", knees=200) == 0.0
    idx = true_treatment_effect(spec, MFTC, "V03", knees=4000, select=index_knees)
    assert idx > truth  # the worse knee progresses faster: more to slow down


def test_index_knees_one_per_subject(table: pd.DataFrame) -> None:
    mask = index_knees(table)
    chosen = table[mask]
    assert chosen.groupby("subject")["side"].nunique().eq(1).all()
    assert chosen["subject"].nunique() == table["subject"].nunique()


def test_bad_endpoint_or_visit_is_one_clear_error() -> None:
    spec = CohortSpec(subjects=2, visits=("V00", "V03"), seed=1, treatment_effect=0.5)
    with pytest.raises(InputError, match="unknown endpoint"):
        true_treatment_effect(spec, "we2008_XX_ThCtAB_mm", "V03", knees=4)
    with pytest.raises(InputError, match="V06"):
        true_treatment_effect(spec, MFTC, "V06", knees=4)
