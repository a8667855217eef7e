"""Outcome prediction against known truth.

* outcome definitions on hand-made knees whose events and times are known;
* the models on data drawn from a known logistic risk (their AUC must approach the AUC of the
  true probabilities; pure noise must not beat chance);
* the oracle on the generator's endpoint table: the real futures are draws from the very
  distribution the oracle integrates over, so its probabilities must be calibrated against
  the observed outcomes (in the large and per bin) and knowing the true rate must help;
* the ``prediction`` cohort step on a run (the endpoint table as results, OAI-style clinical
  tables ingested into a catalog): its outcome counts equal the generator's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kneescope.capabilities.prediction.config import PredictionConfig
from kneescope.capabilities.prediction.evaluate import predict_outcomes
from kneescope.capabilities.prediction.models import grouped_folds
from kneescope.capabilities.prediction.outcomes import baseline_features, knee_outcome, prepare
from kneescope.errors import ConfigError, InputError
from kneescope.stats.discrimination import calibration_bins, expected_calibration_error, roc_auc

VISITS = ("V00", "V01", "V03", "V05", "V06")


def _knee(subject: str, side: str, klg: list[float], jsw: list[float]) -> list[dict[str, Any]]:
    return [
        {"subject": subject, "side": side, "visit": v, "klg": k, "medial_jsw_mm": j, "age": 60}
        for v, k, j in zip(VISITS, klg, jsw, strict=True)
    ]


def hand_table() -> pd.DataFrame:
    rows = [
        *_knee("s1", "right", [1, 1, 2, 2, 2], [4.0, 3.9, 3.8, 3.6, 3.2]),  # incident at 24
        *_knee("s1", "left", [0, 0, 0, 0, 0], [4.0, 4.0, 4.1, 4.0, 4.0]),  # no event
        *_knee("s2", "right", [2, 2, 2, 2, 3], [3.0, 2.1, 2.9, 2.5, 2.5]),  # JSW dip at 12 only
        *_knee("s2", "left", [4, 4, 4, 4, 4], [1.0, 1.0, 1.0, 1.0, np.nan]),  # KL 4, no 48 m JSW
    ]
    return pd.DataFrame(rows)


def test_outcomes_of_knees_whose_events_are_known() -> None:
    config = PredictionConfig()
    frame = prepare(hand_table(), config)
    assert frame["baseline_months"].max() == 48  # months from the OAI visit codes

    incident = knee_outcome(frame, "incident_oa", config).knees.set_index(["subject", "side"])
    assert list(incident.index) == [("s1", "left"), ("s1", "right")]  # KL 0-1 at baseline
    assert incident.loc[("s1", "right"), ["event", "time_months"]].tolist() == [1, 24.0]
    assert incident.loc[("s1", "left"), ["event", "time_months"]].tolist() == [0, 48.0]

    progression = knee_outcome(frame, "kl_progression", config)
    knees = progression.knees.set_index(["subject", "side"])
    assert ("s2", "left") not in knees.index and progression.excluded["KL 4 at baseline"] == 1
    assert knees.loc[("s2", "right"), ["event", "time_months"]].tolist() == [1, 48.0]
    short = PredictionConfig(kl_horizon_months=36)
    shorter = knee_outcome(prepare(hand_table(), short), "kl_progression", short).knees
    assert shorter.set_index(["subject", "side"]).loc[("s2", "right"), "event"] == 0

    jsw = knee_outcome(frame, "jsw_loss", config)
    j = jsw.knees.set_index(["subject", "side"])
    # s1 right: 3.2 - 4.0 = -0.8 at 48 months: an event at the horizon, first met at 48
    assert j.loc[("s1", "right"), ["event", "time_event", "time_months"]].tolist() == [1, 1, 48]
    # s2 right: -0.9 at 12 months only (-0.5 at 48): no event at the horizon; the
    # time-to-event form counts the first crossing
    assert j.loc[("s2", "right"), ["event", "time_event", "time_months"]].tolist() == [0, 1, 12]
    assert ("s2", "left") not in j.index and jsw.excluded == {"no value at 48 months": 1}


def test_baseline_features_leave_out_the_generators_truth() -> None:
    table = hand_table()
    table["true_medial_jsw_mm"] = 1.0
    table["latent_d0"] = 1.0
    table["severity"] = 2.0
    table["sex"] = 2
    config = PredictionConfig(features=("*",))
    features, names = baseline_features(prepare(table, config), config)
    assert not {"true_medial_jsw_mm", "latent_d0", "severity"} & set(names)
    assert {"klg", "medial_jsw_mm", "contra_klg", "contra_medial_jsw_mm"} <= set(names)
    assert "contra_age" not in names  # a subject-level value: no contralateral copy
    row = features.set_index(["subject", "side"]).loc[("s1", "right")]
    assert row["contra_klg"] == 0 and row["sex_female"] == 1.0 and row["age_years"] == 60


def known_risk_table(subjects: int, seed: int, signal: float) -> tuple[pd.DataFrame, pd.Series]:
    """Two knees per subject, one visit pair; P(event) = sigmoid(signal x - 2) with x a
    baseline feature; returns (table, true probability per knee)."""
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for s in range(subjects):
        shared = rng.normal()
        for side in ("right", "left"):
            x = 0.6 * shared + 0.8 * rng.normal()
            p = 1.0 / (1.0 + math.exp(-(signal * x - 2.0)))
            event = rng.random() < p
            truth[(f"s{s}", side)] = p
            base = {"subject": f"s{s}", "side": side, "marker": x, "noise": rng.normal()}
            rows.append({**base, "visit": "V00", "medial_jsw_mm": 4.0})
            rows.append({**base, "visit": "V06", "medial_jsw_mm": 4.0 - (1.0 if event else 0.2)})
    return pd.DataFrame(rows), pd.Series(truth)


def test_models_reach_the_auc_of_the_true_risk_and_noise_reaches_chance() -> None:
    table, truth = known_risk_table(500, seed=3, signal=2.0)
    config = PredictionConfig(
        outcomes=("jsw_loss",), features=("marker", "noise"), n_boot=200, contralateral=False
    )
    result = predict_outcomes(table, config).outcomes["jsw_loss"]
    y = result.knees["event"].to_numpy(np.float64)
    keys = list(zip(result.knees["subject"], result.knees["side"], strict=True))
    p_true = truth.reindex(keys).to_numpy()
    best = roc_auc(y, p_true)
    metrics = {m["name"]: m for m in result.metrics}
    # the logistic and Cox models are of the true risk's form: within 0.02 of its AUC; the
    # gradient boosting approximates the smooth risk by steps: within 0.05
    for name, tolerance in (("logistic", 0.02), ("cox", 0.02), ("gbm", 0.05)):
        assert metrics[name]["auc"] > best - tolerance, (name, metrics[name]["auc"], best)
        low, high = metrics[name]["auc_ci"]
        assert low < metrics[name]["auc"] < high and high - low < 0.1
    bins = calibration_bins(result.knees["p_logistic"].to_numpy(), y, 5)
    assert expected_calibration_error(bins) < 0.05
    assert 0.6 < metrics["cox"]["c_index"] < 1.0

    noise = PredictionConfig(
        outcomes=("jsw_loss",), features=("noise",), n_boot=200, models=("logistic",)
    )
    chance = predict_outcomes(table, noise).outcomes["jsw_loss"].metrics[0]
    # pure noise: no better than chance (out-of-fold AUCs of noise sit a little below 0.5)
    assert chance["auc_ci"][0] < 0.5 and chance["auc"] < 0.55


def test_folds_keep_a_subjects_knees_together() -> None:
    groups = np.repeat(np.arange(50), 2)
    event = np.tile([0, 1], 50)
    fold = grouped_folds(event, groups, 5, seed=0)
    assert np.all(fold[0::2] == fold[1::2]) and set(fold) == set(range(5))
    with pytest.raises(InputError, match="folds"):
        grouped_folds(event[:6], groups[:6], 5, seed=0)


def test_the_oracle_is_calibrated_against_the_generators_futures() -> None:
    from kneescope.capabilities.prediction.oracle import oracle_probabilities
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.endpoints import endpoint_table

    table = endpoint_table(CohortSpec(subjects=300, visits=VISITS, seed=17003))
    config = PredictionConfig(outcomes=("incident_oa", "kl_progression", "jsw_loss"))
    oracle = oracle_probabilities(table, config, draws=30, seed=1)
    rate = oracle_probabilities(table, config, draws=30, seed=1, known_rate=True)
    frame = prepare(table, config)
    for name in config.outcomes:
        knees = knee_outcome(frame, name, config).knees
        keys = list(zip(knees["subject"], knees["side"], strict=True))
        y = knees["event"].to_numpy(np.float64)
        p = oracle[name].reindex(keys).to_numpy()
        # calibration in the large: mean predicted = observed share within 3 binomial SEs
        se = math.sqrt(np.sum(p * (1 - p))) / len(p)
        assert abs(p.mean() - y.mean()) < 3 * se + 0.01, (name, p.mean(), y.mean())
        assert expected_calibration_error(calibration_bins(p, y, 5)) < 0.06, name
        # knowing the true initial rate ranks the knees better than the baseline state alone
        assert roc_auc(y, rate[name].reindex(keys).to_numpy()) > roc_auc(y, p) + 0.05, name


def test_the_oracle_needs_the_generators_latent_columns() -> None:
    from kneescope.capabilities.prediction.oracle import oracle_probabilities

    with pytest.raises(InputError, match="latent"):
        oracle_probabilities(hand_table(), PredictionConfig())


def _cli(argv: list[str]) -> None:
    from kneescope.cli.app import main

    assert main(argv) == 0, argv


def test_prediction_step_on_a_run_with_catalog_grades(tmp_path: Path) -> None:
    """The endpoint table's knee-visits as a run's results (medial JSW under the radiograph
    step's name), the KL grades, sex, age and BMI as OAI-style clinical tables in a catalog:
    the step's incident-OA knees and events are the generator's."""
    from kneescope.catalog.view import CatalogView
    from kneescope.cohort.cohort_steps import RESULTS_FILE, run_cohort_steps
    from kneescope.cohort.pipeline_config import StepConfig
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.endpoints import endpoint_table

    table = endpoint_table(CohortSpec(subjects=150, visits=VISITS, seed=17004))
    results = table.loc[:, ["subject", "visit", "side", "we2008_cMFTC_ThCtAB_mm"]].copy()
    results["mjsw_medial_mm"] = table["medial_jsw_mm"]
    results.insert(0, "item_id", [f"mri-{i}" for i in range(len(results))])
    first = table.groupby("subject").first()
    allc = ["ID,P02SEX,V00AGE,P01BMI"]
    allc += [f"{s},{r.sex},{r.age},{r.bmi:.1f}" for s, r in first.iterrows()]
    grades = table.pivot_table(index=["subject", "side"], columns="visit", values="klg")
    kxr = ["ID,SIDE," + ",".join(f"{v}XRKL" for v in VISITS)]
    for (subject, side), row in zip(grades.index, grades.to_dict("records"), strict=True):
        cells = ",".join(f"{int(row[v])}: grade" for v in VISITS)
        kxr.append(f"{subject},{1 if side == 'right' else 2},{cells}")
    ws = tmp_path / "ws"
    for name, lines in (("allclinical.csv", allc), ("kxr.csv", kxr)):
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        _cli(["ingest", str(path), "--kind", "clinical", "-w", str(ws)])
    view = CatalogView(f"sqlite:///{ws / 'catalog.sqlite'}", ws)
    run_dir = ws / "runs" / "mri"
    run_dir.mkdir(parents=True)
    options = {"outcomes": ["incident_oa", "jsw_loss"], "models": ["logistic"], "n_boot": 100}
    config = StepConfig(name="prediction", options=options)
    rows = [{str(k): v for k, v in r.items()} for r in results.to_dict("records")]
    outcome = run_cohort_steps([config], rows, run_dir, view)
    assert outcome.ran == ("prediction",)
    (entry,) = json.loads((run_dir / RESULTS_FILE).read_text())["steps"]
    assert entry["ok"] is True, entry.get("reason")
    values = entry["values"]["outcomes"]
    truth = knee_outcome(prepare(table, PredictionConfig()), "incident_oa", PredictionConfig())
    assert values["incident_oa"]["knees"] == len(truth.knees)
    assert values["incident_oa"]["events"] == int(truth.knees["event"].sum())
    jsw = knee_outcome(prepare(table, PredictionConfig()), "jsw_loss", PredictionConfig())
    assert values["jsw_loss"]["events"] == int(jsw.knees["event"].sum())
    (metric,) = values["incident_oa"]["metrics"]
    assert metric["name"] == "logistic" and metric["auc_ci"][0] < metric["auc"]
    folder = run_dir / "cohort" / "prediction"
    knees = pd.read_csv(folder / "prediction_knees.csv", dtype={"subject": str})
    assert set(knees["outcome"]) == {"incident_oa", "jsw_loss"}
    assert knees["p_logistic"].between(0, 1).all()
    assert (folder / "prediction_calibration_incident_oa.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((folder / "prediction_summary.json").read_text())
    assert "age_years" in summary["outcomes"]["incident_oa"]["features"]
    assert run_cohort_steps([config], rows, run_dir, view).skipped == ("prediction",)


def test_bad_options_are_one_clear_error() -> None:
    from kneescope.capabilities.prediction.step import Prediction

    with pytest.raises(ConfigError, match="outcomes"):
        Prediction(outcomes=["incident_oa", "death"])
    with pytest.raises(ConfigError, match="folds"):
        Prediction(folds=1)
    asked = PredictionConfig(outcomes=("incident_oa",))
    with pytest.raises(InputError, match="no column 'klg' for incident_oa: give the reader"):
        predict_outcomes(hand_table().drop(columns="klg"), asked)


def test_a_default_outcome_without_its_column_is_skipped_with_the_way_out(
    tmp_path: Path,
) -> None:
    """An MRI-only run has no radiographic JSW: with the default outcomes, jsw_loss is
    skipped with the reason and the way out (join_runs / outcomes) and the others are
    modelled; asked for by name, it stays a clear error."""
    from kneescope.capabilities.prediction.outputs import write_outputs
    from kneescope.io.folder_writer import folder_writer

    table, _ = known_risk_table(60, seed=5, signal=2.0)
    table["klg"] = np.where(table["visit"] == "V00", 1.0, 1.0 + (table["medial_jsw_mm"] < 3.5))
    mri_only = table.drop(columns="medial_jsw_mm")
    config = PredictionConfig(
        models=("logistic",), features=("marker", "klg"), n_boot=20, min_events=2, folds=2
    )
    result = predict_outcomes(mri_only, config)
    jsw = result.outcomes["jsw_loss"]
    assert "no column 'medial_jsw_mm' for jsw_loss" in jsw.skipped
    assert 'join_runs = ["xray"]' in jsw.skipped and "outcomes = [...]" in jsw.skipped
    assert jsw.metrics == [] and jsw.to_json()["knees"] == 0
    assert "thickness" in result.outcomes["thickness_loss"].skipped
    incident = result.outcomes["incident_oa"]
    # incident OA's events are the knees whose JSW fell by 1 mm (KL 1 -> 2): modelled
    assert incident.skipped == "" and incident.metrics[0]["auc"] > 0.7
    assert incident.to_json()["events"] == int((table["medial_jsw_mm"] < 3.5).sum())
    write_outputs(result, folder_writer(tmp_path))
    summary = json.loads((tmp_path / "prediction_summary.json").read_text())
    assert "join_runs" in summary["outcomes"]["jsw_loss"]["skipped"]
    for asked in (
        config.model_copy(update={"outcomes": ("incident_oa", "jsw_loss")}),
        PredictionConfig(jsw_column="medial_jsw_mm", features=("marker",), n_boot=0),
    ):
        with pytest.raises(InputError, match="no column 'medial_jsw_mm' for jsw_loss"):
            predict_outcomes(mri_only, asked)


def test_too_few_events_is_reported_not_modelled(tmp_path: Path) -> None:
    from kneescope.capabilities.prediction.outputs import write_outputs
    from kneescope.io.folder_writer import folder_writer

    result = predict_outcomes(hand_table(), PredictionConfig(outcomes=("incident_oa", "jsw_loss")))
    incident = result.outcomes["incident_oa"]
    assert "1 events and 1 non-events" in incident.skipped and incident.metrics == []
    files = write_outputs(result, folder_writer(tmp_path))
    assert set(files) == {"metrics", "knees", "summary"}
    summary = json.loads((tmp_path / "prediction_summary.json").read_text())
    assert summary["outcomes"]["jsw_loss"]["excluded"] == {"no value at 48 months": 1}


def test_ambiguous_or_unknown_visits_are_refused() -> None:
    twice = pd.concat([hand_table(), hand_table().iloc[:1]], ignore_index=True)
    with pytest.raises(InputError, match="two rows at visit V00"):
        prepare(twice, PredictionConfig())
    odd = hand_table().assign(visit="M12")
    with pytest.raises(InputError, match="no months"):
        prepare(odd, PredictionConfig())
    with pytest.raises(InputError, match="baseline visit 'V99'"):
        prepare(hand_table(), PredictionConfig(baseline_visit="V99"))
    # a later baseline: visits before it are left out, months count from it
    later = prepare(hand_table(), PredictionConfig(baseline_visit="V01"))
    assert later["baseline_months"].min() == 0 and later["baseline_months"].max() == 36


def _toml_blocks(text: str) -> list[str]:
    import re
    import textwrap

    return [
        textwrap.dedent(b)
        for b in re.findall(r"```toml\n(.*?)```", text, re.S)
        + re.findall(r"config::\n\n(.*?)\n\n", text, re.S)
    ]


def test_the_documented_pipeline_snippets_parse_and_validate() -> None:
    """The TOML shown in docs/prediction.md and the step's docstring is valid TOML (no
    multi-line inline table) and its options are valid step options."""
    import tomllib

    import kneescope.capabilities.prediction.step as step_module
    from kneescope.capabilities.prediction.step import Prediction

    doc = (Path(__file__).parents[2] / "docs" / "prediction.md").read_text()
    blocks = _toml_blocks(doc) + _toml_blocks(step_module.__doc__ or "")
    assert len(blocks) == 2
    for block in blocks:
        (entry,) = tomllib.loads(block)["cohort_steps"]
        assert entry["name"] == "prediction"
        step = Prediction(**entry["options"])
        assert step.join_runs == ("xray",) and "incident_oa" in step.config.outcomes


def test_folds_are_capped_by_the_rarer_class_without_a_warning() -> None:
    """3 events among 40 knees with folds = 5: stratified folds cannot all hold an event;
    the outcome is modelled with 3 folds (said in folds/notes) and scikit-learn has nothing
    to warn about."""
    import warnings

    table, _ = known_risk_table(20, seed=7, signal=2.0)
    # the three events in three subjects (right knees)
    base = table.loc[(table["visit"] == "V00") & (table["side"] == "right")].nlargest(3, "marker")
    events = set(zip(base["subject"], base["side"], strict=True))
    hit = [
        (s, side) in events and v == "V06"
        for s, side, v in zip(table["subject"], table["side"], table["visit"], strict=True)
    ]
    table["medial_jsw_mm"] = np.where(hit, 3.0, 4.0)
    config = PredictionConfig(
        outcomes=("jsw_loss",),
        models=("logistic", "gbm"),
        features=("marker",),
        n_boot=20,
        min_events=2,
        folds=5,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = predict_outcomes(table, config).outcomes["jsw_loss"]
    assert result.skipped == "" and result.to_json()["events"] == 3
    assert result.folds == 3 and set(result.knees["fold"]) == {0, 1, 2}
    # every fold holds one of the three events
    assert result.knees.groupby("fold")["event"].sum().tolist() == [1, 1, 1]
    assert result.notes == ["3 cross-validation folds, not 5: only 3 events"]
    assert result.to_json()["folds"] == 3


def test_an_outcome_whose_features_do_not_vary_is_skipped_not_a_traceback() -> None:
    """Every knee at risk has baseline KL 1 and KL is the only feature: nothing to model
    from; the outcome is skipped with the reason (scikit-learn raised a ValueError)."""
    table, _ = known_risk_table(40, seed=5, signal=2.0)
    table["klg"] = np.where(table["visit"] == "V00", 1.0, 1.0 + (table["medial_jsw_mm"] < 3.5))
    config = PredictionConfig(
        outcomes=("incident_oa",), models=("logistic",), features=("klg",), min_events=2
    )
    result = predict_outcomes(table, config).outcomes["incident_oa"]
    assert result.to_json()["events"] >= 2 and result.metrics == []
    assert result.skipped.startswith("no feature varies among the 80 knees at risk (klg")
