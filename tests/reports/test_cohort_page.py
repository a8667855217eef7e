"""The cohort page against known truth: planted outliers are found (and nothing else is),
knees are grouped by the catalog's KL grades, QC-flagged knees come first with their reasons,
every knee links to its page and carries the review hooks, and text with markup is escaped.

The results tables here are made with known values (a normal cohort with planted outliers);
the browser tests (tests/browser/) render the page in Chromium.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kneescope.reports.cohort_page import DECISIONS, DECISIONS_FORMAT, knee_cards, split_reasons
from kneescope.reports.distributions import (
    KEY_BIOMARKERS,
    NO_KL,
    find_outliers,
    kl_group,
    robust_z,
)
from kneescope.reports.names import knee_page_path
from kneescope.reports.report import write_cohort_page

MFTC = "we2008_MFTC_ThCtAB_mm"
VOLUME = "medial_tibial_cartilage_volume_mm3"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def results_table(n_subjects: int = 30, seed: int = 1) -> pd.DataFrame:
    """A results table of ``n_subjects`` x 2 knees at V00 and V01: MFTC thickness and medial
    tibial cartilage volume drawn from normal distributions (KL grade g lowers the thickness
    by 0.3 mm per grade), everything QC ok."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for side in ("right", "left"):
            for visit in ("V00", "V01"):
                grade = (s + (side == "left")) % 5
                rows.append(
                    {
                        "item_id": f"series-{s}-{side}-{visit}",
                        "subject": f"90{s:05d}",
                        "visit": visit,
                        "side": side,
                        "series": f"1.2.3.{s}.{side == 'left'}.{visit}",
                        MFTC: 3.6 - 0.3 * grade + rng.normal(0, 0.15),
                        VOLUME: 1800 + rng.normal(0, 90),
                        "qc_ok": True,
                        "qc_reasons": "",
                        "kneescope_version": "0.1.0",
                    }
                )
    return pd.DataFrame(rows)


def kl_of(frame: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """The KL grade the table was drawn with, for every knee but subject 0's (no grade)."""
    out: dict[tuple[str, str, str], float] = {}
    for subject, visit, side in zip(frame["subject"], frame["visit"], frame["side"], strict=True):
        s = int(str(subject)[2:])
        if s == 0:
            continue
        out[(str(subject), str(visit), str(side))] = float((s + (side == "left")) % 5)
    return out


def test_robust_z_and_outliers_find_exactly_the_planted_values() -> None:
    frame = results_table()
    frame.loc[7, MFTC] = 9.5  # ~ +40 SD
    frame.loc[31, VOLUME] = 300.0  # ~ -16 SD
    found = find_outliers(frame, [(MFTC, "thickness"), (VOLUME, "volume")])
    assert [(o.item_id, o.column) for o in found] == [
        (frame.loc[31, "item_id"], VOLUME),  # largest |z| first
        (frame.loc[7, "item_id"], MFTC),
    ]
    assert found[0].robust_z < -3.5 < 3.5 < found[1].robust_z
    assert found[1].value == pytest.approx(9.5)
    assert found[0].median == pytest.approx(float(np.median(frame[VOLUME])))
    # a lower cut-off names more values of the normal bulk too, always the planted ones first
    wider = find_outliers(frame, [(MFTC, "thickness"), (VOLUME, "volume")], threshold=2.0)
    assert len(wider) > 2 and wider[:2] == found
    # the yardstick: z of a normal sample has median 0 and about unit spread
    z = robust_z(np.random.default_rng(0).normal(5.0, 2.0, 4000))
    assert float(np.median(z)) == pytest.approx(0.0, abs=0.05)
    assert float(np.std(z)) == pytest.approx(1.0, abs=0.05)
    # no scale (more than half equal) or too few values: no verdict
    assert np.isnan(robust_z(np.array([1.0, 1.0, 1.0, 1.0, 9.0]))).all()
    assert np.isnan(robust_z(np.array([1.0, 2.0, 50.0]))).all()
    assert kl_group(2.0) == "KL 2" and kl_group(None) == NO_KL and kl_group(float("nan")) == NO_KL


class _Page(HTMLParser):
    """The page's knee cards, images, links and radio inputs, as parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.radios: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.scripts: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "article" and "data-item-id" in a:
            self.cards.append(a)
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "input" and a.get("type") == "radio":
            self.radios.append((a["name"], a["value"]))
        elif tag == "textarea":
            self.notes.append(a["name"])
        elif tag == "script":
            self.scripts.append(a.get("src", "inline"))


def _render(tmp_path: Path, frame: pd.DataFrame, **kw: Any) -> tuple[str, _Page, dict[str, Any]]:
    kl = kl_of(frame)
    pages = {i: f"knees/page-{k}.html" for k, i in enumerate(frame["item_id"])}
    thumbs = {i: f"knees/thumb-{k}.png" for k, i in enumerate(frame["item_id"]) if k % 2 == 0}
    summary = write_cohort_page(
        "visit-run", frame, tmp_path, kl=kl, pages=pages, thumbnails=thumbs, trial=[], **kw
    )
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(html)
    return html, parsed, summary


def test_cohort_page_flags_first_links_knees_and_escapes_markup(tmp_path: Path) -> None:
    frame = results_table(n_subjects=12)
    frame.loc[5, MFTC] = 9.0  # an outlier
    evil = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    frame["qc_side_mismatch"] = False
    frame["qc_missing_patella"] = False
    frame["qc_not_labelled_femur"] = False  # informative: never listed as a reason
    for k in (3, 10):
        frame.loc[k, ["qc_ok", "qc_side_mismatch", "qc_missing_patella"]] = [False, True, True]
        frame.loc[k, "qc_reasons"] = f"side_mismatch: {evil}; missing_patella: no patella label"
    frame.loc[3, "qc_not_labelled_femur"] = True
    frame["qc_review"] = ""
    frame["qc_reviewer"] = ""
    frame["qc_reviewed_at"] = ""
    frame["qc_review_note"] = ""
    frame.loc[10, ["qc_review", "qc_reviewer", "qc_reviewed_at", "qc_review_note"]] = [
        "reject",
        "A. <b>Reader</b>",
        "2026-12-01T14:02:11Z",
        "leaks <i>here</i>",
    ]
    html, page, summary = _render(tmp_path, frame)

    # every knee once, QC-flagged ones first, each with the review hooks
    items = [c["data-item-id"] for c in page.cards]
    assert sorted(items) == sorted(frame["item_id"])
    assert set(items[:2]) == {frame.loc[3, "item_id"], frame.loc[10, "item_id"]}
    assert [c["data-flagged"] for c in page.cards[:3]] == ["true", "true", "false"]
    assert summary["flagged"] == 2
    for card in page.cards:
        row = frame.set_index("item_id").loc[card["data-item-id"]]
        assert (card["data-subject"], card["data-visit"], card["data-side"]) == (
            row["subject"],
            row["visit"],
            row["side"],
        )
        assert card["data-series"] == row["series"]
    assert set(page.radios) == {(f"decision-{i}", d) for i in items for d in DECISIONS}
    assert sorted(page.notes) == sorted(f"note-{i}" for i in items)
    assert {"reviewer", "export-decisions", "review-filter"} <= set(page.ids)
    assert page.scripts == ["static/review.js"]  # the only script: no inline code at all
    assert f'data-decisions-format="{DECISIONS_FORMAT}"' in html

    # the markup in a QC reason is shown as text, never as markup
    assert "<script>window" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    assert html.count("no patella label") == 2  # in each flagged card's explanation
    # the raised flags in words on the two flagged cards, nothing on the others
    assert html.count(">side mismatch</li>") == 2 and html.count(">missing patella</li>") == 2
    assert "not labelled femur" not in html and html.count('class="qc-reasons"') == 2
    # the catalog's review the row carries is shown (escaped) on that knee's card only
    shown = "reviewed: reject by A. &lt;b&gt;Reader&lt;/b&gt; at 2026-12-01T14:02:11Z (leaks &lt;i"
    assert html.count(shown) == 1

    # the outlier is listed with a link to its knee page and drawn in the figures
    assert summary["outliers"] == 1
    outlier_page = f"knees/page-{5}.html"
    assert page.links.count(outlier_page) == 2  # the card and the outlier table
    # figures: one per key biomarker the table has, each a real PNG the page shows
    assert summary["distributions"] == 2
    for column in (MFTC, VOLUME):
        png = tmp_path / "cohort" / f"dist_{column}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
        assert f"cohort/dist_{column}.png" in page.images
    # thumbnails where the knee page gave one, none invented
    assert len([s for s in page.images if s.startswith("knees/thumb-")]) == (len(frame) + 1) // 2
    # subject 0 has no KL grade in the catalog: noted per card
    assert html.count(f"{NO_KL} ·") == 4


def test_knee_cards_group_by_catalog_kl_and_default_page_paths() -> None:
    frame = results_table(n_subjects=6)
    kl = kl_of(frame)
    cards = knee_cards(frame, kl, pages={}, thumbnails={})
    for card in cards:
        expected = kl.get((card.subject, card.visit, card.side))
        assert card.kl == (NO_KL if expected is None else f"KL {int(expected)}")
        assert card.page == knee_page_path(card.subject, card.side, card.visit)
        assert card.thumbnail is None and card.qc_ok
    assert split_reasons("a: x; b: y z") == ("a: x", "b: y z")
    assert split_reasons(float("nan")) == ()  # type: ignore[arg-type]


def test_key_biomarkers_are_result_columns_with_units() -> None:
    """Every curated biomarker is a column the measure step declares, its unit in its name."""
    from kneescope.capabilities.biomarkers.results import MEASURE_RESULTS

    declared = {c.name for c in MEASURE_RESULTS}
    for column, label in KEY_BIOMARKERS:
        assert column in declared, column
        assert re.search(r"_(mm|mm3|pct)$", column) and "(" in label


def test_page_decisions_match_what_qc_import_reads() -> None:
    """The format, version and choices the page's export writes are the importer's."""
    from kneescope.catalog import qc_reviews
    from kneescope.reports.cohort_page import DECISIONS_VERSION

    assert DECISIONS_FORMAT == qc_reviews.FORMAT
    assert DECISIONS_VERSION == qc_reviews.FORMAT_VERSION
    assert tuple(DECISIONS) == tuple(qc_reviews.DECISIONS)


def test_outlier_table_lists_the_farthest_and_counts_the_rest(tmp_path: Path) -> None:
    from kneescope.reports.cohort_page import MAX_OUTLIER_ROWS

    frame = results_table(n_subjects=40)  # 160 knee-visits
    far = MAX_OUTLIER_ROWS + 7
    frame.loc[: far - 1, MFTC] = 20.0 + np.arange(far)  # each far beyond the bulk
    html, _, summary = _render(tmp_path, frame)
    assert summary["outliers"] >= far  # the planted ones (and maybe a value of the bulk)
    rows = html.split('<table class="outliers">')[1].split("</table>")[0].count("<tr>") - 1
    assert rows == MAX_OUTLIER_ROWS
    rest = summary["outliers"] - MAX_OUTLIER_ROWS
    assert f"{rest} more outlying values are not listed (the {MAX_OUTLIER_ROWS} farthest" in html
    assert f"knees/page-{far - 1}.html" in html.split("</table>")[1]  # the farthest is listed


def test_trial_figures_come_from_the_runs_cohort_steps_and_a_trial_folder(
    tmp_path: Path,
) -> None:
    from kneescope.errors import InputError
    from kneescope.reports.report import check_output, trial_figure_sources

    run_dir = tmp_path / "run"
    (run_dir / "cohort" / "trial").mkdir(parents=True)
    (run_dir / "cohort" / "trial" / "forest_mt_thickness_mm.png").write_bytes(PNG_MAGIC)
    (run_dir / "cohort" / "trial" / "trial_results.csv").write_text("not a figure")
    other = tmp_path / "trial_out"
    other.mkdir()
    (other / "trajectories_cartilage_mm.png").write_bytes(PNG_MAGIC)
    found = trial_figure_sources(run_dir, other)
    assert [(title, p.name) for title, p in found] == [
        ("trial: forest of mt_thickness_mm", "forest_mt_thickness_mm.png"),
        ("trial: trajectories of cartilage_mm", "trajectories_cartilage_mm.png"),
    ]
    assert trial_figure_sources(tmp_path / "no-cohort-steps", None) == []
    # a `kneescope trial` of this run in the workspace is found by its summary's source
    ws = tmp_path / "ws"
    for name, source in (("mine", "run visits"), ("theirs", "run other"), ("csv", "t.csv")):
        (ws / "trials" / name).mkdir(parents=True)
        (ws / "trials" / name / "trial_summary.json").write_text(json.dumps({"source": source}))
        (ws / "trials" / name / "forest_a_mm.png").write_bytes(PNG_MAGIC)
    (ws / "runs" / "visits").mkdir(parents=True)
    found = trial_figure_sources(ws / "runs" / "visits", None)
    assert [(title, p.parent.name) for title, p in found] == [
        ("trial mine: forest of a_mm", "mine")
    ]
    # given again with --trial: listed once
    assert trial_figure_sources(ws / "runs" / "visits", ws / "trials" / "mine") == found
    with pytest.raises(InputError, match="holds no figures"):
        trial_figure_sources(run_dir, run_dir / "cohort")  # a folder without *.png itself
    # an empty folder or none is fine for a report; a report folder needs --overwrite
    check_output(tmp_path / "new", overwrite=False)
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", overwrite=False)
    (tmp_path / "empty" / "index.html").write_text("an earlier report")
    with pytest.raises(InputError, match="--overwrite"):
        check_output(tmp_path / "empty", overwrite=False)
    check_output(tmp_path / "empty", overwrite=True)


def test_review_key_separates_runs_of_one_name_and_keeps_a_rewritten_report(
    tmp_path: Path,
) -> None:
    """The browser keeps decisions per run and set of knees: the same run written again gets
    the same key; another workspace's run of the same name (other series) another."""
    from kneescope.reports.cohort_page import CohortPage

    frame = results_table(n_subjects=3)
    cards = knee_cards(frame, {}, {}, {})
    page = CohortPage("demo", "0.1.0", "now", tuple(cards))
    again = CohortPage("demo", "0.1.0", "later", tuple(reversed(cards)))
    other = frame.assign(series=frame["series"] + ".9")
    elsewhere = CohortPage("demo", "0.1.0", "now", tuple(knee_cards(other, {}, {}, {})))
    assert page.review_key == again.review_key != elsewhere.review_key
    assert page.review_key.startswith("demo:")
    html, _, _ = _render(tmp_path, frame)
    assert 'data-review-key="visit-run:' in html
