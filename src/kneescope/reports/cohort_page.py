"""The cohort page of a report (``index.html``): a run's summary, the distributions of key
biomarkers by KL grade and by visit, the outliers linked to their knee pages, a thumbnail grid
of every knee (QC-flagged first) with the QC review controls, and the trial's figures.

The review controls are plain JavaScript (``static/review.js``, no framework, works from
``file://``): a reviewer marks knees accept / reject / re-segment with a note; decisions persist
in the browser's localStorage per run and "Export decisions" downloads them as
``qc-decisions-<run>.json`` (format :data:`DECISIONS_FORMAT`, version
:data:`DECISIONS_VERSION`), which ``kneescope qc import`` writes into the catalog.

Every text on the page goes through Jinja2's autoescaping: a header string holding markup is
shown as text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kneescope.reports.distributions import NO_KL, OUTLIER_THRESHOLD, Outlier, kl_group

if TYPE_CHECKING:
    import pandas as pd

DECISIONS_FORMAT = "kneescope-qc-decisions"
"""The ``format`` field of an exported decisions file."""

DECISIONS_VERSION = 1
"""The ``version`` field of an exported decisions file."""

DECISIONS = ("accept", "reject", "resegment")

MAX_OUTLIER_ROWS = 50
"""The outlier table lists the farthest this many values (a large or diseased cohort can have
hundreds); the figures and the knee cards still show every one."""
"""A reviewer's choices for a knee, as written in the decisions file."""


@dataclass(frozen=True)
class KneeCard:
    """One knee (and visit) in the grid.

    Attributes:
        item_id: the run item.
        subject, visit, side, series: as in the results table (pseudonymous subject code).
        qc_ok: False when any QC flag is raised.
        qc_reasons: the raised QC flags in a few words each (``"missing lateral
            meniscus"``); flags that do not fail QC by themselves (``not_labelled_*``) are left
            out.
        qc_explanations: a sentence per entry of ``qc_reasons`` (what it means, what to do,
            the measure step's reason), shown when the pointer rests on it.
        kl: the reader's KL grade group (``"KL 2"``, ``"no KL"``).
        page: the knee page, relative to the report folder.
        thumbnail: its thumbnail PNG relative to the report folder, or None.
        outliers: how many key biomarkers of this knee are outliers.
        review: the catalog's reviewer decision the run's row carries (``kneescope qc
            import``), in words (``"reject by A. Reader at 2026-12-01T14:02:11Z (leaks)"``);
            "" when not reviewed.
    """

    item_id: str
    subject: str
    visit: str
    side: str
    series: str
    qc_ok: bool
    qc_reasons: tuple[str, ...]
    kl: str
    page: str
    thumbnail: str | None
    outliers: int = 0
    review: str = ""
    qc_explanations: tuple[str, ...] = ()


@dataclass(frozen=True)
class PageFigure:
    """A figure on the page: its title, its PNG relative to the report folder, a caption."""

    title: str
    src: str
    caption: str = ""


@dataclass(frozen=True)
class OutlierRow:
    """An outlier as the page lists it (:class:`~kneescope.reports.distributions.Outlier`
    plus the knee's names and page)."""

    outlier: Outlier
    card: KneeCard


@dataclass(frozen=True)
class CohortPage:
    """Everything the cohort page shows.

    Attributes:
        run: the run's name.
        kneescope_version: the version that wrote the report (and ``results_versions``: the
            versions that wrote the run's rows).
        generated_at: ISO-8601 UTC time of the report.
        cards: the knees, QC-flagged first.
        distributions: one figure per key biomarker.
        outliers: outlying values, largest first, with their knees.
        trial_figures: figures of a trial analysed on the run (may be empty).
        kl_source: where the KL grades came from, in words.
        notes: sentences about what the page lacks (no KL grades, no knee pages).
        outlier_threshold: in robust SDs.
        max_outlier_rows: the outlier table lists at most this many (the farthest).
    """

    run: str
    kneescope_version: str
    generated_at: str
    cards: tuple[KneeCard, ...]
    distributions: tuple[PageFigure, ...] = ()
    outliers: tuple[OutlierRow, ...] = ()
    trial_figures: tuple[PageFigure, ...] = ()
    kl_source: str = ""
    results_versions: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    outlier_threshold: float = OUTLIER_THRESHOLD
    max_outlier_rows: int = MAX_OUTLIER_ROWS

    @property
    def review_key(self) -> str:
        """What the browser keeps this report's decisions under (localStorage):
        ``<run>:<12 hex digits of the run's item ids and series>``, so two workspaces with a
        run of the same name (every demo's run is ``demo``) do not share decisions, while a
        report written again for the same run keeps them."""
        import hashlib

        items = sorted(f"{c.item_id}|{c.series}" for c in self.cards)
        digest = hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:12]
        return f"{self.run}:{digest}"

    @property
    def flagged(self) -> int:
        """How many knees have a QC flag raised."""
        return sum(1 for c in self.cards if not c.qc_ok)

    @property
    def subjects(self) -> int:
        """How many subjects the run has."""
        return len({c.subject for c in self.cards})

    @property
    def visits(self) -> list[str]:
        """The run's visits, sorted."""
        return sorted({c.visit for c in self.cards})

    @property
    def with_kl(self) -> int:
        """How many knees have a reader's KL grade."""
        return sum(1 for c in self.cards if c.kl != NO_KL)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _qc_ok(value: Any) -> bool:
    """A row's ``qc_ok``; a run without QC (no ``measure`` step) counts as passed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    try:
        return bool(value)
    except TypeError:  # pandas' NA: not known
        return True


def split_reasons(text: str) -> tuple[str, ...]:
    """``"flag: why; flag2: why"`` (a results row's ``qc_reasons``) -> one entry per flag."""
    return tuple(part.strip() for part in _text(text).split("; ") if part.strip())


def qc_words(row: Mapping[Any, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(words, sentences) of the QC flags raised in a results row (its ``qc_*`` columns;
    :mod:`kneescope.reports.qc_text`). A row with a ``qc_reasons`` text but no flag columns
    gives the text's parts as both."""
    from kneescope.reports.qc_text import flag_sentence, flag_words
    from kneescope.reports.run_data import is_informative, raised_flags
    from kneescope.reports.run_data import split_reasons as reasons_by_flag

    text = _text(row.get("qc_reasons"))
    flags = tuple(f for f in raised_flags(row) if not is_informative(f))
    if not flags:
        parts = split_reasons(text)
        return parts, parts
    reasons = reasons_by_flag(text, flags)
    return (
        tuple(flag_words(f) for f in flags),
        tuple(flag_sentence(f, reasons.get(f) or None) for f in flags),
    )


def _review(row: Mapping[Any, Any]) -> str:
    """A row's catalog review (``qc_review``, ``qc_reviewer``, ``qc_reviewed_at``,
    ``qc_review_note``) in words."""
    state = _text(row.get("qc_review"))
    if not state:
        return ""
    who, when = _text(row.get("qc_reviewer")), _text(row.get("qc_reviewed_at"))
    note = _text(row.get("qc_review_note"))
    text = state + (f" by {who}" if who else "") + (f" at {when}" if when else "")
    return text + (f" ({note})" if note else "")


def knee_cards(
    frame: pd.DataFrame,
    kl: Mapping[tuple[str, str, str], float],
    pages: Mapping[str, str],
    thumbnails: Mapping[str, str],
    outliers: Sequence[Outlier] = (),
) -> list[KneeCard]:
    """One card per results row: QC-flagged knees first, then by subject, visit and side.

    Args:
        frame: the run's results table.
        kl: (subject, visit, side) -> the reader's KL grade.
        pages: item_id -> knee page relative to the report folder.
        thumbnails: item_id -> thumbnail relative to the report folder (absent: none).
        outliers: counted per knee.
    """
    from kneescope.reports.names import knee_page_path

    count: dict[str, int] = {}
    for o in outliers:
        count[o.item_id] = count.get(o.item_id, 0) + 1
    has_qc = "qc_ok" in frame.columns
    cards = []
    for row in frame.to_dict("records"):
        item = _text(row["item_id"])
        subject, visit, side = (_text(row[k]) for k in ("subject", "visit", "side"))
        words, sentences = qc_words(row)
        cards.append(
            KneeCard(
                item_id=item,
                subject=subject,
                visit=visit,
                side=side,
                series=_text(row.get("series")),
                qc_ok=_qc_ok(row["qc_ok"]) if has_qc else True,
                qc_reasons=words,
                qc_explanations=sentences,
                kl=kl_group(kl.get((subject, visit, side))),
                page=pages.get(item, knee_page_path(subject, side, visit)),
                thumbnail=thumbnails.get(item),
                outliers=count.get(item, 0),
                review=_review(row),
            )
        )
    cards.sort(key=lambda c: (c.qc_ok, c.subject, c.visit, c.side, c.item_id))
    return cards


def outlier_rows(outliers: Sequence[Outlier], cards: Sequence[KneeCard]) -> list[OutlierRow]:
    """The outliers with their knees' cards (an outlier of an unknown item is left out)."""
    by_item = {c.item_id: c for c in cards}
    return [OutlierRow(o, by_item[o.item_id]) for o in outliers if o.item_id in by_item]


def render_cohort_page(page: CohortPage) -> str:
    """The cohort page's HTML (``index.html``; autoescaped; extends ``base.html.j2``)."""
    from kneescope.reports.templating import environment

    template = environment().get_template("cohort.html.j2")
    return str(
        template.render(
            static="static",
            run_name=page.run,
            kneescope_version=page.kneescope_version,
            page=page,
            decisions=DECISIONS,
            decisions_format=DECISIONS_FORMAT,
            decisions_version=DECISIONS_VERSION,
        )
    )
