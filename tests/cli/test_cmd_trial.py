"""``kneescope trial -c trial.toml`` on a workspace: a run's results table, arms and covariates
from the catalog's clinical tables (as ``kneescope synth --randomise`` writes them, ingested
with ``kneescope ingest``), the output folder's rules, one-line errors."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

import pandas as pd
import pytest

from kneescope.cli.app import main
from kneescope.synth.cohort import CohortSpec, plan_cohort
from kneescope.synth.endpoints import endpoint_table, index_knees
from kneescope.synth.generate import clinical_rows, write_csv

ENDPOINTS = ("we2008_cMFTC_ThCtAB_mm", "medial_jsw_mm")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _no_nan(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace whose catalog holds a randomised synthetic cohort's clinical tables and
    whose run ``mri`` holds the knees' endpoint values (the generator's, with measurement
    noise) at V00, V01 and V03."""
    root = tmp_path_factory.mktemp("trial")
    spec = CohortSpec(
        subjects=80, visits=("V00", "V01", "V03"), seed=17008, treatment_effect=0.6,
        randomise=True, mri=False, radiographs=False, full_leg=False,
    )  # fmt: skip
    plans = plan_cohort(spec)
    table = endpoint_table(spec, plans)
    allc, kxr = clinical_rows(spec, plans)
    ws = root / "ws"
    for name, rows in (("AllClinical.csv", allc), ("kXR.csv", kxr)):
        path = write_csv(root / "clinical" / name, rows)
        code, _, err = run_cli("ingest", str(path), "--kind", "clinical", "-w", str(ws))
        assert code == 0, err
    run = ws / "runs" / "mri"
    run.mkdir(parents=True)
    table.loc[:, ["subject", "visit", "side", *ENDPOINTS]].to_parquet(run / "results.parquet")
    config = root / "trial.toml"
    config.write_text(
        "\n".join(
            [
                'name = "forward-like"',
                "[data]",
                'run = "mri"',
                "[arms]",
                'variable = "TRTARM"',
                "control = 0",
                "treatment = 1",
                "[analysis]",
                f"endpoints = {list(ENDPOINTS)!r}".replace("'", '"'),
                'covariates = ["P01BMI"]',
                'index_by = "XRKL"',
                "[[responders]]",
                f'endpoint = "{ENDPOINTS[0]}"',
                "threshold = -0.1",
                "[power]",
                f"target_effects = {{ {ENDPOINTS[0]} = 0.05 }}",
                "",
            ]
        )
    )
    return {"root": root, "ws": ws, "table": table, "config": config, "plans": plans}


def test_trial_from_a_run_and_the_catalog(workspace: dict[str, Any]) -> None:
    ws, table = workspace["ws"], workspace["table"]
    code, out, err = run_cli("trial", "-c", str(workspace["config"]), "-w", str(ws), "--json")
    assert code == 0, err
    payload = json.loads(out, parse_constant=_no_nan)
    folder = ws / "trials" / "forward-like"
    assert payload["output"] == str(folder)
    # arms from TRTARM: the generator's randomisation
    arms = {p.participant_id: p.arm for p in workspace["plans"]}
    assert payload["subjects"] == {
        "control": sum(a == "control" for a in arms.values()),
        "treatment": sum(a == "treatment" for a in arms.values()),
    }
    assert payload["excluded"] == {}
    main = payload["endpoints"][0]["primary"]
    assert main["visit"] == "V03" and main["ci_low"] < main["estimate"] < main["ci_high"]
    assert payload["endpoints"][0]["power"][0]["target_effect"] == 0.05
    assert payload["responders"][0]["endpoint"] == ENDPOINTS[0]
    # the same trial from a tidy table (index knee, arm and BMI as columns): the same numbers
    index = table[index_knees(table).to_numpy(bool)]
    bmi = {p.participant_id: round(p.bmi, 1) for p in workspace["plans"]}  # as AllClinical
    tidy = index.assign(P01BMI=index["subject"].map(bmi))
    tidy_path = workspace["root"] / "tidy.csv"
    tidy.to_csv(tidy_path, index=False)
    table_config = workspace["root"] / "table.toml"
    text = workspace["config"].read_text()
    text = text.replace('run = "mri"', 'table = "tidy.csv"').replace('"TRTARM"', '"arm"')
    text = text.replace("control = 0", 'control = "control"').replace(
        "treatment = 1", 'treatment = "treatment"'
    )
    table_config.write_text(text.replace('index_by = "XRKL"', 'index_by = "klg"'))
    out_dir = workspace["root"] / "from_table"
    code, out, err = run_cli("trial", "-c", str(table_config), "-o", str(out_dir))  # text form
    assert code == 0, err
    assert "control and" in out and "files in" in out and "Cohen" in out
    again = json.loads((out_dir / "trial_summary.json").read_text(), parse_constant=_no_nan)
    assert again["endpoints"][0]["primary"]["estimate"] == pytest.approx(main["estimate"])
    assert again["endpoints"][0]["primary"]["se"] == pytest.approx(main["se"])
    results = pd.read_csv(folder / "trial_results.csv")
    assert set(results["endpoint"]) == set(ENDPOINTS)
    assert (folder / "trajectories_medial_jsw_mm.png").is_file()


def test_trial_refuses_to_overwrite_and_says_why(workspace: dict[str, Any]) -> None:
    ws, config = workspace["ws"], workspace["config"]
    folder = workspace["root"] / "refuse"
    assert run_cli("trial", "-c", str(config), "-w", str(ws), "-o", str(folder))[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    code, _, err = run_cli("trial", "-c", str(config), "-w", str(ws), "-o", str(folder))
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    (folder / "notes.txt").write_text("mine")
    code, _, err = run_cli(
        "trial", "-c", str(config), "-w", str(ws), "-o", str(folder), "--overwrite"
    )
    assert code == 2 and "notes.txt" in err
    # bad inputs: one line each, nothing written
    missing = workspace["root"] / "nope.toml"
    code, _, err = run_cli("trial", "-c", str(missing), "-w", str(ws))
    assert code == 2 and "nope.toml" in err and len(err.strip().splitlines()) == 1
    other = workspace["root"] / "other.toml"
    other.write_text(config.read_text().replace('run = "mri"', 'run = "ct"'))
    fresh = workspace["root"] / "never"
    code, _, err = run_cli("trial", "-c", str(other), "-w", str(ws), "-o", str(fresh))
    assert code == 3 and "run 'ct' not found" in err and not fresh.exists()
    other.write_text(config.read_text().replace('"P01BMI"', '"P01WEIGHT"'))
    code, _, err = run_cli("trial", "-c", str(other), "-w", str(ws), "-o", str(fresh))
    assert code == 2 and "P01WEIGHT" in err and not fresh.exists()
    empty = workspace["root"] / "empty_ws"
    code, _, err = run_cli("trial", "-c", str(config), "-w", str(empty), "-o", str(fresh))
    assert code == 2 and "no catalog" in err and not fresh.exists()
