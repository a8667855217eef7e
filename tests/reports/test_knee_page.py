"""Knee pages of a real finished run (the ``report_run`` fixture: toy knees with known
cartilage thickness, KL grades, one knee with its lateral meniscus erased, one hostile series
description) and the pieces they are drawn with."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

import numpy as np
import pytest
from report_run_builder import HOSTILE_DESCRIPTION, ReportRun

from kneescope.biomarkers.maps import load_maps
from kneescope.errors import NotFoundError
from kneescope.reports.knee_page import KneePage, write_knee_pages
from kneescope.reports.overlays import RasPair, palette_for, to_ras_axes, view_rgb
from kneescope.reports.qc_text import flag_sentence
from kneescope.reports.run_data import RunData, compute_maps, load_run, read_labels

MAX_PAGE_BYTES = 2 * 1024 * 1024  # the target: a knee page < 2 MB with its images
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def loaded(report_run: ReportRun) -> RunData:
    return load_run(report_run.workspace, report_run.name)


@pytest.fixture(scope="module")
def pages(
    loaded: RunData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, KneePage]]:
    """Every knee page of the run, written once for this module (in this process)."""
    folder = tmp_path_factory.mktemp("knee_pages")
    written = write_knee_pages(loaded, folder, workers=1)
    return folder, {p.item_id: p for p in written}


def _page_text(folder: Path, page: KneePage) -> str:
    return (folder / page.page).read_text(encoding="utf-8")


def _trajectory_cells(text: str, column: str) -> list[float]:
    """The numbers in the trajectory table's row of ``column``."""
    table = text[text.index('class="values trajectory-table"') :]
    row = re.search(rf'<tr data-column="{re.escape(column)}">(.*?)</tr>', table, re.S)
    assert row is not None, column
    return [float(x.replace(",", "")) for x in re.findall(r'<td class="num">([^<]+)</td>', row[1])]


def test_load_run_reads_every_knee_with_catalog_facts(
    report_run: ReportRun, loaded: RunData
) -> None:
    assert {k.item_id for k in loaded.knees} == set(report_run.knees)
    for knee in loaded.knees:
        truth = report_run.knees[knee.item_id]
        assert (knee.subject, knee.side, knee.visit) == (truth.subject, truth.side, truth.visit)
        assert knee.kl_grade == truth.kl  # XRKL from the catalog's clinical table
        assert knee.qc_ok is not truth.flagged
        assert knee.maps_path is not None and Path(knee.maps_path).is_file()
        assert knee.description == truth.description  # raw: the templates escape it
        assert knee.page == f"knees/{truth.subject}_{truth.side}_{truth.visit}.html"
    flagged = next(k for k in loaded.knees if not k.qc_ok)
    assert "missing_lateral_meniscus" in flagged.qc_flags
    # two of four knees are KL 0-1 but one of them failed QC: too few for a KL 0-1 reference
    assert loaded.reference.n == 3 and "passed QC" in loaded.reference.source
    assert loaded.kneescope_version
    with pytest.raises(NotFoundError, match="not found"):
        load_run(report_run.workspace, "no-such-run")


def test_every_page_loads_its_images_and_stays_small(
    pages: tuple[Path, dict[str, KneePage]], report_run: ReportRun
) -> None:
    folder, written = pages
    assert set(written) == set(report_run.knees)
    assert (folder / "static" / "report.css").is_file()
    for page in written.values():
        text = _page_text(folder, page)
        sources = re.findall(r'<img src="([^"]+)"', text)
        assert len(sources) >= 5  # 4 plate overlays + the thickness maps (+ trajectories)
        for src in sources:
            image = (folder / page.page).parent / src
            assert image.read_bytes()[:8] == PNG_MAGIC, src
        assert (folder / page.thumbnail).read_bytes()[:8] == PNG_MAGIC
        assert 'href="../static/report.css"' in text and 'href="../index.html"' in text
        assert page.bytes < MAX_PAGE_BYTES
        assert not page.problems


def test_hostile_header_string_is_text_not_markup(
    pages: tuple[Path, dict[str, KneePage]], report_run: ReportRun
) -> None:
    folder, written = pages
    text = _page_text(folder, written[report_run.hostile_item])
    assert html.escape(HOSTILE_DESCRIPTION, quote=False) in text.replace("&#34;", '"')
    assert "<script" not in text.lower() and "onerror=" not in text.replace("onerror=&#34;", "")


def test_qc_flags_are_explained_in_words(
    pages: tuple[Path, dict[str, KneePage]], report_run: ReportRun
) -> None:
    folder, written = pages
    for item_id, truth in report_run.knees.items():
        page = written[item_id]
        text = _page_text(folder, page)
        if truth.flagged:
            assert not page.qc_ok and "missing_lateral_meniscus" in page.flags
            sentence = flag_sentence("missing_lateral_meniscus")
            assert html.escape(sentence, quote=False).replace("'", "&#39;") in text
            assert len(page.flag_texts) == len(page.flags)
            assert 'data-flag="missing_lateral_meniscus"' in text
        else:
            assert page.qc_ok and not page.flags
            assert "No QC flag raised" in text


def test_trajectory_follows_the_knee_over_visits(
    pages: tuple[Path, dict[str, KneePage]], report_run: ReportRun
) -> None:
    folder, written = pages
    by_visit = {
        t.visit: i
        for i, t in report_run.knees.items()
        if (t.subject, t.side) == ("9000001", "right")
    }
    text = _page_text(folder, written[by_visit["V00"]])
    assert 'href="9000001_right_V01.html"' in text  # the other visit, linked
    assert (folder / "knees" / "9000001_right_V01.html").is_file()
    assert 'src="9000001_right_V00/trajectories.png"' in text
    femoral = _trajectory_cells(text, "femoral_cartilage_thickness_mean_mm")
    truth = [report_run.knees[by_visit[v]].spec.femoral_thickness_mm for v in ("V00", "V01")]
    assert femoral == pytest.approx(truth, rel=0.1)  # constant-thickness toy cartilage
    medial = _trajectory_cells(text, "medial_tibial_cartilage_thickness_mean_mm")
    assert medial[1] < medial[0] - 0.3  # the tibial plates thinned by 0.5 mm
    single = _page_text(
        folder, written[next(i for i, t in report_run.knees.items() if t.subject == "9000002")]
    )
    assert "Only this visit of this knee is in the run." in single


def test_biomarker_table_values_and_reference_ranges(
    pages: tuple[Path, dict[str, KneePage]], loaded: RunData
) -> None:
    folder, written = pages
    thick = max(loaded.knees, key=lambda k: k.values["femoral_cartilage_thickness_mean_mm"])
    text = _page_text(folder, written[thick.item_id])
    row = re.search(r'<tr data-column="femoral_cartilage_thickness_mean_mm">(.*?)</tr>', text, re.S)
    assert row is not None
    lo, hi = loaded.reference.ranges["femoral_cartilage_thickness_mean_mm"]
    assert f"{thick.values['femoral_cartilage_thickness_mean_mm']:.3g}" in row[1]
    assert f"{lo:.3g} – {hi:.3g}" in row[1]
    assert ("▲" in row[1]) is (thick.values["femoral_cartilage_thickness_mean_mm"] > hi)
    assert loaded.reference.source in text


def test_missing_image_and_maps_still_give_a_page_saying_why(
    loaded: RunData, tmp_path: Path
) -> None:
    kept = loaded.knees[0]
    knee = dataclasses.replace(
        kept, image_path=str(tmp_path / "gone.nii.gz"), store_key=None, maps_path=None
    )
    # a run that kept no maps: measured again from the label map, the same as the run's
    again = compute_maps(knee, read_labels(knee), loaded.measure_options)
    assert kept.maps_path is not None
    for plate, stored in load_maps(Path(kept.maps_path)).items():
        assert np.array_equal(again[plate].thickness_mm, stored.thickness_mm, equal_nan=True)
    run = dataclasses.replace(loaded, knees=(knee,))
    (page,) = write_knee_pages(run, tmp_path / "report")
    assert page.problems and "gone.nii.gz" in page.problems[0]
    text = (tmp_path / "report" / page.page).read_text(encoding="utf-8")
    assert "shown on black" in text and "overlay_femoral.png" in text
    assert "measured again from the label map" in text
    assert (tmp_path / "report" / "knees" / knee.stem / "thickness.png").is_file()


def test_to_ras_axes_undoes_any_axis_order_and_flip() -> None:
    rng = np.random.default_rng(0)
    ras = rng.integers(0, 9, size=(5, 6, 7)).astype(np.uint8)
    spacing = np.array([0.5, 0.7, 0.9])
    # store it as (S, R, A) with S and A flipped: the affine says where each axis points
    stored = np.flip(np.flip(np.transpose(ras, (2, 0, 1)), axis=0), axis=2)
    affine = np.zeros((4, 4))
    affine[2, 0], affine[0, 1], affine[1, 2] = -spacing[2], spacing[0], -spacing[1]
    affine[3, 3] = 1.0
    back, sp = to_ras_axes(stored, affine)
    assert np.array_equal(back, ras)
    assert sp == pytest.approx(tuple(spacing))


def test_views_follow_the_radiological_convention() -> None:
    # RAS+ axes: index 0 grows towards the patient's right, 1 anterior, 2 superior
    labels = np.zeros((20, 30, 40), np.uint8)
    labels[:, 25:, :] = 2  # an anterior slab
    labels[:, :, 35:] = 1  # a superior slab
    labels[:3, :, :] = 3  # a slab on the patient's left (low R index)
    pair = RasPair(np.zeros(labels.shape, np.float32), labels, (1.0, 1.0, 1.0))
    palette = palette_for({1: "femur", 2: "femoral_cartilage", 3: "tibia"})
    centre = (10, 15, 20)

    def panel(view: str) -> np.ndarray:
        return view_rgb(pair, view, centre, pixel_mm=1.0, window=(0, 1), palette=palette)

    sag = panel("sagittal")  # rows: superior -> inferior; columns: anterior -> posterior
    assert sag.shape[:2] == (40, 30)
    assert sag[20, 0].any() and not sag[20, -1].any()  # anterior slab on the left
    assert sag[0, 15].any() and not sag[-1, 15].any()  # superior slab at the top
    cor = panel("coronal")  # rows: superior -> inferior; columns: patient's right -> left
    assert cor.shape[:2] == (40, 20)
    assert cor[20, -1].any() and not cor[20, 0].any()  # the patient's left on the right
    axial = panel("axial")  # rows: anterior -> posterior; columns: patient's right -> left
    assert axial.shape[:2] == (30, 20)
    assert axial[0, 10].any() and not axial[-1, 10].any()
    assert axial[15, -1].any() and not axial[15, 0].any()


def test_every_measure_qc_flag_has_its_own_words() -> None:
    from kneescope.capabilities.biomarkers.results import MEASURE_RESULTS

    flags = [c.name[3:] for c in MEASURE_RESULTS if c.name.startswith("qc_")]
    flags = [f for f in flags if f not in ("ok", "reasons")]
    assert len(flags) > 30
    for flag in flags:
        sentence = flag_sentence(flag, "why")
        assert not sentence.startswith("QC flag '"), flag  # a specific explanation
        assert sentence.endswith("Measured: why.")
    assert flag_sentence("made_up_flag").startswith("QC flag 'made up flag'")


def test_qc_review_decision_is_shown_escaped(loaded: RunData, tmp_path: Path) -> None:
    review = {
        "review": "reject",
        "reviewer": "A. Reader",
        "reviewed_at": "2026-12-01T14:02:11Z",
        "review_note": "<b>leaks</b> into fluid",
    }
    knee = dataclasses.replace(loaded.knees[0], review=review)
    (page,) = write_knee_pages(dataclasses.replace(loaded, knees=(knee,)), tmp_path)
    text = (tmp_path / page.page).read_text(encoding="utf-8")
    assert "<strong>reject</strong> by A. Reader at 2026-12-01T14:02:11Z" in text
    assert "&lt;b&gt;leaks&lt;/b&gt; into fluid" in text and "<b>leaks" not in text


def test_oa_scores_of_a_scored_run_are_on_the_page(
    report_run: ReportRun, loaded: RunData, tmp_path: Path
) -> None:
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(report_run.workspace, ws)
    folder = ws / "runs" / report_run.name / "cohort" / "oa_score"
    folder.mkdir(parents=True)
    rows = ["subject,visit,side,oa_score,oa_probability_kl2"]
    truth = {}
    for n, k in enumerate(report_run.knees.values()):
        truth[(k.subject, k.visit, k.side)] = (0.5 + n, 0.1 * (n + 1))
        rows.append(f"{k.subject},{k.visit},{k.side},{0.5 + n},{0.1 * (n + 1)}")
    (folder / "oa_scores.csv").write_text("\n".join(rows) + "\n")
    scored = load_run(ws, report_run.name)
    for knee in scored.knees:
        score, p = truth[(knee.subject, knee.visit, knee.side)]
        assert knee.scores == {"oa_score": score, "oa_probability_kl2": pytest.approx(p)}
    assert all(not k.scores for k in loaded.knees)  # the unscored run has none
    (page,) = write_knee_pages(dataclasses.replace(scored, knees=scored.knees[:1]), tmp_path / "r")
    text = (tmp_path / "r" / page.page).read_text(encoding="utf-8")
    score, p = truth[(scored.knees[0].subject, scored.knees[0].visit, scored.knees[0].side)]
    assert f"<strong>{score:.3g}</strong>" in text and f"<strong>{p:.3g}</strong>" in text


def test_two_series_of_one_knee_visit_get_two_pages(loaded: RunData) -> None:
    from kneescope.reports.run_data import _unique_pages

    first = loaded.knees[0]
    second = dataclasses.replace(first, item_id="series-99")
    pages = _unique_pages([second, first])
    assert [k.page for k in pages] == [first.page, f"knees/{first.stem}_series-99.html"]
    assert pages[1].thumbnail == f"knees/{first.stem}_series-99/thumb.png"
    assert pages[1].stem == f"{first.stem}_series-99"


def test_thumbnail_cuts_the_plate_a_flag_concerns() -> None:
    from kneescope.reports.knee_page import thumbnail_plate

    assert thumbnail_plate(()) == "medial_tibial"
    assert thumbnail_plate(("missing_lateral_meniscus", "unmeasured_values")) == "lateral_tibial"
    assert thumbnail_plate(("unmeasured_values", "cartilage_off_bone_patellar")) == "patellar"
    assert thumbnail_plate(("extra_components_femoral_cartilage",)) == "femoral"


def test_a_knee_without_segmentation_gets_a_page_and_a_placeholder(
    loaded: RunData, tmp_path: Path
) -> None:
    knee = dataclasses.replace(loaded.knees[0], labels_path=None, maps_path=None)
    (page,) = write_knee_pages(dataclasses.replace(loaded, knees=(knee,)), tmp_path)
    assert any("no label map" in p for p in page.problems)
    assert (tmp_path / page.thumbnail).read_bytes()[:8] == PNG_MAGIC  # the grid still loads
    text = (tmp_path / page.page).read_text(encoding="utf-8")
    assert "No overlay:" in text and "did not keep thickness maps" in text
    assert "<img" not in text  # nothing to show, nothing broken
