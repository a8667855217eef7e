"""A read-only, narrow view of the catalog for pipeline steps (``context.catalog``).

Steps never write SQL: they ask this view for a subject's clinical variables, its visits and
its series. The view holds only the catalog URL and workspace root, so it pickles small and
travels to Dask or Slurm workers; the database is opened lazily on first use, once per
process (the open catalogs are cached by URL and root).

A :meth:`CatalogView.recording` view also keeps a list of the questions asked and a digest
of each answer. Cohort-level steps run on such a view: :func:`replay_digest` asks the same
questions again later, so a re-run can tell whether the catalog state a step read has
changed without keying the step on the whole catalog.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kneescope.errors import InputError, KneescopeError

if TYPE_CHECKING:
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.queries import SeriesRecord
    from kneescope.workspace import Workspace

ClinicalValue = float | str
"""A clinical value: the number when the text parses as one (``"2: definite"`` -> 2.0),
else the text."""

_CACHE_SIZE = 4
_OPEN: OrderedDict[tuple[str, str | None], Catalog] = OrderedDict()
_OPEN_LOCK = threading.Lock()

_QUESTIONS = (
    "clinical",
    "clinical_values",
    "visits",
    "visit_dates",
    "series",
    "subjects",
    "rejected_knees",
)
"""The methods whose answers a recording view digests (and :func:`replay_digest` re-asks)."""


def _open_catalog(url: str, root: str | None) -> Catalog:
    """The catalog at ``url`` opened read-only in spirit (no schema created), cached."""
    from kneescope.catalog.database import Catalog

    key = (url, root)
    with _OPEN_LOCK:
        catalog = _OPEN.get(key)
        if catalog is not None:
            _OPEN.move_to_end(key)
            return catalog
        catalog = Catalog.open(url, create=False, root=Path(root) if root else None)
        _OPEN[key] = catalog
        while len(_OPEN) > _CACHE_SIZE:
            _, oldest = _OPEN.popitem(last=False)
            oldest.close()
        return catalog


def _digest(answer: Any) -> str:
    text = json.dumps(answer, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _json_default(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if to_json is not None:
        return to_json()
    return str(value)


class CatalogView:
    """Read access to one catalog for steps.

    Args:
        url: SQLAlchemy URL of the catalog database.
        root: the workspace folder the catalog's relative paths are relative to.

    All answers are plain values (dicts, lists, frozen :class:`SeriesRecord` s), ordered, and
    the same for the same catalog state. Visit and side arguments take the forms the catalog
    filters take (``V00``/``0``; ``right``/``R``).
    """

    def __init__(self, url: str, root: str | Path | None = None) -> None:
        self.url = url
        self.root = str(root) if root is not None else None
        self._reads: list[dict[str, Any]] | None = None

    @classmethod
    def for_workspace(cls, workspace: Workspace) -> CatalogView | None:
        """The view of a workspace's catalog; None when the workspace has none yet (a run
        over files in a workspace that was never ingested into)."""
        if workspace.catalog_url_override is None and not workspace.catalog_path.is_file():
            return None
        return cls(workspace.catalog_url, workspace.root)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its URL and root (the reads log of a recording view stays behind)."""
        return (CatalogView, (self.url, self.root))

    def __repr__(self) -> str:
        from kneescope.catalog.database import display_url

        return f"CatalogView({display_url(self.url)!r})"

    # -- recording ---------------------------------------------------------------------------
    def recording(self) -> CatalogView:
        """A view of the same catalog that logs every question and a digest of its answer."""
        view = CatalogView(self.url, self.root)
        view._reads = []
        return view

    @property
    def reads(self) -> list[dict[str, Any]]:
        """The questions a recording view was asked: ``{"call", "args", "digest"}`` each."""
        return list(self._reads or [])

    def _answer(self, call: str, args: dict[str, Any], answer: Any) -> Any:
        if self._reads is not None:
            self._reads.append({"call": call, "args": args, "digest": _digest(answer)})
        return answer

    def _catalog(self) -> Catalog:
        return _open_catalog(self.url, self.root)

    # -- questions -----------------------------------------------------------------------------
    def subjects(self) -> list[str]:
        """Every subject code in the catalog, sorted."""
        from sqlalchemy import select

        from kneescope.catalog.schema import Subject

        with self._catalog().session() as session:
            codes = sorted(str(c) for c in session.scalars(select(Subject.code)))
        return self._answer("subjects", {}, codes)

    def rejected_knees(self) -> list[list[str]]:
        """The knees whose current QC review decision is ``reject`` (``kneescope qc
        import``), each as its :func:`~kneescope.catalog.qc_reviews.knee_key` (``["series",
        subject, visit, side, series]`` or ``["item", item_id]``), sorted; [] when nobody
        rejected a knee or the catalog predates reviews."""
        from kneescope.catalog.qc_reviews import load_reviews

        reviews = load_reviews(self._catalog())
        keys = sorted(list(k) for k, r in reviews.current.items() if r.decision == "reject")
        return self._answer("rejected_knees", {}, keys)

    def visits(self, subject: str) -> list[str]:
        """The visit codes of ``subject`` in time order (``["V00", "V01", ...]``); [] for an
        unknown subject."""
        from sqlalchemy import select

        from kneescope.catalog.schema import Subject, Visit

        stmt = (
            select(Visit.code)
            .join(Subject, Visit.subject_id == Subject.id)
            .where(Subject.code == subject)
        )
        with self._catalog().session() as session:
            codes = sorted(str(c) for c in session.scalars(stmt))
        return self._answer("visits", {"subject": subject}, codes)

    def visit_dates(self) -> list[dict[str, str | None]]:
        """Every visit's date: ``{"subject", "visit", "study_date"}`` rows (``study_date``
        ``YYYYMMDD`` as the DICOM StudyDate, None when unknown), ordered by subject and visit."""
        from sqlalchemy import select

        from kneescope.catalog.schema import Subject, Visit

        stmt = select(Subject.code, Visit.code, Visit.study_date).join(
            Subject, Visit.subject_id == Subject.id
        )
        with self._catalog().session() as session:
            rows = sorted(
                (str(s), str(v), str(d) if d else None) for s, v, d in session.execute(stmt)
            )
        answer = [{"subject": s, "visit": v, "study_date": d} for s, v, d in rows]
        return self._answer("visit_dates", {}, answer)

    def clinical(
        self, subject: str, visit: str | None = None, side: str | None = None
    ) -> dict[str, ClinicalValue]:
        """Clinical variables of ``subject`` as ``{variable: value}``.

        Without ``visit``: the subject-level variables (``P02SEX``). With ``visit``: those
        plus the visit's person-level variables (``AGE``, ``WOMKPR``); with ``side`` as well,
        plus that knee's variables at the visit (``XRKL``). A more specific value wins when a
        name occurs at two levels. Numbers come as floats, other text as text.

        Raises:
            InputError: ``side`` without ``visit``, or a visit or side that is not a code.
        """
        from kneescope.catalog.queries import ClinicalFilter, clinical_values

        if side is not None and visit is None:
            raise InputError("clinical(side=...) needs a visit: knee variables are per visit")
        rows = clinical_values(self._catalog(), ClinicalFilter(subject=subject))
        wanted_visit = _visit_code(visit) if visit is not None else None
        wanted_side = _side_code(side) if side is not None else None
        levels: list[dict[str, ClinicalValue]] = [{}, {}, {}]
        for row in rows:
            if row["visit"] is None and row["side"] is None:
                level = 0
            elif row["visit"] == wanted_visit and row["visit"] is not None:
                if row["side"] is None:
                    level = 1
                elif row["side"] == wanted_side:
                    level = 2
                else:
                    continue
            else:
                continue
            number = row["value_num"]
            levels[level][row["variable"]] = number if number is not None else row["value_text"]
        answer = {**levels[0], **levels[1], **levels[2]}
        return self._answer("clinical", {"subject": subject, "visit": visit, "side": side}, answer)

    def clinical_values(
        self,
        variable: str | None = None,
        *,
        subject: str | None = None,
        visit: str | None = None,
        side: str | None = None,
    ) -> list[dict[str, Any]]:
        """Clinical values in long format (what cohort-level steps join on): dicts with
        subject, visit, side, variable, value_text, value_num; ``variable`` a name or a
        ``*``/``?`` pattern (``XRKL``, ``WOMKP*``). Ordered by subject, visit, side, variable.
        """
        from kneescope.catalog.queries import ClinicalFilter, clinical_values

        where = ClinicalFilter(subject=subject, visit=visit, side=side, variable=variable)
        rows = clinical_values(self._catalog(), where)
        args = {"variable": variable, "subject": subject, "visit": visit, "side": side}
        return self._answer("clinical_values", args, rows)

    def series(
        self, subject: str, visit: str | None = None, side: str | None = None
    ) -> list[SeriesRecord]:
        """The subject's series (status ok), optionally of one visit and one side, ordered by
        visit, sequence and id. ``side`` matches the series' own side: a bilateral film has
        none, so it is listed only when ``side`` is not given."""
        from kneescope.catalog.queries import SeriesFilter, list_series

        where = SeriesFilter(subject=subject, visit=visit, side=side, status="ok")
        records = list_series(self._catalog(), where)
        return self._answer("series", {"subject": subject, "visit": visit, "side": side}, records)


def replay_digest(view: CatalogView, reads: list[dict[str, Any]]) -> str | None:
    """Ask ``view`` the questions in ``reads`` (a recording view's :attr:`~CatalogView.reads`)
    again; returns a digest of the answers that equals :func:`reads_digest` of ``reads`` when
    every answer is the same. None when a question cannot be asked again (an unknown call, or
    it fails now): the caller treats that as changed."""
    answers = []
    for read in reads:
        call = read.get("call")
        args = read.get("args")
        if call not in _QUESTIONS or not isinstance(args, dict):
            return None
        try:
            answer = getattr(view, str(call))(**args)
        except (KneescopeError, OSError, TypeError):  # a catalog gone, a bad old log: changed
            return None
        answers.append({"call": call, "args": args, "digest": _digest(answer)})
    return reads_digest(answers)


def reads_digest(reads: list[dict[str, Any]]) -> str:
    """One digest of a list of recorded questions and answers (order matters)."""
    return _digest([[r["call"], r["args"], r["digest"]] for r in reads])


def _visit_code(text: str) -> str:
    from kneescope.catalog.naming import normalize_visit

    try:
        return normalize_visit(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _side_code(text: str) -> str:
    from kneescope.catalog.naming import side_from_text

    side = side_from_text(text)
    if side is None:
        raise InputError(f"side {text!r} is not right or left")
    return side


def numeric_values_by_subject(
    catalog: CatalogView, names: Sequence[str]
) -> dict[str, dict[str | None, float]]:
    """subject -> visit (None: subject-level) -> the numeric value of the first of ``names``
    the catalog has there (``("P01BMI", "BMI")``: OAI name first, then a generic one)."""
    out: dict[str, dict[str | None, float]] = {}
    for name in names:
        for row in catalog.clinical_values(name):
            if row.get("value_num") is None:
                continue
            out.setdefault(str(row["subject"]), {}).setdefault(
                row.get("visit"), float(row["value_num"])
            )
    return out
