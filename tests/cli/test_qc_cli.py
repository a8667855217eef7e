"""``kneescope qc import FILE`` / ``qc list`` on a real run, and the review columns in
``kneescope results`` exports (``--drop-rejected``) and ``kneescope status``: strict JSON,
one line and exit code 2/3 for every mistake."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kneescope.catalog.qc_reviews import FORMAT, REVIEW_COLUMNS
from kneescope.cli.app import main
from kneescope.cohort.pipeline_config import PipelineConfig
from kneescope.cohort.runner import run_pipeline
from kneescope.workspace import Workspace

MEANS = {"K0": 1.5, "K1": 2.5, "K2": 4.0}


def _reject(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _json(*argv: str) -> Any:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main([*argv, "--json"])
    assert code == 0, argv
    return json.loads(buffer.getvalue(), parse_constant=_reject)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run ``r`` over three .npy knees (mean intensity MEANS), then a decisions file marking
    K0 reject, K1 accept, K2 resegment, imported once."""
    root = tmp_path_factory.mktemp("qc")
    lines = ["item_id,subject,visit,side,series,path"]
    for n, (item, mean) in enumerate(MEANS.items()):
        np.save(root / f"{item}.npy", np.full((3, 4, 5), mean, dtype=np.float32))
        lines.append(f"{item},S{n},V00,right,uid.{n},{item}.npy")
    (root / "items.csv").write_text("\n".join(lines) + "\n")
    config = PipelineConfig.model_validate(
        {
            "name": "r",
            "items": {"list": str(root / "items.csv")},
            "steps": [{"name": "load_array"}, {"name": "array_stats"}],
        }
    )
    ws = str(root / "ws")
    # the library's run (the CLI's `run` would import torch for its model options: seconds)
    assert run_pipeline(config, Workspace.resolve(Path(ws))).done == 3
    decisions = [
        {"item_id": "K0", "subject": "S0", "visit": "V00", "side": "right", "series": "uid.0",
         "decision": "reject", "note": "<b>motion</b>", "decided_at": "2026-12-01T14:02:11Z"},
        {"item_id": "K1", "decision": "accept", "decided_at": "2026-12-01T14:02:30+01:00"},
        {"item_id": "K2", "decision": "resegment", "decided_at": "2026-12-01T14:02:20Z"},
    ]  # fmt: skip
    path = root / "qc-decisions-r.json"
    path.write_text(
        json.dumps(
            {"format": FORMAT, "version": 1, "run": "r", "kneescope_version": "0.1.0",
             "reviewer": "A. Reader", "exported_at": "2026-12-01T14:03:00Z",
             "decisions": decisions}
        )
    )  # fmt: skip
    first = _json("qc", "import", str(path), "-w", ws)
    return {"root": root, "ws": ws, "file": path, "first": first}


def test_import_then_reimport_and_list(reviewed: dict[str, Any]) -> None:
    first = reviewed["first"]
    assert (first["run"], first["reviewer"], first["imported"], first["unchanged"]) == (
        "r",
        "A. Reader",
        3,
        0,
    )
    assert first["by_decision"] == {"accept": 1, "reject": 1, "resegment": 1}
    again = _json("qc", "import", str(reviewed["file"]), "-w", reviewed["ws"])
    assert (again["imported"], again["unchanged"], again["sha256"]) == (0, 3, first["sha256"])
    rows = _json("qc", "list", "--run", "r", "--history", "-w", reviewed["ws"])
    assert [(r["item_id"], r["decision"]) for r in rows] == [
        ("K1", "accept"),  # 14:02:30+01:00 is 13:02:30 UTC: listed by decision time
        ("K0", "reject"),
        ("K2", "resegment"),
    ]
    assert {r["reviewer"] for r in rows} == {"A. Reader"}
    assert rows[0]["decided_at"] == "2026-12-01T13:02:30Z"
    assert rows[1]["note"] == "<b>motion</b>" and rows[1]["source"] == "qc-decisions-r.json"


def test_results_exports_carry_the_review_and_can_drop_rejected(reviewed: dict[str, Any]) -> None:
    root, ws = reviewed["root"], reviewed["ws"]
    tidy = _json("results", "-o", str(root / "tidy.csv"), "-w", ws)
    assert tidy["rejected_knees"] == 1
    frame = pd.read_csv(root / "tidy.csv", keep_default_na=False)
    assert set(REVIEW_COLUMNS) <= set(frame.columns)
    by_item = frame.groupby("item_id")["qc_review"].unique().to_dict()
    assert {k: list(v) for k, v in by_item.items()} == {
        "K0": ["reject"],
        "K1": ["accept"],
        "K2": ["resegment"],  # computed before the decision: not redone yet
    }
    assert set(frame.loc[frame.item_id == "K0", "qc_reviewer"]) == {"A. Reader"}
    wide = _json("results", "-o", str(root / "wide.parquet"), "--wide", "--drop-rejected", "-w", ws)
    assert (wide["rows"], wide["dropped_rejected"]) == (2, True)
    table = pd.read_parquet(root / "wide.parquet").set_index("item_id")
    assert sorted(table.index) == ["K1", "K2"]
    assert table["mean"].to_dict() == pytest.approx({k: MEANS[k] for k in ("K1", "K2")})
    assert table.loc["K1", "qc_review"] == "accept"
    assert table.loc["K2", "qc_review"] == "resegment"
    assert table.loc["K1", "qc_reviewed_at"] == "2026-12-01T13:02:30Z"


def test_status_shows_the_reviews(reviewed: dict[str, Any]) -> None:
    status = _json("status", "--run", "r", "-w", reviewed["ws"])
    assert status["qc_review"] == {"accept": 1, "reject": 1, "resegment": 1}
    assert status["qc_rejected"] == [
        {"item_id": "K0", "reviewer": "A. Reader", "reviewed_at": "2026-12-01T14:02:11Z",
         "note": "<b>motion</b>"}
    ]  # fmt: skip


MISTAKES = [  # argv, exit code, the one line's text
    (["qc", "import"], 2, "qc import needs the decisions FILE"),
    (["qc", "import", "{missing}"], 3, "decisions file {missing} not found"),
    (["qc", "import", "{bad}"], 2, "{bad}: decisions[0].decision: Input should be"),
    (["qc", "import", "{other}"], 3, "run 'nope' is not in the catalog's results (stored: r)"),
    (["qc", "import", "{file}", "--history"], 2, "--history applies to qc list"),
    (["qc", "list", "{file}"], 2, "qc list takes no FILE"),
    (["qc", "list", "--run", "x"], 3, "no QC decisions for run 'x'"),
    (["results", "--drop-rejected"], 2, "--drop-rejected applies to an export; add -o FILE"),
]


def test_mistakes_give_one_line_and_exit_code(
    reviewed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = reviewed["root"]
    paths = {"missing": root / "none.json", "bad": root / "bad.json", "other": root / "o.json",
             "file": reviewed["file"]}  # fmt: skip
    data = json.loads(reviewed["file"].read_text())
    paths["bad"].write_text(json.dumps({**data, "decisions": [{**data["decisions"][0],
                                                               "decision": "later"}]}))  # fmt: skip
    paths["other"].write_text(json.dumps({**data, "run": "nope"}))
    for argv, code, message in MISTAKES:
        argv = [a.format(**paths) for a in argv]
        capsys.readouterr()
        assert main([*argv, "-w", reviewed["ws"]]) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert message.format(**paths) in err
    # nothing was written by a refused import
    assert len(_json("qc", "list", "--history", "-w", reviewed["ws"])) == 3


def test_dry_run_counts_the_rejected_knees_exclude_leaves_out(
    reviewed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = reviewed["root"]
    config = root / "exclude.toml"
    config.write_text(
        'name = "r"\n[items]\nlist = "items.csv"\nqc_rejected = "exclude"\n'
        '[[steps]]\nname = "load_array"\n[[steps]]\nname = "array_stats"\n'
    )
    plan = _json("run", "-c", str(config), "--dry-run", "-w", reviewed["ws"])["plan"]
    assert (plan["total"], plan["qc_excluded"], plan["to_run"]) == (2, 1, 1)  # K2's redo
    capsys.readouterr()
    assert main(["run", "-c", str(config), "--dry-run", "-w", reviewed["ws"]]) == 0
    assert "left out: 1 items rejected in QC review" in capsys.readouterr().out
