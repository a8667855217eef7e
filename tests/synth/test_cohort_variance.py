"""The disease model's variance (issue 17, item 0): randomised null arms, non-progressors, rate
drift, fluctuation, and the 2-year SRM and apparent thickening in the published ranges."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from kneescope.cli.app import main
from kneescope.synth import disease
from kneescope.synth.cohort import SIDES, CohortSpec, plan_cohort, plan_subject
from kneescope.synth.endpoints import endpoint_table
from kneescope.synth.generate import clinical_rows

MFTC = "we2008_MFTC_ThCtAB_mm"


def test_randomise_makes_two_arms_without_an_effect() -> None:
    spec = CohortSpec(subjects=300, visits=("V00", "V03"), seed=17010, randomise=True)
    plans = plan_cohort(spec)
    treated = np.array([p.arm == "treatment" for p in plans])
    assert 0.38 < treated.mean() < 0.62  # binomial(300, 0.5): 4 SD either side
    allc, _ = clinical_rows(spec, plans)
    assert [r["TRTARM"] for r in allc] == ["1" if t else "0" for t in treated]
    # no effect: the arms progress alike (rates not scaled)
    rates = {
        arm: [p.rate[s] for p in plans if p.arm == arm for s in SIDES]
        for arm in ("control", "treatment")
    }
    assert stats.mannwhitneyu(rates["control"], rates["treatment"]).pvalue > 0.001
    plain = plan_cohort(spec.model_copy(update={"randomise": False}))
    assert {p.arm for p in plain} == {"control"}


def test_plan_follows_the_disease_functions() -> None:
    """plan_subject's severities are synth.disease's severity_path of the knee's own draws."""
    spec = CohortSpec(subjects=3, visits=("V00", "V01", "V03", "V06", "V10"), seed=17011)
    for index in range(3):
        plan = plan_subject(spec, index)
        for side in SIDES:
            states = plan.knees[side]
            months = [s.months for s in states]
            _, non_progressor, drift = disease.draw_stream_part(
                1,
                np.random.default_rng(
                    np.random.SeedSequence(
                        [spec.seed, index, SIDES.index(side), disease.DISEASE_STREAM]
                    )
                ),
            )
            years = disease.effective_years(drift, months)[0]
            expected = states[0].severity + plan.rate[side] * years
            np.testing.assert_allclose([s.severity for s in states], expected, rtol=0, atol=1e-12)
            assert (plan.rate[side] == 0.0) == bool(non_progressor[0])


def test_non_progressors_drift_and_fluctuation() -> None:
    spec = CohortSpec(subjects=500, visits=("V00", "V03", "V06"), seed=17012)
    plans = plan_cohort(spec)
    rates = np.array([p.rate[s] for p in plans for s in SIDES])
    share = float((rates == 0).mean())
    assert abs(share - disease.NON_PROGRESSOR_SHARE) < 0.05  # 1000 knees: SE 0.016
    # the rate drifts: among progressors the 4-year change is not rate x 4 years
    prog = [(p, s) for p in plans for s in SIDES if p.rate[s] > 0]
    ratio = np.array(
        [(p.knees[s][2].severity - p.knees[s][0].severity) / (4 * p.rate[s]) for p, s in prog]
    )
    assert 0.8 < float(np.mean(ratio)) < 1.2  # mean-preserving drift
    assert float(np.std(ratio)) > 0.2
    # fluctuation: cartilage parameters of a non-progressing knee change from visit to visit
    rel = np.array(
        [
            p.knees[s][1].params.cart_femoral / p.knees[s][0].params.cart_femoral - 1.0
            for p, s in prog
        ]
    )
    assert abs(float(np.std(rel)) - disease.FLUCTUATION_SD) < 0.004


def test_simulated_futures_follow_the_generator() -> None:
    """simulate_severity (fresh draws from the baseline state) gives the 4-year severity change
    the generator's own plans give (two-sample KS)."""
    spec = CohortSpec(subjects=600, visits=("V00", "V06"), seed=17013)
    plans = plan_cohort(spec)
    knees = [(p, s) for p in plans for s in SIDES]
    d0 = np.array([p.knees[s][0].severity for p, s in knees])
    klg0 = np.array([p.baseline_klg[s] for p, s in knees])
    bmi = np.array([p.bmi for p, s in knees])
    planned = np.array([p.knees[s][1].severity for p, s in knees]) - d0
    sim = disease.simulate_severity(
        d0, klg0, bmi, np.zeros(len(d0), bool), [0, 48], 0.0, np.random.default_rng(17013)
    )
    assert np.all(sim[:, 0] == d0)
    assert stats.ks_2samp(planned, sim[:, 1] - d0).pvalue > 0.001
    assert np.all(np.diff(sim, axis=1) >= 0)  # severity never falls


@pytest.fixture(scope="module")
def change() -> dict[str, np.ndarray]:
    df = endpoint_table(CohortSpec(subjects=700, visits=("V00", "V03"), seed=17014))
    base = df[df["months"] == 0].reset_index(drop=True)
    fu = df[df["months"] == 24].reset_index(drop=True)
    return {
        "klg": base["baseline_klg"].to_numpy(),
        "d": (fu[MFTC] - base[MFTC]).to_numpy(),
        "true": (fu[f"true_{MFTC}"] - base[f"true_{MFTC}"]).to_numpy(),
    }


def test_two_year_srm_in_the_published_range(change: dict[str, np.ndarray]) -> None:
    """KL >= 2 knees: measured MFTC SRM about -0.3 to -0.5 (OAI), KL 4 not extreme
    (it was -2.92 before issue 17); 700 subjects: about 600 KL >= 2 knees, SRM SE ~0.045."""
    sel = change["klg"] >= 2
    d = change["d"][sel]
    srm = d.mean() / d.std(ddof=1)
    assert -0.55 < srm < -0.27, srm
    kl4 = change["d"][change["klg"] == 4]
    assert -0.9 < kl4.mean() / kl4.std(ddof=1) < 0.0
    healthy = change["d"][change["klg"] <= 1]
    assert abs(healthy.mean() / healthy.std(ddof=1)) < 0.25  # healthy knees: SRM +-0.15 (OAI)


def test_some_knees_apparently_thicken(change: dict[str, np.ndarray]) -> None:
    """Apparent thickening: some KL >= 2 knees' measured MFTC increases over 2 years, also in
    truth (biological fluctuation), in about a quarter to 40 % of knees."""
    sel = change["klg"] >= 2
    assert 0.2 < float((change["d"][sel] > 0).mean()) < 0.45
    assert float((change["true"][sel] > 0).mean()) > 0.1


def test_synth_randomise_flag_writes_both_arms(tmp_path: Path) -> None:
    """``kneescope synth --randomise`` (effect 0): TRTARM holds both arms, the spec records it;
    without the flag every subject is a control."""
    out = tmp_path / "null_trial"
    args = ["-n", "40", "--visits", "V00,V01", "--no-mri", "--no-xray", "--seed", "17015"]
    assert main(["synth", "-o", str(out), *args, "--randomise"]) == 0
    with (out / "clinical" / "AllClinical.csv").open(newline="") as handle:
        arms = [row["TRTARM"] for row in csv.DictReader(handle)]
    assert sorted(set(arms)) == ["0", "1"]  # 40 subjects: P(one arm only) ~ 2e-12
    assert json.loads((out / "synth_spec.json").read_text())["randomise"] is True
    plain = tmp_path / "plain"
    assert main(["synth", "-o", str(plain), *args]) == 0
    with (plain / "clinical" / "AllClinical.csv").open(newline="") as handle:
        assert {row["TRTARM"] for row in csv.DictReader(handle)} == {"0"}
