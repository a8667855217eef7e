"""The ``pain`` and ``phenotypes`` cohort steps on runs whose truth is known.

* pain: the generator's fast endpoint table (its WOMAC pain is
  :func:`kneescope.synth.pain.womac_pain` of KL grade, effusion and BMI) as a run's results
  plus its clinical values ingested into a workspace catalog as OAI-style tables; the step
  must recover the generator's coefficients.
* phenotypes: knees drawn from three known trajectory classes (stable; fast medial loss;
  fast lateral loss) with measurement noise; the step must find three phenotypes that match
  them and are stable under the bootstrap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kneescope.capabilities.pain.association import pain_association
from kneescope.capabilities.pain.step import Pain, Phenotypes
from kneescope.catalog.view import CatalogView
from kneescope.cli.app import main
from kneescope.cohort.cohort_steps import RESULTS_FILE, CohortContext, run_cohort_steps
from kneescope.cohort.pipeline_config import StepConfig
from kneescope.errors import ConfigError, InputError, NotFoundError
from kneescope.stats.clusters import agreement
from kneescope.synth.pain import PAIN_PER_BMI, PAIN_PER_EFFUSION, PAIN_PER_KLG

VISITS = ("V00", "V01", "V03")
MEDIAL = "we2008_cMFTC_ThCtAB_mm"
LATERAL = "we2008_LFTC_ThCtAB_mm"
TRUTH = {"klg": PAIN_PER_KLG, "effusion_fraction": PAIN_PER_EFFUSION, "bmi": PAIN_PER_BMI}


def _cli(argv: list[str]) -> None:
    assert main(argv) == 0, argv


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in table.to_dict("records")]


@pytest.fixture(scope="module")
def generator_table() -> pd.DataFrame:
    """The generator's endpoint table of 200 subjects x 3 visits (validation seed 17002)."""
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.endpoints import endpoint_table

    return endpoint_table(CohortSpec(subjects=200, visits=VISITS, seed=17002))


def generator_run(tmp_path: Path, table: pd.DataFrame) -> tuple[pd.DataFrame, CatalogView]:
    """(results table, catalog view) of a synthetic cohort: the endpoint table's knee-visits
    with an ``effusion_fraction`` biomarker column, and OAI-style clinical tables (WOMKPR/L,
    XRKL, P01BMI) ingested into a workspace catalog."""
    results = table.loc[:, ["subject", "visit", "side", MEDIAL, LATERAL]].copy()
    results["side"] = results["side"].map({"right": "R", "left": "L"})  # as some runs write it
    results["effusion_fraction"] = table["effusion"]
    results.insert(0, "item_id", [f"mri-{i}" for i in range(len(results))])
    wide = table.pivot_table(index="subject", columns=["visit", "side"], values="pain")
    bmi = table.groupby("subject")["bmi"].first()
    allc = ["ID,P01BMI," + ",".join(f"{v}WOMKPR,{v}WOMKPL" for v in VISITS)]
    for subject in wide.index:
        cells = [f"{wide.loc[subject, (v, s)]:.0f}" for v in VISITS for s in ("right", "left")]
        allc.append(f"{subject},{bmi[subject]:.1f}," + ",".join(cells))
    kxr = ["ID,SIDE," + ",".join(f"{v}XRKL" for v in VISITS)]
    grades = table.pivot_table(index=["subject", "side"], columns="visit", values="klg")
    for (subject, side), row in zip(grades.index, grades.to_dict("records"), strict=True):
        kxr.append(
            f"{subject},{1 if side == 'right' else 2},"
            + ",".join(f"{int(row[v])}: grade" for v in VISITS)
        )
    ws = tmp_path / "ws"
    for name, lines in (("allclinical.csv", allc), ("kxr.csv", kxr)):
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        _cli(["ingest", str(path), "--kind", "clinical", "-w", str(ws)])
    return results, CatalogView(f"sqlite:///{ws / 'catalog.sqlite'}", ws)


def test_pain_step_recovers_the_generators_coefficients(
    tmp_path: Path, generator_table: pd.DataFrame
) -> None:
    results, view = generator_run(tmp_path, generator_table)
    run_dir = tmp_path / "ws" / "runs" / "mri"
    run_dir.mkdir(parents=True)
    # effusion comes from another run of the workspace, joined by knee-visit
    other = tmp_path / "ws" / "runs" / "effusion"
    other.mkdir()
    keys = ["subject", "visit", "side", "effusion_fraction"]
    results.loc[:, keys].assign(item_id="eff").to_parquet(other / "results.parquet")
    results = results.drop(columns=["effusion_fraction"])
    config = StepConfig(
        name="pain", options={"biomarkers": ["effusion_fraction"], "join_runs": ["effusion"]}
    )
    pheno = StepConfig(name="phenotypes", options={"resamples": 3, "k_range": [1, 2, 3, 4]})
    rows = _records(results)
    outcome = run_cohort_steps([config, pheno], rows, run_dir, view)
    assert outcome.ran == ("pain", "phenotypes")
    entry, pheno_entry = json.loads((run_dir / RESULTS_FILE).read_text())["steps"]
    assert entry["ok"] is True
    values = entry["values"]
    assert values["knee_visits"] == 200 * 2 * len(VISITS) and values["subjects"] == 200
    assert values["method"] == "censored-ml" and values["dropped_rows"] == 0
    folder = run_dir / "cohort" / "pain"
    coefficients = pd.read_csv(folder / "pain_coefficients.csv")
    assert set(coefficients["method"]) == {"censored-ml", "mixedlm-reml"}
    for name, truth in TRUTH.items():
        got = values["coefficients"][name]
        se = (got["ci_high"] - got["ci_low"]) / (2 * 1.96)
        # the generator's coefficient lies within 3 standard errors (fails 0.3 % by chance)
        assert abs(got["estimate"] - truth) < 3 * se, (name, got)
        assert got["ci_low"] < got["estimate"] < got["ci_high"]
    table = pd.read_csv(folder / "pain_table.csv", dtype={"subject": str})
    assert list(table.columns[:5]) == ["subject", "visit", "side", "months", "pain"]
    assert table["pain"].between(0, 20).all() and len(table) == values["knee_visits"]
    assert (folder / "pain_forest.png").read_bytes()[:4] == b"\x89PNG"
    calls = {r["call"] for r in entry["catalog_reads"]}
    # the joined run's knees are checked against the catalog's QC review decisions
    assert calls == {"clinical_values", "rejected_knees"}
    # phenotypes beside the catalog's baseline KL grades: every knee counted once, and the
    # phenotypes follow the stage (ARI with the grade well above chance)
    ph = pheno_entry["values"]
    assert pheno_entry["ok"] is True and ph["knees"] == 400
    assert sum(sum(c.values()) for c in ph["by_baseline_klg"].values()) == 400
    assert ph["agreement_ari"]["baseline_klg"] > 0.1
    # nothing changed: skipped
    assert run_cohort_steps([config, pheno], rows, run_dir, view).skipped == ("pain", "phenotypes")


def test_pain_without_the_confounder_biases_the_kl_slope(generator_table: pd.DataFrame) -> None:
    """Leaving effusion (which grows with the latent severity) out pushes its effect into
    the KL grade: the KL coefficient then exceeds the generator's 1.2 - a check that the
    model sees what the predictors carry, not a fixed answer."""
    table = generator_table
    full = pain_association(table, ["klg", "effusion", "bmi"], method="linear")
    short = pain_association(table, ["klg", "bmi"], method="linear")
    klg_full = full.headline.coefficient("klg")[0]
    klg_short, low, _ = short.headline.coefficient("klg")
    assert low > PAIN_PER_KLG and klg_short > klg_full + 0.2


def trajectory_knees(subjects: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results table, truth per knee) with three trajectory classes of known means."""
    rng = np.random.default_rng(seed)
    months = {"V00": 0.0, "V01": 12.0, "V03": 24.0, "V05": 36.0}
    rates = {"stable": (0.0, 0.0), "medial": (-0.25, -0.02), "lateral": (-0.02, -0.25)}
    names = list(rates)
    rows, truth = [], []
    for s in range(subjects):
        subject = f"9{s:06d}"
        for side in ("right", "left"):
            cls = names[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
            m0 = rng.normal(4.0 if cls == "stable" else 3.4, 0.25)
            l0 = rng.normal(4.2 if cls != "lateral" else 3.5, 0.25)
            rm, rl = rates[cls]
            truth.append({"subject": subject, "side": side, "cls": cls})
            for visit, month in months.items():
                years = month / 12.0
                rows.append(
                    {
                        "item_id": f"{subject}-{visit}-{side}",
                        "subject": subject,
                        "visit": visit,
                        "side": side,
                        MEDIAL: m0 + (rm + rng.normal(0, 0.02)) * years + rng.normal(0, 0.05),
                        LATERAL: l0 + (rl + rng.normal(0, 0.02)) * years + rng.normal(0, 0.05),
                        "true_" + MEDIAL: m0,  # never a feature
                    }
                )
    return pd.DataFrame(rows), pd.DataFrame(truth)


def test_phenotypes_step_finds_known_trajectory_classes(tmp_path: Path) -> None:
    results, truth = trajectory_knees(150, seed=4)
    step = Phenotypes(resamples=10, k_range=[1, 2, 3, 4, 5])
    context = CohortContext(tmp_path, tmp_path / "cohort" / "phenotypes", None, {})
    out = step.run(results, context)
    values = out.values
    assert values["k"] == 3 and values["knees"] == 300
    assert set(values["features"]) == {
        f"{c}_{kind}" for c in (MEDIAL, LATERAL) for kind in ("baseline", "slope_per_year")
    }
    assert values["stability_ari_mean"] > 0.9
    knees = pd.read_csv(out.files["phenotypes"], dtype={"subject": str})
    merged = knees.merge(truth, on=["subject", "side"])
    assert len(merged) == 300
    assert agreement(merged["phenotype"].to_numpy(), merged["cls"].to_numpy()) > 0.9
    means = pd.read_csv(out.files["means"])
    slope = f"{MEDIAL}_slope_per_year"
    # the fastest medial phenotype's mean medial slope is the medial class's -0.25 mm/year
    assert means[slope].min() == pytest.approx(-0.25, abs=0.03)
    assert Path(out.files["figure"]).read_bytes()[:4] == b"\x89PNG"
    bic = pd.read_csv(out.files["bic"])
    assert bic.loc[bic["chosen"], "k"].tolist() == [3]


def test_bad_options_and_inputs_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pain options: method"):
        Pain(method="tobit")
    with pytest.raises(ConfigError, match="phenotypes options: k_range"):
        Phenotypes(k_range=[0, 2])
    with pytest.raises(ConfigError, match="no predictors"):
        Pain(klg=False, bmi=False)
    results, _ = trajectory_knees(5, seed=1)
    context = CohortContext(tmp_path, tmp_path / "out", None, {})
    with pytest.raises(InputError, match="workspace catalog"):
        Pain().run(results, context)
    with pytest.raises(InputError, match="no results column matches features"):
        Phenotypes(features=["nothing_*"]).run(results, context)
    with pytest.raises(ConfigError, match="join_runs"):
        Pain(join_runs=["../elsewhere"])
    with pytest.raises(NotFoundError, match="run 'nothing' not found"):
        Phenotypes(join_runs=["nothing"]).run(results, context)
    with pytest.raises(InputError, match="not OAI visits"):
        Phenotypes().run(results.assign(visit="week3"), context)
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.slow
def test_over_replicate_cohorts_the_cis_cover_the_generators_coefficients() -> None:
    """The issue's target as a coverage: over 20 cohorts the size of the seed study (240
    subjects x 4 visits, validation seeds 17042-17061) the censored model's 95 % CIs cover
    the generator's KL, effusion and BMI coefficients in >= 17 of 20 cohorts (at a true 95 %
    coverage, 16 or fewer happen 1.6 % of the time), and its mean estimates are unbiased
    (within 3 standard errors of the mean)."""
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.endpoints import endpoint_table

    truth = {"klg": PAIN_PER_KLG, "effusion": PAIN_PER_EFFUSION, "bmi": PAIN_PER_BMI}
    hits = {name: 0 for name in truth}
    estimates: dict[str, list[float]] = {name: [] for name in truth}
    seeds = range(17042, 17062)
    for seed in seeds:
        table = endpoint_table(
            CohortSpec(subjects=240, visits=("V00", "V01", "V03", "V05"), seed=seed)
        )
        fit = pain_association(table, list(truth), method="censored").headline
        for name, value in truth.items():
            estimate, low, high = fit.coefficient(name)
            hits[name] += low <= value <= high
            estimates[name].append(estimate)
    for name, value in truth.items():
        assert hits[name] >= 17, (name, hits[name])
        values = np.array(estimates[name])
        assert abs(values.mean() - value) < 3 * values.std(ddof=1) / np.sqrt(len(values)), name
