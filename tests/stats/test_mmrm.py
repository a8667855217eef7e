"""The MMRM engine against known truth: closed forms, simulated trials, bad input.

Seeds: validation range of issue 17 (17001-17099); simulated trials SIM_SEED + k.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kneescope.errors import InputError
from kneescope.stats.mmrm import fit_mmrm
from kneescope.stats.mmrm_design import MmrmDesign, build_design, fit_design, lsmeans

ARMS = ("control", "treatment")
SIM_SEED = 1_700_000
"""Seeds of the simulated small trials (coverage): 1700000-1700199, a numbered series of their
own (outside the issue's validation 17001-17099 and locked test 17101-17199 seeds)."""


def _design(data: pd.DataFrame, visits: tuple[str, ...], **kw: Any) -> MmrmDesign:
    return build_design(
        data, response="chg", visit="visit", visits=visits, arm="arm", arms=ARMS, **kw
    )


def test_complete_data_cell_means_closed_form(sim_trial: Callable[..., Any]) -> None:
    """Complete data, saturated mean model: estimates are the cell means, the REML covariance
    is the pooled within-arm covariance (divisor n - 2), the SE of a visit's arm difference is
    sqrt(S_vv (1/n0 + 1/n1)) and its Satterthwaite df is exactly n - 2."""
    trial = sim_trial(17001, 60, dropout="none")
    d = trial.data
    des = _design(d, trial.visits)
    fit = fit_design(des)
    assert fit.converged
    wide = d.pivot(index="subject", columns="visit", values="chg")[list(trial.visits)]
    arm = d.groupby("subject")["arm"].first().loc[wide.index]
    cell = wide.groupby(arm).mean()
    resid = wide - cell.loc[arm].to_numpy()
    n = len(wide)
    pooled = resid.to_numpy().T @ resid.to_numpy() / (n - 2)
    np.testing.assert_allclose(fit.sigma, pooled, rtol=1e-7)
    ls = lsmeans(fit, des)
    for _, row in ls.means.iterrows():
        assert row["estimate"] == pytest.approx(cell.loc[row["arm"], row["visit"]], rel=1e-9)
    n0, n1 = (arm == "control").sum(), (arm == "treatment").sum()
    kr = lsmeans(fit, des, method="kenward-roger").differences.set_index("visit")
    for j, v in enumerate(trial.visits):
        diff = ls.differences.set_index("visit").loc[v]
        assert diff["se"] == pytest.approx(np.sqrt(pooled[j, j] * (1 / n0 + 1 / n1)), rel=1e-7)
        assert diff["df"] == pytest.approx(n - 2, rel=1e-6)
        # Kenward-Roger is exact here too: no SE inflation (beta-hat does not depend on Sigma)
        assert kr.loc[v, "se"] == pytest.approx(diff["se"], rel=1e-7)
        assert kr.loc[v, "df"] == pytest.approx(n - 2, rel=1e-6)


def test_recovers_truth_under_mar_dropout(sim_trial: Callable[..., Any]) -> None:
    """Dropout that depends on the last observed change (missing at random): the MMRM's
    LS-mean difference and control LS-mean at the last visit are within 3.5 SE of the truth,
    while the completers' mean is biased by many SEs; the covariance is recovered."""
    trial = sim_trial(17002, 3000, dropout="mar")
    d = trial.data
    last = trial.visits[-1]
    share_observed = (d["visit"] == last).sum() / d["subject"].nunique()
    assert 0.3 < share_observed < 0.8
    des = _design(d, trial.visits, baseline="base", covariates=("age", "sex"))
    fit = fit_design(des)
    ls = lsmeans(fit, des)
    diff = ls.differences.set_index("visit").loc[last]
    assert abs(diff["estimate"] - trial.delta[-1]) < 3.5 * diff["se"]
    ctrl = ls.means.set_index(["visit", "arm"]).loc[(last, "control")]
    used = des.data
    truth_ctrl = (
        trial.mu[-1]
        + trial.gamma[-1] * (used["base"].mean() - 2.0)
        + trial.age_coef * (used["age"].mean() - 60.0)
        + trial.sex_coef * 0.5  # emmeans averages the two sexes equally
    )
    assert abs(ctrl["estimate"] - truth_ctrl) < 3.5 * ctrl["se"]
    completers = d[(d["visit"] == last) & (d["arm"] == "control")]["chg"]
    naive_se = completers.std() / np.sqrt(len(completers))
    assert completers.mean() - truth_ctrl > 5 * naive_se  # those who stayed lost less
    np.testing.assert_allclose(fit.sigma, trial.sigma, rtol=0.15, atol=0.02 * trial.sigma.max())
    assert ctrl["lower"] < ctrl["estimate"] < ctrl["upper"]


@pytest.mark.slow  # 200 fits; coverage at scale: benchmarks/trial_simulation.py
def test_confidence_intervals_cover_the_truth(sim_trial: Callable[..., Any]) -> None:
    """Small trials (24 subjects, 3 visits, MCAR dropout): the 95 % CI of the treatment effect
    at the last visit, with Satterthwaite df, covers the true effect in 92-98 % of 200 trials
    (binomial SD 1.5 points), and so does Kenward-Roger's (wider: its SEs are adjusted up);
    normal quantiles (df = inf) cover less."""
    hits, hits_normal, hits_kr, trials = 0, 0, 0, 200
    for k in range(trials):
        trial = sim_trial(SIM_SEED + k, 24, visits=("V01", "V03", "V05"), dropout="mcar")
        des = _design(trial.data, trial.visits)
        fit = fit_design(des)
        L = des.row("V05", "treatment") - des.row("V05", "control")
        c = fit.contrast(L)
        hits += bool(c.lower[0] <= trial.delta[-1] <= c.upper[0])
        hits_normal += bool(abs(c.estimate[0] - trial.delta[-1]) <= 1.959964 * c.se[0])
        k = fit.contrast(L, method="kenward-roger")
        hits_kr += bool(k.lower[0] <= trial.delta[-1] <= k.upper[0])
    assert 0.92 <= hits / trials <= 0.98
    assert 0.92 <= hits_kr / trials <= 0.98
    assert hits_normal < hits <= hits_kr


def test_kenward_roger_equals_its_dense_matrix_definition(sim_trial: Callable[..., Any]) -> None:
    """The adjusted covariance Phi_A = Phi + 2 Phi sum_ij w_ij (Q_ij - P_i Phi P_j) Phi
    (Kenward & Roger 1997; w the inverse expected REML information) computed from the
    per-pattern statistics equals the textbook computation with N x N matrices; with missing
    visits it inflates the SEs (here by 0.1-10 %)."""
    trial = sim_trial(17070, 30, visits=("V01", "V03", "V05"), dropout="mcar", intermittent=0.2)
    des = _design(trial.data, trial.visits, baseline="base", covariates=("age",))
    fit = fit_design(des)
    X, subj, vis = des.X, des.subject, des.visit
    same = subj[:, None] == subj[None, :]
    V = np.where(same, fit.sigma[vis[:, None], vis[None, :]], 0.0)
    Vi = np.linalg.inv(V)
    phi = np.linalg.inv(X.T @ Vi @ X)
    T = len(des.visits)
    Ds = []
    for a in range(T):
        for b in range(a, T):
            E = np.zeros((T, T))
            E[a, b] = E[b, a] = 1.0
            Ds.append(np.where(same, E[vis[:, None], vis[None, :]], 0.0))
    P = Vi - Vi @ X @ phi @ X.T @ Vi
    info = np.array([[0.5 * np.trace(P @ Di @ P @ Dj) for Dj in Ds] for Di in Ds])
    w = np.linalg.inv(info)
    A = [-Vi @ D @ Vi for D in Ds]
    Pm = [X.T @ a @ X for a in A]
    total = sum(
        w[i, j] * (X.T @ A[i] @ V @ A[j] @ X - Pm[i] @ phi @ Pm[j])
        for i in range(len(Ds))
        for j in range(len(Ds))
    )
    phi_a = phi + 2.0 * phi @ total @ phi
    np.testing.assert_allclose(fit.cov_beta, phi, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(fit.cov_beta_kenward_roger, phi_a, rtol=1e-8, atol=1e-14)
    inflation = np.sqrt(np.diag(phi_a) / np.diag(phi))
    assert np.all(inflation >= 1.0) and 1.01 < inflation.max() < 1.2


def test_lsmeans_are_average_counterfactual_predictions(sim_trial: Callable[..., Any]) -> None:
    """Without factor covariates, emmeans' LS-mean of arm a at visit v equals the mean over
    the model's rows of the prediction with visit := v and arm := a (linearity)."""
    trial = sim_trial(17003, 80, dropout="mcar", intermittent=0.1)
    des = _design(trial.data, trial.visits, baseline="base", covariates=("age",))
    fit = fit_design(des)
    ls = lsmeans(fit, des).means.set_index(["visit", "arm"])
    rows = des.data
    for v in trial.visits:
        for a in ARMS:
            preds = [
                des.row(v, a, numeric={"base": b, "age": g}) @ fit.beta
                for b, g in zip(rows["base"], rows["age"], strict=True)
            ]
            assert ls.loc[(v, a), "estimate"] == pytest.approx(np.mean(preds), rel=1e-10)


def test_row_order_and_subject_labels_do_not_matter(sim_trial: Callable[..., Any]) -> None:
    trial = sim_trial(17004, 50, dropout="mar", intermittent=0.1)
    des = _design(trial.data, trial.visits, baseline="base")
    fit = fit_design(des)
    rng = np.random.default_rng(17004)
    perm = rng.permutation(len(des.y))
    relabel = {s: f"Z{i}" for i, s in enumerate(rng.permutation(np.unique(des.subject)))}
    fit2 = fit_mmrm(
        des.y[perm],
        des.X[perm],
        np.array([relabel[s] for s in des.subject[perm]]),
        des.visit[perm],
        des.names,
        n_visits=len(des.visits),
    )
    np.testing.assert_allclose(fit2.beta, fit.beta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit2.se, fit.se, rtol=1e-9)
    np.testing.assert_allclose(fit2.sigma, fit.sigma, rtol=1e-9)


def test_estimates_follow_the_unit_of_the_response(sim_trial: Callable[..., Any]) -> None:
    """Response and baseline in micrometres instead of millimetres: LS-means and SEs scale by
    1000, df and p stay (the fit does not depend on the response's scale)."""
    trial = sim_trial(17007, 60, dropout="mar", intermittent=0.1)
    um = trial.data.assign(chg=trial.data["chg"] * 1000.0, base=trial.data["base"] * 1000.0)
    res = []
    for d in (trial.data, um):
        des = _design(d, trial.visits, baseline="base", covariates=("age",))
        res.append(lsmeans(fit_design(des), des).differences)
    mm, micro = res
    np.testing.assert_allclose(micro["estimate"], 1000.0 * mm["estimate"], rtol=1e-7)
    np.testing.assert_allclose(micro["se"], 1000.0 * mm["se"], rtol=1e-7)
    np.testing.assert_allclose(micro["df"], mm["df"], rtol=1e-6)
    np.testing.assert_allclose(micro["p"], mm["p"], rtol=1e-6)


def test_a_single_visit_is_an_ancova(sim_trial: Callable[..., Any]) -> None:
    """One post-baseline visit: the MMRM is the ANCOVA chg ~ arm + base, whose treatment
    effect and SE are ordinary least squares with n - 3 df."""
    trial = sim_trial(17008, 50, visits=("V06",), dropout="none")
    des = _design(trial.data, trial.visits, baseline="base")
    assert des.names == ("(Intercept)", "armtreatment", "base")
    fit = fit_design(des)
    beta, *_ = np.linalg.lstsq(des.X, des.y, rcond=None)
    resid = des.y - des.X @ beta
    s2 = resid @ resid / (len(des.y) - 3)
    se = np.sqrt(s2 * np.diag(np.linalg.inv(des.X.T @ des.X)))
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-9)
    np.testing.assert_allclose(fit.se, se, rtol=1e-7)
    diff = lsmeans(fit, des).differences.iloc[0]
    assert diff["df"] == pytest.approx(len(des.y) - 3, rel=1e-6)


def test_design_columns_follow_r_model_matrix(sim_trial: Callable[..., Any]) -> None:
    trial = sim_trial(17005, 30, visits=("V01", "V03", "V05"), dropout="none")
    des = _design(trial.data, trial.visits, baseline="base", covariates=("age", "sex"))
    assert des.names == (
        "(Intercept)",
        "visitV03",
        "visitV05",
        "armtreatment",
        "base",
        "age",
        "sexM",
        "visitV03:armtreatment",
        "visitV05:armtreatment",
        "visitV03:base",
        "visitV05:base",
    )
    first = des.data.iloc[0]
    x = des.X[0]
    assert x[des.names.index("base")] == first["base"]
    assert x[des.names.index("sexM")] == float(first["sex"] == "M")
    assert des.numeric_means["base"] == pytest.approx(des.data["base"].mean())


def test_bad_input_is_one_clear_error(sim_trial: Callable[..., Any]) -> None:
    trial = sim_trial(17006, 40, visits=("V01", "V03", "V05"), dropout="none")
    d = trial.data
    des = _design(d, trial.visits)
    with pytest.raises(InputError, match="two rows for visit"):
        fit_mmrm(
            np.r_[des.y, des.y[:1]],
            np.r_[des.X, des.X[:1]],
            np.r_[des.subject, des.subject[:1]],
            np.r_[des.visit, des.visit[:1]],
            des.names,
        )
    no_treated_v05 = d[~((d["arm"] == "treatment") & (d["visit"] == "V05"))]
    with pytest.raises(InputError, match="rank deficient"):
        fit_design(_design(no_treated_v05, trial.visits))
    # V01 and V05 never in the same subject
    split = d[~((d["visit"] == "V05") & (d["subject"] < "S00020"))]
    split = split[~((split["visit"] == "V01") & (split["subject"] >= "S00020"))]
    with pytest.raises(InputError, match="never observed in the same subject"):
        fit_design(_design(split, trial.visits))
    with pytest.raises(InputError, match="not in the table"):
        _design(d, trial.visits, baseline="baseline_mm")
    with pytest.raises(InputError, match="have no rows"):
        _design(d, (*trial.visits, "V08"))
    with pytest.raises(InputError, match=r"more than one row at visit 'V01'.*one knee"):
        _design(pd.concat([d, d.iloc[:1]]), trial.visits)
    swapped = d.copy()
    swapped.loc[swapped.index[0], "arm"] = (
        "treatment" if swapped["arm"].iloc[0] == "control" else "control"
    )
    with pytest.raises(InputError, match="is in both arms"):
        _design(swapped, trial.visits)
    with pytest.raises(InputError, match="finite"):
        fit_mmrm(np.r_[np.nan, des.y[1:]], des.X, des.subject, des.visit, des.names)
    with pytest.raises(InputError, match="columns"):
        fit_design(des).contrast(np.ones(3))
    with pytest.raises(InputError, match="unknown df method"):
        fit_design(des).contrast(np.ones(len(des.names)), method="containment")


def test_too_few_subjects_for_an_unstructured_covariance(sim_trial: Callable[..., Any]) -> None:
    """40 subjects, 6 visits with 14-24 rows after baseline, 20 fixed effects: the REML
    criterion falls without bound towards a singular covariance (R's gls stops with "function
    evaluation limit reached" on these data); the fit says so in one line."""
    visits = tuple(f"V{j:02d}" for j in range(1, 7))
    trial = sim_trial(17030, 40, visits=visits, dropout="mcar", intermittent=0.25)
    des = _design(trial.data, visits, baseline="base", covariates=("age", "sex"))
    with pytest.raises(InputError, match=r"tends to a singular matrix.*needs more subjects"):
        fit_design(des)
