"""docs/outcomes.md's worked example, run exactly as written: the shell commands of its
``outcomes-commands`` block (synth -> ingest -> run -> trial) with the example files
docs/examples/outcomes_pipeline.toml and docs/examples/trial.toml, then every cohort step's
and the trial's figures checked against the generator's truth tables (truth/subjects.csv,
truth/knee_truth.csv) and against the run's own results table. If the docs, the example files
or a step's behaviour drift apart, this fails."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kneescope.cli.app import main
from kneescope.synth.pain import PAIN_PER_KLG

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "outcomes.md"
EXAMPLES = REPO / "docs" / "examples"
ENDPOINT = "we2008_cMFTC_ThCtAB_mm"


def doc_commands() -> list[list[str]]:
    """The ``kneescope`` command lines of the doc's block that starts with the comment line
    ``# outcomes-commands`` (each as argv, without the leading ``kneescope``)."""
    text = DOC.read_text()
    match = re.search(r"```bash\n# outcomes-commands\n(.*?)```", text, re.S)
    assert match, "docs/outcomes.md lost its '# outcomes-commands' block"
    lines = [line.strip() for line in match.group(1).splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("kneescope ")]


def test_the_doc_names_the_example_files_and_commands() -> None:
    commands = doc_commands()
    assert [c[0] for c in commands] == ["synth", "ingest", "run", "trial"]
    assert "docs/examples/outcomes_pipeline.toml" in commands[2]
    assert "docs/examples/trial.toml" in commands[3]
    for name in ("outcomes_pipeline.toml", "trial.toml"):  # shown in the doc as they are
        body = (EXAMPLES / name).read_text().strip()
        assert body in DOC.read_text(), f"docs/outcomes.md does not show {name} as it is"


def _cli(argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, (argv, code, out.getvalue()[-2000:], err.getvalue()[-2000:])
    return out.getvalue()


def _localise(argv: list[str], tmp: Path) -> list[str]:
    """The doc's relative paths: the example files from the repository, the cohort and the
    workspace in ``tmp``."""
    local = {"outcomes-synth": tmp / "outcomes-synth", "outcomes-ws": tmp / "outcomes-ws"}
    return [
        str(REPO / a) if a.startswith("docs/") else str(local[a]) if a in local else a for a in argv
    ]


@pytest.mark.slow  # renders 8 subjects x 3 visits (small grid, ~2 min CPU) and measures them
def test_the_outcomes_example_runs_as_documented(tmp_path: Path) -> None:
    for argv in doc_commands():
        _cli(_localise(argv, tmp_path))
    synth, ws = tmp_path / "outcomes-synth", tmp_path / "outcomes-ws"
    subjects = pd.read_csv(synth / "truth" / "subjects.csv", dtype={"ParticipantID": str})
    knees = pd.read_csv(synth / "truth" / "knee_truth.csv", dtype={"ParticipantID": str})
    n_subjects, visits = len(subjects), ["V00", "V01", "V03"]
    assert n_subjects == 8 and sorted(knees["Visit"].unique()) == visits
    run = ws / "runs" / "mri"
    steps: dict[str, dict[str, Any]] = {
        s["name"]: s for s in json.loads((run / "cohort_results.json").read_text())["steps"]
    }
    assert list(steps) == ["longitudinal", "prediction", "pain", "phenotypes", "oa_score"]
    for name, entry in steps.items():
        assert entry["ok"] is True, (name, entry.get("reason"))

    # longitudinal: every knee followed over the three visits, months from the scan dates
    lon = steps["longitudinal"]["values"]
    assert lon["knees"] == 2 * n_subjects and lon["knee_visits"] == 2 * n_subjects * 3
    assert lon["visits"] == visits and lon["months_source"] == {"dates": 2 * n_subjects * 3}
    changes = pd.read_parquet(run / "cohort" / "longitudinal" / "longitudinal_changes.parquet")
    assert set(changes["baseline_klg"].dropna().astype(int)) == set(
        pd.concat([subjects["BaselineKLG_R"], subjects["BaselineKLG_L"]])
    )

    # prediction: knees at risk and events of KL progression are the generator's
    base = knees.loc[knees["Visit"] == "V00"].set_index(["ParticipantID", "Side"])["KLG"]
    later = knees.loc[knees["Visit"] != "V00"].groupby(["ParticipantID", "Side"])["KLG"].max()
    at_risk = base[base <= 3]
    progressed = int((later[at_risk.index] > at_risk).sum())
    kl = steps["prediction"]["values"]["outcomes"]["kl_progression"]
    assert (kl["knees"], kl["events"]) == (len(at_risk), progressed)
    if progressed >= 2 and len(at_risk) - progressed >= 2:  # modelled (min_events = 2)
        (metrics,) = kl["metrics"]
        assert metrics["name"] == "logistic" and 0.0 <= metrics["auc"] <= 1.0

    # pain: every knee-visit of every subject; the generator's points per KL grade in the CI
    pain = steps["pain"]["values"]
    assert (pain["knee_visits"], pain["subjects"]) == (2 * n_subjects * 3, n_subjects)
    klg = pain["coefficients"]["klg"]
    assert klg["ci_low"] <= PAIN_PER_KLG <= klg["ci_high"]

    assert steps["phenotypes"]["values"]["knees"] == 2 * n_subjects
    assert steps["phenotypes"]["values"]["k"] in (1, 2)
    assert steps["oa_score"]["values"]["knees"] == 2 * n_subjects * 3
    for folder, files in {
        "longitudinal": ["longitudinal_changes.parquet", "longitudinal_summary.csv"],
        "prediction": ["prediction_metrics.csv", "prediction_knees.csv"],
        "pain": ["pain_coefficients.csv", "pain_summary.json"],
        "phenotypes": ["phenotypes.csv", "phenotype_summary.json"],
        "oa_score": [],
    }.items():
        for name in files:
            assert (run / "cohort" / folder / name).is_file(), (folder, name)

    # trial: the generator's arms, its index knees, the run's changes
    trial = ws / "trials" / "outcomes-example"
    summary = json.loads((trial / "trial_summary.json").read_text())
    arms = subjects["Arm"].value_counts().to_dict()
    assert summary["subjects"] == {"control": arms["control"], "treatment": arms["treatment"]}
    assert summary["visits"] == visits and summary["primary_visit"] == "V03"
    first = summary["endpoints"][0]
    assert first["endpoint"] == ENDPOINT and first["converged"] is True
    assert first["primary"]["ci_low"] < first["primary"]["estimate"] < first["primary"]["ci_high"]
    results = pd.read_parquet(run / "results.parquet")
    wide = results.pivot_table(index=["subject", "side"], columns="visit", values=ENDPOINT)
    table = pd.read_csv(trial / "trial_results.csv")
    left_worse = subjects["BaselineKLG_L"] > subjects["BaselineKLG_R"]  # ties: the right knee
    subjects["index_side"] = np.where(left_worse, "left", "right")
    for arm in ("control", "treatment"):
        index = subjects.loc[subjects["Arm"] == arm, ["ParticipantID", "index_side"]]
        own = wide.loc[list(index.itertuples(index=False, name=None))]
        for visit in ("V01", "V03"):
            got = table.loc[
                (table["endpoint"] == ENDPOINT)
                & (table["statistic"] == "mean_change")
                & (table["arm"] == arm)
                & (table["visit"] == visit),
                "estimate",
            ]
            assert np.isclose(float(got.iloc[0]), float((own[visit] - own["V00"]).mean()))
    for name in (
        "trial_results.csv",
        "trial_results.parquet",
        "trial_power.csv",
        f"trajectories_{ENDPOINT}.png",
        f"forest_{ENDPOINT}.png",
    ):
        assert (trial / name).is_file(), name


def _block(language: str, marker: str) -> str:
    match = re.search(rf"```{language}\n(# {marker}\n.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/outcomes.md lost its '# {marker}' {language} block"
    return match.group(1)


@pytest.mark.slow  # ~7 s; the example files' text stays checked in the default suite
def test_the_endpoint_table_trial_runs_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trial_table.toml").write_text(_block("toml", "trial-table"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_block("python", "outcomes-table"), "docs/outcomes.md", "exec"), {})
    truth = float(re.findall(r"([+-]\d+\.\d+) mm", printed.getvalue())[0])
    _cli(["trial", "-c", "trial_table.toml", "-o", "endpoint-table"])
    table = pd.read_csv(tmp_path / "endpoints.csv", dtype={"subject": str})
    summary = json.loads((tmp_path / "endpoint-table" / "trial_summary.json").read_text())
    arms = table.drop_duplicates("subject")["arm"].value_counts().to_dict()
    assert summary["subjects"] == {"control": arms["control"], "treatment": arms["treatment"]}
    primary = summary["endpoints"][0]["primary"]
    assert summary["endpoints"][0]["endpoint"] == ENDPOINT and primary["visit"] == "V05"
    assert primary["ci_low"] < truth < primary["ci_high"]  # the generator's true effect
    assert 0.0 < truth < 0.2  # treatment slows cartilage loss: less loss, positive
