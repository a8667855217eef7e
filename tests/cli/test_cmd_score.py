"""``kneescope score`` and the ``oa_score`` cohort step on a real workspace: run results
tables on disk, the readers' KL grades in a real SQLite catalog (``kneescope ingest --kind
clinical``), values read back with ``kneescope results``.

The two runs' tables (an MRI run: cartilage thickness; a radiograph run: JSW and a KL
classifier's probabilities) follow a latent severity D per knee-visit, and the reader's KL
grade is floor(D): the score's ordering can be checked against D.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from kneescope.capabilities.oa_score.model_file import load_model, model_digest
from kneescope.capabilities.oa_score.score import predict
from kneescope.catalog.view import CatalogView
from kneescope.cli.app import main
from kneescope.cohort.cohort_steps import RESULTS_FILE, run_cohort_steps
from kneescope.cohort.pipeline_config import StepConfig

VISITS = ("V00", "V01")


def _tables(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(MRI run results, radiograph run results, truth with D and KLG)."""
    rng = np.random.default_rng(seed)
    mri, xray, truth = [], [], []
    for s in range(n):
        subject = f"9{seed:02d}{s:04d}"
        for side in ("right", "left"):
            d0 = rng.uniform(0.0, 4.7)
            for v, visit in enumerate(VISITS):
                d = min(d0 + 0.2 * v, 4.99)
                key = {"subject": subject, "visit": visit, "side": side}
                truth.append({**key, "D": d, "KLG": int(np.floor(d))})
                mri.append(
                    {
                        "item_id": f"m{subject}{visit}{side}",
                        **key,
                        "series": f"1.2.{seed}.{s}.{v}.{side}",
                        "medial_tibial_cartilage_thickness_mean_mm": 2.2
                        - 0.3 * d
                        + rng.normal(0, 0.25),
                        "qc_reasons": "",
                    }
                )
                centre = d - 0.5 + rng.normal(0, 0.7)
                logits = -((np.arange(5) - centre) ** 2) / 0.8
                p = np.exp(logits - logits.max())
                p /= p.sum()
                xray.append(
                    {
                        "item_id": f"x{subject}{visit}{side}",
                        **key,
                        "series": f"1.3.{seed}.{s}.{v}",
                        "mjsw_medial_mm": 5.0 - 0.7 * d + rng.normal(0, 0.7),
                        **{f"kl_probability_{k}": float(p[k]) for k in range(5)},
                    }
                )
    return pd.DataFrame(mri), pd.DataFrame(xray), pd.DataFrame(truth)


def _cli(argv: list[str], expect: int = 0) -> tuple[Any, str]:
    """(parsed --json stdout or None, stderr) of ``kneescope ARGV``; asserts the exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == expect, (argv, code, err.getvalue())
    text = out.getvalue()
    return (json.loads(text) if text.strip().startswith(("{", "[")) else None), err.getvalue()


def _workspace(root: Path, n: int = 14, seed: int = 1, names: tuple[str, str] = ("mri", "xray")):  # type: ignore[no-untyped-def]
    """A workspace with two runs' results tables and the readers' KL grades in its catalog;
    returns (workspace, truth)."""
    ws = root / "ws"
    mri, xray, truth = _tables(n, seed)
    for name, table in zip(names, (mri, xray), strict=True):
        (ws / "runs" / name).mkdir(parents=True)
        table.to_parquet(ws / "runs" / name / "results.parquet", index=False)
    wide = truth.pivot_table(index=["subject", "side"], columns="visit", values="KLG")
    lines = ["ID,SIDE," + ",".join(f"{v}XRKL" for v in VISITS)]
    for (subject, side), row in wide.iterrows():
        grades = ",".join(f"{int(row[v])}: grade" for v in VISITS)
        lines.append(f"{subject},{1 if side == 'right' else 2},{grades}")
    kxr = root / f"kxr{seed}.csv"
    kxr.write_text("\n".join(lines) + "\n")
    _cli(["ingest", str(kxr), "--kind", "clinical", "-w", str(ws)])
    return ws, truth


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A workspace of 14 subjects (56 knee-visits), built once; tests take copies."""
    return _workspace(tmp_path_factory.mktemp("template"))  # type: ignore[no-any-return]


@pytest.fixture
def big(template: tuple[Path, pd.DataFrame], tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    ws = tmp_path / "ws"
    shutil.copytree(template[0], ws)
    return ws, template[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace of 3 subjects (12 knee-visits: too few to fit), shared: tests that use
    it must write nothing."""
    ws, _ = _workspace(tmp_path_factory.mktemp("small"), n=3)
    return ws  # type: ignore[no-any-return]


def test_score_fits_joined_runs_stores_every_knee_and_applies_to_another_run(
    big: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    ws, truth = big
    payload, _ = _cli(["score", "--run", "mri", "--run", "xray", "-w", str(ws), "--json"])
    folder = ws / "runs" / "mri" / "oa_score"
    assert payload["mode"] == "fit" and payload["output"] == str(folder)
    assert payload["knees"] == payload["knees_with_reader_kl"] == len(truth) == 56
    assert set(payload["features"]) == {
        "medial_tibial_cartilage_thickness_mean_mm",
        "mjsw_medial_mm",
        "kl_expected_grade",
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            "oa_scores.csv",
            "oa_score_summary.json",
            "oa_score_model.json",
            "oa_score_model.md",
            "oa_coefficients.csv",
            "oa_reliability.csv",
            "oa_reliability.png",
        ]
    )
    assert (folder / "oa_reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = pd.read_csv(folder / "oa_scores.csv", dtype={"subject": str})
    known = scores.merge(truth, on=["subject", "visit", "side"])
    assert len(known) == 56 and (known["oa_reader_kl"] == known["KLG"]).all()
    assert spearmanr(known["oa_score"], known["D"]).statistic > 0.85
    # every knee's values are in the catalog, with units and provenance
    export = tmp_path / "scores.csv"
    _cli(["results", "--run", "mri+xray.oa_score", "-o", str(export), "-w", str(ws), "--json"])
    tidy = pd.read_csv(export, dtype={"subject": str})
    assert set(tidy["capability"]) == {"oa_score"} and set(tidy["step"]) == {"oa_score"}
    stored = tidy[tidy["name"] == "oa_score"].merge(scores, on=["subject", "visit", "side"])
    assert len(stored) == 56
    assert stored["value"].to_numpy() == pytest.approx(stored["oa_score"].to_numpy())
    units = dict(zip(tidy["name"], tidy["unit"], strict=False))
    assert units["oa_score"] == "KL grade" and units["oa_probability_kl2"] == "1"
    assert set(tidy["model_hash"]) == {model_digest(folder / "oa_score_model.json")}
    assert tidy["input_checksum"].str.len().eq(16).all()
    # a second fit refuses to replace the first without --overwrite, then replaces it
    _, err = _cli(["score", "--run", "mri", "--run", "xray", "-w", str(ws)], expect=2)
    assert err.startswith("error: ") and "--overwrite" in err and len(err.splitlines()) == 1
    _cli(["score", "--run", "mri", "--run", "xray", "-w", str(ws), "--overwrite", "--json"])
    again = pd.read_csv(folder / "oa_scores.csv", dtype={"subject": str})
    assert again["oa_score"].to_numpy() == pytest.approx(scores["oa_score"].to_numpy())
    # the saved model scores another run's knees (no fitting)
    model_path = Path(payload["files"]["model"])
    mri, xray, _ = _tables(6, seed=7)
    for name, table in (("mri2", mri), ("xray2", xray)):
        (ws / "runs" / name).mkdir(parents=True)
        table.to_parquet(ws / "runs" / name / "results.parquet", index=False)
    out = tmp_path / "applied"
    payload, _ = _cli(
        ["score", "--run", "mri2", "--run", "xray2", "-m", str(model_path), "-o", str(out),
         "-w", str(ws), "--json"]
    )  # fmt: skip
    assert payload["mode"] == "apply" and payload["knees"] == 24
    assert payload["knees_with_reader_kl"] == 0  # these subjects have no clinical values
    assert not (out / "oa_score_model.json").exists()  # nothing fitted
    scores = pd.read_csv(out / "oa_scores.csv", dtype={"subject": str})
    assert (scores["oa_fold"] == -1).all()
    model = load_model(model_path)
    knees = scores.merge(
        mri.drop(columns=["item_id", "series"]).merge(
            xray.drop(columns=["item_id", "series"]), on=["subject", "visit", "side"]
        ),
        on=["subject", "visit", "side"],
    )
    knees["kl_expected_grade"] = sum(k * knees[f"kl_probability_{k}"] for k in range(5))
    direct = predict(model, knees.loc[:, list(model.features)].to_numpy())
    assert knees["oa_score"].to_numpy() == pytest.approx(direct["oa_score"])
    # the model's features must all be there
    _, err = _cli(
        ["score", "--run", "mri2", "-m", str(model_path), "-o", str(tmp_path / "x"),
         "-w", str(ws)], expect=2,
    )  # fmt: skip
    assert "needs" in err and "mjsw_medial_mm" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["--run", "nope"], 3, "run 'nope' not found"),
        (["--run", "../x"], 2, "is not a run name"),
        (["--run", "mri", "--run", "mri"], 2, "names a run twice"),
        (["--run", "mri", "-m", "MODEL", "--feature", "x*"], 2, "drop -m to fit"),
        (["--run", "mri", "-m", "NOTAMODEL"], 2, "is not a score model"),
        (["--run", "mri", "-m", "ABSENT"], 3, "not found"),
        (["--run", "mri", "--feature", "nothing_*"], 2, "no usable score feature"),
        (["--run", "mri", "--folds", "1"], 2, "--folds"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    small: Path, tmp_path: Path, argv: list[str], code: int, words: str
) -> None:
    ws = small
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    swap = {"MODEL": str(bad), "NOTAMODEL": str(bad), "ABSENT": str(tmp_path / "absent.json")}
    argv = [swap.get(a, a) for a in argv]
    _, err = _cli(["score", *argv, "-w", str(ws)], expect=code)
    assert err.startswith("error: ") and words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (ws / "runs" / "mri" / "oa_score").exists()


def test_too_few_graded_knees_to_fit(small: Path) -> None:
    ws = small  # 12 knee-visits
    _, err = _cli(["score", "--run", "mri", "--run", "xray", "-w", str(ws)], expect=2)
    assert "12 knee-visits of 3 subjects have a reader KL grade" in err


def test_oa_score_cohort_step_fits_on_the_run_and_joins_another(
    big: tuple[Path, pd.DataFrame],
) -> None:
    ws, truth = big
    run_dir = ws / "runs" / "mri"
    rows = pd.read_parquet(run_dir / "results.parquet").to_dict("records")
    view = CatalogView(f"sqlite:///{ws / 'catalog.sqlite'}", ws)
    config = StepConfig(name="oa_score", options={"join_runs": ["xray"], "folds": 4})
    outcome = run_cohort_steps([config], rows, run_dir, view)
    assert outcome.ran == ("oa_score",)
    data = json.loads((run_dir / RESULTS_FILE).read_text())
    (entry,) = data["steps"]
    assert entry["ok"] is True
    values = entry["values"]
    assert values["knees"] == 56 and values["folds"] == 4
    assert values["catalog_run"] == "mri+xray.oa_score" and values["values_stored"] == 56 * 6
    assert set(values["coefficients_per_sd"]) == set(values["features"])
    assert values["coefficients_per_sd"]["mjsw_medial_mm"] < 0
    # the joined run's rejected knees (QC review), then the readers' grades
    assert [r["call"] for r in entry["catalog_reads"]] == ["rejected_knees", "clinical_values"]
    scores = pd.read_csv(run_dir / entry["files"]["scores"]["path"], dtype={"subject": str})
    assert (run_dir / "cohort" / "oa_score" / "oa_score_model.json").is_file()
    known = scores.merge(truth, on=["subject", "visit", "side"])
    assert spearmanr(known["oa_score"], known["D"]).statistic > 0.85
    # nothing changed: skipped
    assert run_cohort_steps([config], rows, run_dir, view).skipped == ("oa_score",)


@pytest.mark.slow  # a real synthetic cohort through two pipelines: minutes
def test_oa_score_on_real_pipeline_runs_of_a_synthetic_cohort(tmp_path: Path) -> None:
    """synth -> ingest -> a radiograph run (locate_knee, kl_grade, xray_jsw) -> an MRI run
    (load_labels, measure) ending with the oa_score cohort step joined with the radiograph
    run; then `kneescope score` on the same runs. Checked against the truth table."""
    ws = tmp_path / "ws"
    synth = tmp_path / "synth"
    _cli(["synth", "-o", str(synth), "-n", "6", "--seed", "16003", "--json"])
    _cli(["ingest", str(synth), "-w", str(ws), "-j", "1", "--json"])
    (ws / "xray.toml").write_text(
        'name = "xray"\n[items]\nunit = "radiograph_knee"\ncatalog = { kind = "radiograph" }\n'
        + "".join(f'[[steps]]\nname = "{s}"\n' for s in ("locate_knee", "kl_grade", "xray_jsw"))
    )
    (ws / "mri.toml").write_text(
        'name = "mri"\n[items]\ncatalog = { sequence = "DESS" }\n'
        '[[steps]]\nname = "load_labels"\n[[steps]]\nname = "measure"\n'
        '[[cohort_steps]]\nname = "oa_score"\noptions = { join_runs = ["xray"] }\n'
    )
    _cli(["run", "-c", str(ws / "xray.toml"), "-w", str(ws), "--json"])
    run, _ = _cli(["run", "-c", str(ws / "mri.toml"), "-w", str(ws), "--json"])
    assert run["done"] == 24 and run["cohort_steps_ran"] == ["oa_score"]
    (entry,) = json.loads((ws / "runs" / "mri" / RESULTS_FILE).read_text())["steps"]
    assert entry["ok"] and entry["values"]["knees"] == 24
    assert entry["values"]["catalog_run"] == "mri+xray.oa_score"
    assert "kl_expected_grade" in entry["values"]["features"]
    assert "medial_tibial_cartilage_thickness_mean_mm" in entry["values"]["features"]
    truth = pd.read_csv(synth / "truth" / "knee_truth.csv", dtype={"ParticipantID": str})
    truth = truth.rename(columns={"ParticipantID": "subject", "Visit": "visit", "Side": "side"})
    scores = pd.read_csv(
        ws / "runs" / "mri" / "cohort" / "oa_score" / "oa_scores.csv", dtype={"subject": str}
    ).merge(truth, on=["subject", "visit", "side"])
    assert len(scores) == 24 and (scores["oa_reader_kl"] == scores["KLG"]).all()
    assert spearmanr(scores["oa_score"], scores["Severity"]).statistic > 0.5
    listed, _ = _cli(["results", "-w", str(ws), "--json"])
    assert "mri+xray.oa_score" in [r["name"] for r in listed]
    payload, _ = _cli(["score", "--run", "mri", "--run", "xray", "-w", str(ws), "--json"])
    assert payload["knees"] == 24 and payload["features"] == entry["values"]["features"]


def test_clinical_covariates_come_from_the_catalog(
    big: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """Age (V00AGE, carried to later visits), sex (P02SEX 2 = female) and BMI (P01BMI) of
    each knee-visit, read from an ingested OAI-style table; a subject without them: NaN."""
    from kneescope.capabilities.oa_score.features import knee_features
    from kneescope.capabilities.oa_score.score import clinical_covariates

    ws, truth = big
    subjects = sorted(truth["subject"].unique())
    lines = ["ID,P02SEX,V00AGE,P01BMI"]
    lines += [f"{s},{1 + i % 2},{50 + i},{25.5 + i}" for i, s in enumerate(subjects[:-1])]
    table = tmp_path / "allclinical.csv"
    table.write_text("\n".join(lines) + "\n")
    _cli(["ingest", str(table), "--kind", "clinical", "-w", str(ws)])
    knees = knee_features([pd.read_parquet(ws / "runs" / "mri" / "results.parquet")]).knees
    view = CatalogView(f"sqlite:///{ws / 'catalog.sqlite'}", ws)
    covariates = clinical_covariates(view, knees)
    for i, subject in enumerate(subjects[:-1]):
        rows = covariates[knees["subject"] == subject]
        assert len(rows) == 4  # two knees at V00 and V01
        assert (rows["age_years"] == 50 + i).all()
        assert (rows["sex_female"] == (1.0 if i % 2 else 0.0)).all()
        assert rows["bmi_kg_m2"].to_numpy() == pytest.approx([25.5 + i] * 4)
    assert covariates[knees["subject"] == subjects[-1]].isna().all().all()
    payload, _ = _cli(
        ["score", "--run", "mri", "--run", "xray", "--clinical", "--no-store", "-w", str(ws),
         "--json"]
    )  # fmt: skip
    assert {"age_years", "sex_female", "bmi_kg_m2"} <= set(payload["features"])
