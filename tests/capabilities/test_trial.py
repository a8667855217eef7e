"""The trial analysis (``kneescope.capabilities.trial``) on the generator's randomised cohorts.

Known truths used here: a null trial (``treatment_effect`` 0, ``randomise``) has a true effect
of exactly 0; treatment slows the generator's progression, so a treated arm loses less
cartilage (a positive difference); with complete data the MMRM with unstructured covariance
and a visit-specific mean model is the per-visit ANCOVA (generalised least squares with the
same regressors in every equation is ordinary least squares), so its estimate, SE and df at
a visit equal the OLS regression of that visit's change on arm and baseline; the generator's
own ``true_treatment_effect`` (slow test).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kneescope.capabilities.trial.analysis import analyse, analyse_endpoint, change_frame
from kneescope.capabilities.trial.config import TrialConfig, load_trial_config
from kneescope.capabilities.trial.data import assemble
from kneescope.capabilities.trial.outputs import write_outputs
from kneescope.errors import ConfigError, InputError
from kneescope.io.folder_writer import folder_writer
from kneescope.synth.cohort import CohortSpec
from kneescope.synth.endpoints import endpoint_table, index_knees, true_treatment_effect

ENDPOINT = "we2008_cMFTC_ThCtAB_mm"
VISITS = ("V00", "V01", "V03")


def cohort(subjects: int, effect: float, seed: int) -> pd.DataFrame:
    """The generator's randomised cohort as a tidy endpoint table (measured values)."""
    spec = CohortSpec(
        subjects=subjects,
        visits=VISITS,
        seed=seed,
        treatment_effect=effect,
        randomise=True,
        mri=False,
        radiographs=False,
        full_leg=False,
    )
    return endpoint_table(spec)


def config(**analysis: object) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "data": {"table": "t.csv"},
            "arms": {"variable": "arm", "control": "control", "treatment": "treatment"},
            "analysis": {"endpoints": [ENDPOINT], "index_by": "klg", **analysis},
        }
    )


@pytest.fixture(scope="module")
def null_trial() -> pd.DataFrame:
    return cohort(160, 0.0, 17003)


@pytest.fixture(scope="module")
def treated_trial() -> pd.DataFrame:
    return cohort(200, 0.9, 17004)


def test_index_knee_is_the_generators_and_arms_come_from_the_table(
    null_trial: pd.DataFrame,
) -> None:
    data = assemble(null_trial, config())
    assert data.visits == VISITS and data.months == {"V00": 0.0, "V01": 12.0, "V03": 24.0}
    # one knee per subject: the generator's index knee (higher baseline KLG, ties right)
    chosen = set(zip(data.frame["subject"], data.frame["side"], strict=True))
    truth = null_trial[index_knees(null_trial).to_numpy(bool)]
    assert chosen == set(zip(truth["subject"], truth["side"], strict=True))
    assert len(data.frame) == 160 * 3
    arms = null_trial.drop_duplicates("subject").set_index("subject")["arm"]
    assert (data.frame["arm"] == data.frame["subject"].map(arms)).all()
    assert data.subjects("control") + data.subjects("treatment") == 160
    assert min(data.subjects("control"), data.subjects("treatment")) > 50  # randomised
    left = assemble(null_trial, config(knee="left"))
    assert set(left.frame["side"]) == {"left"}
    # subjects without a baseline visit: no index knee (counted); a fixed knee keeps them,
    # with the arm of a later visit, but its model cannot use them (no baseline value)
    gone = sorted(null_trial["subject"].unique())[:3]
    no_base = null_trial[~(null_trial["subject"].isin(gone) & (null_trial["visit"] == "V00"))]
    assert assemble(no_base, config()).excluded == {"no baseline visit": 3}
    fixed = assemble(no_base, config(knee="left"))
    assert fixed.subjects("control") + fixed.subjects("treatment") == 160
    assert change_frame(fixed, ENDPOINT)[1] == {"no baseline value": 3}


def test_complete_data_mmrm_is_the_per_visit_ancova(null_trial: pd.DataFrame) -> None:
    """The MMRM difference at each visit = OLS of that visit's change on arm + baseline (a
    covariate without a visit interaction would make the regressors differ between visits,
    and GLS then differs from OLS: none here)."""
    import statsmodels.api as sm  # type: ignore[import-untyped]

    cfg = config()
    data = assemble(null_trial, cfg)
    result = analyse_endpoint(data, ENDPOINT, cfg)
    assert result.mmrm is not None and result.mmrm.converged and not result.error
    rows, left_out = change_frame(data, ENDPOINT)
    assert left_out == {} and result.observations == 160 * 2
    residuals = []
    for visit in ("V01", "V03"):
        part = rows[rows["visit"] == visit].sort_values("subject")
        x = np.column_stack(
            [
                np.ones(len(part)),
                (part["arm"] == "treatment").to_numpy(float),
                part["baseline"].to_numpy(),
            ]
        )
        ols = sm.OLS(part["change"].to_numpy(), x).fit()
        residuals.append(ols.resid)
        got = result.primary(visit)
        assert got is not None
        assert got["estimate"] == pytest.approx(ols.params[1], rel=1e-5)
        assert got["se"] == pytest.approx(ols.bse[1], rel=1e-4)
        assert got["df"] == pytest.approx(ols.df_resid, rel=1e-3)
        assert got["p_value"] == pytest.approx(ols.pvalues[1], rel=1e-3, abs=1e-6)
    # and the REML covariance over visits is the residual cross-products / (n - 3)
    resid = np.column_stack(residuals)
    assert result.mmrm.visits == ("V01", "V03")
    assert np.asarray(result.mmrm.covariance) == pytest.approx(
        resid.T @ resid / (160 - 3), rel=1e-3
    )
    # a null trial: the true effect is 0 and this trial's CI holds it
    last = result.primary("V03")
    assert last is not None and last["ci_low"] < 0.0 < last["ci_high"]
    # SRM and Cohen's d are what their definitions say on the observed changes
    for d in result.descriptive:
        if d["visit"] == "V03":
            part = rows[(rows["visit"] == "V03") & (rows["arm"] == d["arm"])]["change"]
            assert d["srm"] == pytest.approx(part.mean() / part.std(ddof=1))
    v3 = rows[rows["visit"] == "V03"]
    pooled = math.sqrt(
        sum((len(g) - 1) * g.var(ddof=1) for _, g in v3.groupby("arm")["change"]) / (len(v3) - 2)
    )
    assert last["cohens_d"] == pytest.approx(last["estimate"] / pooled)


def test_treatment_slows_loss_and_missing_visits_are_not_imputed(
    treated_trial: pd.DataFrame,
) -> None:
    """Treatment slows the generator's progression: the treated arm loses less (difference >
    0, significant at 5 % with 200 subjects and effect 0.9); dropping visits keeps every
    subject with a baseline and one later value in the model and counts the others."""
    cfg = config(primary_visit="V03")
    data = assemble(treated_trial, cfg)
    full = analyse_endpoint(data, ENDPOINT, cfg)
    main = full.primary("V03")
    assert main is not None and main["estimate"] > 0 and main["p_value"] < 0.05
    control = next(m for m in full.lsmeans if m["arm"] == "control" and m["visit"] == "V03")
    assert control["estimate"] < 0  # the control arm loses cartilage
    # drop V03 of 30 % of subjects, and V01 and V03 of 10 subjects (no later value)
    rng = np.random.default_rng(17005)
    subjects = data.frame["subject"].unique()
    lose_last = set(rng.choice(subjects, size=int(0.3 * len(subjects)), replace=False))
    lose_all = set(rng.choice(sorted(set(subjects) - lose_last), size=10, replace=False))
    frame = data.frame
    drop = ((frame["visit"] == "V03") & frame["subject"].isin(lose_last | lose_all)) | (
        (frame["visit"] == "V01") & frame["subject"].isin(lose_all)
    )
    thinned = treated_trial.merge(frame.loc[~drop, ["subject", "side", "visit"]])
    missing = analyse_endpoint(assemble(thinned, cfg), ENDPOINT, cfg)
    assert missing.left_out == {"no later value": 10}
    assert sum(missing.subjects.values()) == len(subjects) - 10
    assert missing.observations == 2 * len(subjects) - len(lose_last) - 20
    late = missing.primary("V03")
    assert late is not None
    assert late["se"] > main["se"]  # fewer knees at V03: a wider interval
    assert abs(late["estimate"] - main["estimate"]) < 2 * late["se"]
    assert late["df"] < main["df"]


def test_responders_and_power_on_the_trial(treated_trial: pd.DataFrame) -> None:
    cfg = TrialConfig.model_validate(
        {
            "data": {"table": "t.csv"},
            "arms": {"variable": "arm", "control": "control", "treatment": "treatment"},
            "analysis": {"endpoints": [ENDPOINT, "medial_jsw_mm"], "index_by": "klg"},
            "responders": [{"endpoint": ENDPOINT, "threshold": -0.1}],
            "power": {"target_effects": {ENDPOINT: 0.05}, "power": [0.8, 0.9]},
        }
    )
    data = assemble(treated_trial, cfg)
    result = analyse(data, cfg)
    r = result.responders[0]
    rows, _ = change_frame(data, ENDPOINT)
    last = rows[rows["visit"] == "V03"]
    for arm, n, k in (
        ("control", r.n_control, r.responders_control),
        ("treatment", r.n_treatment, r.responders_treatment),
    ):
        part = last[last["arm"] == arm]
        assert n == len(part) and k == int((part["change"] > -0.1).sum())
    assert r.ci_low < r.risk_difference < r.ci_high
    assert r.risk_difference == pytest.approx(r.rate_treatment - r.rate_control)
    power = {p["power"]: p for p in result.endpoints[0].power}
    p80, p90 = power[0.8], power[0.9]
    assert p80["target_effect"] == 0.05 and p80["effect_source"] == "config"
    assert p90["n_control"] > p80["n_control"] > 2
    # the effective SD reproduces the fitted SE at this trial's size
    se = p80["sd_effective"] * math.sqrt(
        1 / data.subjects("control") + 1 / data.subjects("treatment")
    )
    assert se == pytest.approx(result.endpoints[0].primary("V03")["se"], rel=1e-9)  # type: ignore[index]
    jsw = result.endpoints[1].power[0]
    assert jsw["effect_source"] == "estimated"


def test_outputs_are_tidy_and_complete(treated_trial: pd.DataFrame, tmp_path: Path) -> None:
    cfg = TrialConfig.model_validate(
        {
            "data": {"table": "t.csv"},
            "arms": {"variable": "arm", "control": "control", "treatment": "treatment"},
            "analysis": {"endpoints": ["we2008_*FTC_ThCtAB_mm"], "index_by": "klg"},
            "responders": [{"endpoint": ENDPOINT, "threshold": -0.1, "visit": "V01"}],
        }
    )
    result = analyse(assemble(treated_trial, cfg), cfg)
    assert [e.endpoint for e in result.endpoints] == [
        "we2008_MFTC_ThCtAB_mm",
        "we2008_cMFTC_ThCtAB_mm",
        "we2008_LFTC_ThCtAB_mm",
    ]
    document = write_outputs(result, folder_writer(tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [
            "trial_results.csv",
            "trial_results.parquet",
            "trial_power.csv",
            "trial_summary.json",
            *(
                f"{k}_we2008_{r}_ThCtAB_mm.png"
                for k in ("trajectories", "forest")
                for r in ("MFTC", "cMFTC", "LFTC")
            ),
        ]
    )
    table = pd.read_parquet(tmp_path / "trial_results.parquet")
    csv = pd.read_csv(tmp_path / "trial_results.csv")
    assert len(table) == len(csv)
    assert not table.duplicated(["endpoint", "visit", "statistic", "arm"]).any()
    diff = table[(table["statistic"] == "difference") & (table["endpoint"] == ENDPOINT)]
    assert list(diff["visit"]) == ["V01", "V03"] and list(diff["arm"].unique()) == [
        "treatment - control"
    ]
    assert diff["estimate"].tolist() == pytest.approx(
        [d["estimate"] for d in result.endpoints[1].differences]
    )
    assert set(table["statistic"]) == {
        "mean_value", "mean_change", "sd_change", "srm", "lsmean_change", "difference",
        "cohens_d", "responder_rate", "risk_difference",
    }  # fmt: skip
    summary = json.loads((tmp_path / "trial_summary.json").read_text(), parse_constant=_no_nan)
    assert summary == json.loads(json.dumps(document))
    assert summary["endpoints"][1]["primary"]["visit"] == "V03"
    assert summary["subjects"]["control"] + summary["subjects"]["treatment"] == 200
    assert summary["responders"][0]["visit"] == "V01"
    assert (tmp_path / "forest_we2008_cMFTC_ThCtAB_mm.png").read_bytes()[:4] == b"\x89PNG"


def _no_nan(constant: str) -> None:
    raise ValueError(f"{constant} in JSON")


def test_bad_configs_and_data_say_what_is_wrong(null_trial: pd.DataFrame, tmp_path: Path) -> None:
    bad = tmp_path / "trial.toml"
    bad.write_text('[data]\nrun = "r"\ntable = "t.csv"\n[analysis]\nendpoints = ["x"]\n')
    with pytest.raises(ConfigError, match="exactly one of run"):
        load_trial_config(bad)
    bad.write_text('[data]\ntable = "t.csv"\n[analysis]\nendpoints = ["x"]\nknee = "both"\n')
    with pytest.raises(ConfigError, match=r"analysis\.knee"):
        load_trial_config(bad)
    bad.write_text('[data]\ntable = "t.csv"\n[analysis]\nendpoints = ["x"]\nsmoothing = 1\n')
    with pytest.raises(ConfigError, match="smoothing"):
        load_trial_config(bad)
    good = tmp_path / "sub" / "trial.toml"
    good.parent.mkdir()
    good.write_text('[data]\ntable = "t.csv"\n[analysis]\nendpoints = ["x"]\n')
    assert load_trial_config(good).data.table == good.parent / "t.csv"
    with pytest.raises(InputError, match=r"matches no column.*similar: we2008_cMFTC"):
        assemble(null_trial, config(endpoints=["we2008_cMFTC"]))
    with pytest.raises(InputError, match=r"V05 of analysis\.visits are not in the data"):
        assemble(null_trial, config(visits=["V00", "V05"]))
    wrong_arms = TrialConfig.model_validate(
        {"data": {"table": "t"}, "arms": {"variable": "arm", "control": "0", "treatment": "1"},
         "analysis": {"endpoints": [ENDPOINT], "index_by": "klg"}}
    )  # fmt: skip
    with pytest.raises(InputError, match="no subject of table has an arm value '0' or '1'"):
        assemble(null_trial, wrong_arms)
    with pytest.raises(InputError, match="covariate 'weight' is not a column"):
        assemble(null_trial, config(covariates=["weight"]))
    data = assemble(null_trial, config())
    with pytest.raises(InputError, match="primary_visit V00 is not a post-baseline visit"):
        analyse(data, config(primary_visit="V00"))


@pytest.mark.slow
def test_ci_covers_the_generators_true_effect() -> None:
    """A 400-subject trial with effect 0.6: its 95 % CI at 24 months holds the generator's
    true effect (20000 knees, index knees, noise-free)."""
    spec = CohortSpec(
        subjects=2, visits=VISITS, seed=17006, treatment_effect=0.6, randomise=True,
        mri=False, radiographs=False, full_leg=False,
    )  # fmt: skip
    truth = true_treatment_effect(spec, ENDPOINT, "V03", knees=20000, select=index_knees)
    assert truth > 0
    trial = cohort(400, 0.6, 17007)
    cfg = config()
    result = analyse_endpoint(assemble(trial, cfg), ENDPOINT, cfg)
    main = result.primary("V03")
    assert main is not None and main["ci_low"] < truth < main["ci_high"]
