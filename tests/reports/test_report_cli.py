"""``kneescope report`` end to end on a small finished run (the session fixture ``report_run``:
4 knee-visits of toy knees with images, one QC-flagged, one hostile series description): a
cohort page and a page per knee, every link and image resolving on disk, the flagged knee
first, the review hooks, nothing unescaped; bad input gives one line and leaves nothing
half-written.

The browser tests (tests/browser/) load the same pages in headless Chromium.
"""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kneescope.cli.app import main

MAX_KNEE_PAGE_BYTES = 2_000_000
"""The issue's target: a knee page with its images under 2 MB."""


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``kneescope ARGV``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _strict(text: str) -> Any:
    def reject(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=reject)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.cards: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "article" and "data-item-id" in a:
            self.cards.append(a)
        for key in ("src", "href"):
            ref = a.get(key, "")
            if ref and not ref.startswith(("#", "http:", "https:", "mailto:")):
                self.refs.append(ref)


def _parse(path: Path) -> _Links:
    parsed = _Links()
    parsed.feed(path.read_text(encoding="utf-8"))
    return parsed


def _trial_figure(folder: Path) -> Path:
    """A ``kneescope trial``-like output folder with one figure (a real PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir()
    fig = Figure(figsize=(2, 2), dpi=50)
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 12, 24], [0.0, -0.1, -0.2])
    path = folder / "forest_mt_thickness_mm.png"
    fig.savefig(path)
    return path


@pytest.fixture(scope="module")
def report(report_run: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report of ``report_run`` written once for this module into the default folder of
    a copy of its workspace, with a trial folder's figure (one process: the slow test below
    draws with 2 worker processes)."""
    root = tmp_path_factory.mktemp("report")
    ws = root / "ws"
    shutil.copytree(report_run.workspace, ws)
    figure = _trial_figure(root / "trial")
    code, stdout, stderr = run_cli(
        "report", "--run", report_run.name, "-w", str(ws), "--trial", str(figure.parent),
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    out = ws / "reports" / report_run.name
    return {"ws": ws, "out": out, "payload": _strict(stdout), "figure": figure}


def test_report_writes_linked_cohort_and_knee_pages(
    report_run: Any, report: dict[str, Any]
) -> None:
    out, payload = report["out"], report["payload"]
    truth = report_run.knees
    items = set(truth)
    assert payload["knees"] == len(items) == 4
    assert payload["flagged"] == len(report_run.flagged_items) == 1
    assert payload["index"] == str(out / "index.html")  # the default folder WS/reports/RUN
    assert 0 < payload["largest_knee_page_bytes"] < MAX_KNEE_PAGE_BYTES

    index = _parse(out / "index.html")
    assert {c["data-item-id"] for c in index.cards} == items
    first = index.cards[0]  # the QC-flagged knee (its lateral meniscus removed) comes first
    assert (first["data-subject"], first["data-side"], first["data-visit"]) == (
        "9000001",
        "left",
        "V00",
    )
    assert [c["data-item-id"] for c in index.cards[:1]] == report_run.flagged_items
    assert [c["data-flagged"] for c in index.cards] == ["true", "false", "false", "false"]
    # each knee's KL grade is the one the catalog holds for it
    assert {c["data-item-id"]: c["data-kl"] for c in index.cards} == {
        i: f"KL {k.kl}" for i, k in truth.items()
    }

    # every page, figure, style sheet and script a page names exists in the report folder
    pages = [out / "index.html", *sorted((out / "knees").glob("*.html"))]
    assert len(pages) == 1 + len(items)
    for page in pages:
        for ref in _parse(page).refs:
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.is_file(), f"{page.name} -> {ref}"
            assert out.resolve() in target.parents  # nothing outside the report folder
    assert (out / "static" / "review.js").is_file()
    # the hostile series description never appears as markup on any page
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "<script>window.__xss" not in html and "<img src=x onerror" not in html

    # the trial folder's figure, copied in and shown
    assert payload["trial_figures"] == 1
    assert "trial: forest of mt_thickness_mm" in (out / "index.html").read_text(encoding="utf-8")
    copied = sorted((out / "cohort" / "trial").glob("*.png"))
    assert [p.read_bytes() for p in copied] == [report["figure"].read_bytes()]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporaries


def test_report_refuses_to_replace_without_overwrite(
    report_run: Any, report: dict[str, Any]
) -> None:
    index = report["out"] / "index.html"
    before = index.read_bytes()
    code, stdout, stderr = run_cli("report", "--run", report_run.name, "-w", str(report["ws"]))
    assert code == 2 and stdout == "" and stderr.count("\n") == 1 and "--overwrite" in stderr
    assert index.read_bytes() == before


@pytest.mark.slow
def test_report_overwrite_replaces_the_folder_and_shows_catalog_reviews(
    report_run: Any, tmp_path: Path
) -> None:
    """With --overwrite an earlier report is replaced whole (a file only the old one had is
    gone: the folder is renamed in, not written over), and a decision imported into the
    catalog since the run is shown on the knee's card (the catalog's state now); the knee
    pages drawn by 2 worker processes."""
    ws = tmp_path / "ws"  # a copy: the import writes into its catalog
    shutil.copytree(report_run.workspace, ws)
    item = report_run.flagged_items[0]
    knee = report_run.knees[item]
    table = pd.read_parquet(report_run.run_dir / "results.parquet").set_index("item_id")
    series = str(table.loc[item, "series"])
    decisions = {
        "format": "kneescope-qc-decisions", "version": 1, "run": report_run.name,
        "kneescope_version": "0.1.0", "reviewer": "R. <i>Viewer</i>",
        "exported_at": "2026-12-01T14:03:00Z",
        "decisions": [{
            "item_id": item, "subject": knee.subject, "visit": knee.visit, "side": knee.side,
            "series": series, "decision": "reject", "note": "leaks",
            "decided_at": "2026-12-01T14:02:11Z",
        }],
    }  # fmt: skip
    (tmp_path / "d.json").write_text(json.dumps(decisions))
    out = tmp_path / "rep"
    out.mkdir()
    (out / "index.html").write_text("old report")
    (out / "stale.png").write_bytes(b"old")
    code, _, stderr = run_cli("qc", "import", str(tmp_path / "d.json"), "-w", str(ws))
    assert code == 0, stderr
    code, _, stderr = run_cli(
        "report", "--run", report_run.name, "-w", str(ws), "-o", str(out), "--overwrite", "-j", "2"
    )
    assert code == 0, stderr
    assert not (out / "stale.png").exists()
    html = (out / "index.html").read_text(encoding="utf-8")
    assert (
        html.count("reviewed: reject by R. &lt;i&gt;Viewer&lt;/i&gt; at 2026-12-01T14:02:11") == 1
    )


def test_report_bad_input_is_one_line(report_run: Any, tmp_path: Path) -> None:
    ws = str(report_run.workspace)
    run = ("--run", report_run.name, "-w", ws)
    cases = [
        (("--run", "../x", "-w", ws), 2, "not a run name"),
        (("--run", "no-such-run", "-w", ws, "-o", str(tmp_path / "a")), 3, "not found"),
        ((*run, "-o", str(tmp_path / "f.txt")), 2, "is a file"),
        ((*run, "-o", str(tmp_path / "other")), 2, "other files"),
        ((*run, "-o", str(tmp_path / "b"), "--trial", str(tmp_path / "nothing")), 2, "--trial"),
        ((*run, "-o", str(tmp_path / "c"), "--trial", str(tmp_path / "empty")), 2, "no figures"),
        ((*run, "-o", str(tmp_path / "d"), "-j", "0"), 2, "--jobs"),
    ]
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    (tmp_path / "empty").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, expected, words in cases:
        code, stdout, stderr = run_cli("report", *argv)
        assert code == expected, (argv, stderr)
        assert stdout == "" and stderr.count("\n") == 1 and words in stderr, (argv, stderr)
        assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing (half-)written
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_cards_take_the_catalogs_current_review(report_run: Any, tmp_path: Path) -> None:
    """The review columns come from the catalog now (decisions imported after the run), and
    a knee the run redid after its re-segment decision stays ``resegmented``."""
    from kneescope.reports.report import with_reviews

    ws = tmp_path / "ws"  # a copy: the import writes into its catalog
    shutil.copytree(report_run.workspace, ws)
    table = pd.read_parquet(report_run.run_dir / "results.parquet")
    first, second, third = (table.iloc[k] for k in range(3))
    when = "2026-12-01T14:02:11Z"
    decisions = [
        {**{k: str(row[k]) for k in ("item_id", "subject", "visit", "side", "series")},
         "decision": decision, "note": "", "decided_at": when}
        for row, decision in ((first, "resegment"), (second, "resegment"), (third, "reject"))
    ]  # fmt: skip
    document = {
        "format": "kneescope-qc-decisions", "version": 1, "run": report_run.name,
        "kneescope_version": "0.1.0", "reviewer": "A. Reader", "exported_at": when,
        "decisions": decisions,
    }  # fmt: skip
    (tmp_path / "d.json").write_text(json.dumps(document))
    code, _, stderr = run_cli("qc", "import", str(tmp_path / "d.json"), "-w", str(ws))
    assert code == 0, stderr
    # as the run wrote it: the first knee redone after this decision, the second after an
    # older one
    table = table.assign(qc_review="", qc_reviewed_at="")
    table.loc[0, ["qc_review", "qc_reviewed_at"]] = ["resegmented", when]
    table.loc[1, ["qc_review", "qc_reviewed_at"]] = ["resegmented", "2026-11-01T09:00:00Z"]
    out = with_reviews(table, ws, None)
    assert list(out["qc_review"]) == ["resegmented", "resegment", "reject"] + [""] * (
        len(table) - 3
    )
    assert set(out["qc_reviewer"][:3]) == {"A. Reader"} and set(out["qc_reviewer"][3:]) <= {""}
    assert with_reviews(table, report_run.workspace, None) is table  # no reviews: unchanged
