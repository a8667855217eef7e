"""``kneescope measure --longitudinal``: change of cartilage thickness over visits.

Inputs, either:

- label maps of ONE knee, in visit order (``measure --longitudinal V00.nii.gz V01.nii.gz``);
  the visits are named by their file names; or
- one ``.csv`` visit list with columns ``knee``, ``labelmap`` and optionally ``visit``
  (several knees; each knee's rows in visit order; relative paths are read from the list's
  folder). With two or more knees the standardised response mean (SRM) is reported too.

Per knee, visit and thickness column (:func:`kneescope.biomarkers.change.
thickness_change_columns`: the Wirth-Eckstein ThCtAB and ThCcAB per plate and region, and
the plate and region mean thicknesses): the value, its change from the first visit (mm and
%), the smallest detectable change SDC95 = 1.96 x sqrt(2) x the rescan SD, and whether the
change exceeds it. The SDs come from ``--precision FILE`` or from the table kneescope ships
(:func:`kneescope.biomarkers.change.shipped_precision`); the output says which.

Output (``-o FILE``: .csv, .parquet or .json): one row per knee x visit x biomarker; with
several knees also ``<stem>_srm<suffix>`` beside it, one row per biomarker x follow-up visit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kneescope.errors import InputError

if TYPE_CHECKING:
    from kneescope.biomarkers.change import PrecisionTable

CHANGE_COLUMNS = (
    "knee",
    "visit_index",
    "visit",
    "labelmap",
    "side",
    "qc_ok",
    "biomarker",
    "value",
    "change_from_baseline",
    "change_from_baseline_pct",
    "sdc95",
    "sdc95_pct",
    "exceeds_sdc95",
    "precision_source",
)
"""Columns of the change table (``-o``), in order."""

SRM_COLUMNS = (
    "biomarker",
    "visit_index",
    "visit",
    "knees",
    "mean_change",
    "sd_change",
    "srm",
    "mean_change_pct",
    "knees_beyond_sdc95",
)
"""Columns of the SRM table (``<stem>_srm<suffix>``), in order."""


@dataclass(frozen=True)
class KneeVisits:
    """One knee's visits: its name and, in time order, (visit name, label map path)."""

    knee: str
    visits: tuple[tuple[str, Path], ...]


def knees_from_inputs(paths: list[Path]) -> list[KneeVisits]:
    """The knees and visits that ``measure --longitudinal`` inputs name.

    Raises:
        InputError: a visit list mixed with label maps, fewer than 2 visits of a knee, a
            malformed visit list.
    """
    lists = [p for p in paths if p.suffix.lower() == ".csv"]
    if lists:
        if len(paths) != 1:
            raise InputError(
                f"--longitudinal takes either label maps of one knee or one .csv visit list, "
                f"got {len(lists)} list(s) and {len(paths) - len(lists)} other input(s); "
                "give one of the two"
            )
        return _read_visit_list(paths[0])
    if len(paths) < 2:
        raise InputError(
            f"--longitudinal needs 2 or more visits of one knee, got {len(paths)}; give the "
            "label maps of each visit in time order (or a .csv visit list)"
        )
    from kneescope.io.colour_table import label_map_stem

    return [KneeVisits(knee="knee", visits=tuple((label_map_stem(p), p) for p in paths))]


def _read_visit_list(path: Path) -> list[KneeVisits]:
    import csv

    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip() for f in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    except FileNotFoundError:
        raise InputError(f"visit list {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"visit list {path}: cannot read it as CSV ({exc})") from None
    missing = [c for c in ("knee", "labelmap") if c not in fields]
    if missing:
        raise InputError(
            f"visit list {path} has no column {' or '.join(missing)} (it has: "
            f"{', '.join(fields) or 'none'}); it needs knee, labelmap and optionally visit"
        )
    order: dict[str, list[tuple[str, Path]]] = {}
    for line, row in enumerate(rows, start=2):
        knee, file = row.get("knee", ""), row.get("labelmap", "")
        if not knee or not file:
            raise InputError(f"visit list {path} line {line}: knee and labelmap must be given")
        where = Path(file) if Path(file).is_absolute() else path.parent / file
        visits = order.setdefault(knee, [])
        from kneescope.io.colour_table import label_map_stem

        visits.append((row.get("visit") or label_map_stem(where), where))
    if not order:
        raise InputError(f"visit list {path} lists no visits")
    short = [k for k, v in order.items() if len(v) < 2]
    if short:
        raise InputError(
            f"visit list {path}: knee(s) {', '.join(short)} have a single visit; change needs "
            "2 or more visits of each knee"
        )
    return [KneeVisits(knee=k, visits=tuple(v)) for k, v in order.items()]


def srm_path(out: Path) -> Path:
    """Where the SRM table of ``-o out`` goes: ``<stem>_srm<suffix>`` beside it."""
    return out.with_name(f"{out.stem}_srm{out.suffix}")


def run_longitudinal(
    paths: list[Path],
    measure_one: Callable[[Path], dict[str, Any]],
    out: Path | None,
    overwrite: bool,
    precision_file: Path | None,
    as_json: bool,
) -> None:
    """Measure every visit, compute change from baseline, print and write it (see module).

    Args:
        paths: the inputs (label maps of one knee in visit order, or one .csv visit list).
        measure_one: reads and measures one label map; its ``measure`` table row.
        out: ``-o`` table (checked by the caller), or None.
        overwrite: replace an existing SRM table too.
        precision_file: ``--precision`` table, or None for the shipped one.
        as_json: print JSON (``{"precision_source", "changes", "srm"}``) instead of tables.
    """
    from kneescope.biomarkers.change import PrecisionTable, shipped_precision
    from kneescope.cli.cmd_measure import _write_table
    from kneescope.cli.common import emit

    knees = knees_from_inputs(paths)
    if out is not None and len(knees) > 1 and srm_path(out).exists() and not overwrite:
        raise InputError(f"--output {srm_path(out)} (the SRM table) exists; pass --overwrite")
    precision = (
        PrecisionTable.read(precision_file) if precision_file is not None else shipped_precision()
    )
    rows: list[dict[str, Any]] = []
    per_knee: list[tuple[KneeVisits, list[dict[str, Any]]]] = []
    for knee in knees:
        measured = [measure_one(p) for _, p in knee.visits]
        sides = {m["side"] for m in measured}
        if len(sides) > 1:
            said = ", ".join(
                f"{v} {m['side']}" for (v, _), m in zip(knee.visits, measured, strict=True)
            )
            raise InputError(
                f"the visits of {knee.knee} were measured as different sides ({said}); give "
                "the visits of one knee (if they are, state its side with --side)"
            )
        per_knee.append((knee, measured))
        rows.extend(_change_rows(knee, measured, precision))
    srm = _srm_rows(per_knee, rows) if len(knees) > 1 else []
    if out is not None:
        _write_table(out, rows)
        if srm:
            _write_table(srm_path(out), srm)
    payload = {"precision_source": precision.source, "changes": rows, "srm": srm}
    emit(payload, as_json, lambda console: _render(console, per_knee, rows, srm, precision.source))


def _change_rows(
    knee: KneeVisits, measured: list[dict[str, Any]], precision: PrecisionTable
) -> list[dict[str, Any]]:
    from kneescope.biomarkers.change import change_from_baseline, thickness_change_columns

    columns = thickness_change_columns(list(measured[0]))
    values = [{c: float(m.get(c, math.nan)) for c in columns} for m in measured]
    out = []
    for ch in change_from_baseline(values, columns, precision):
        visit, path = knee.visits[ch.visit]
        base = values[0][ch.biomarker]
        sdc_pct = 100.0 * ch.sdc95 / base if math.isfinite(base) and base > 0 else math.nan
        out.append(
            {
                "knee": knee.knee,
                "visit_index": ch.visit,
                "visit": visit,
                "labelmap": str(path),
                "side": measured[ch.visit]["side"],
                "qc_ok": bool(measured[ch.visit].get("qc_ok", False)),
                "biomarker": ch.biomarker,
                "value": ch.value,
                "change_from_baseline": ch.change,
                "change_from_baseline_pct": ch.change_pct,
                "sdc95": ch.sdc95,
                "sdc95_pct": sdc_pct,
                "exceeds_sdc95": ch.exceeds_sdc,
                "precision_source": precision.source,
            }
        )
    return out


def _srm_rows(
    per_knee: list[tuple[KneeVisits, list[dict[str, Any]]]], rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    from kneescope.biomarkers.change import standardised_response_mean

    n_follow = min(len(k.visits) for k, _ in per_knee) - 1
    biomarkers = list(dict.fromkeys(r["biomarker"] for r in rows))
    index = {(r["knee"], r["visit_index"], r["biomarker"]): r for r in rows}
    out = []
    for v in range(1, n_follow + 1):
        names = {k.visits[v][0] for k, _ in per_knee}
        visit = names.pop() if len(names) == 1 else f"visit {v + 1}"
        for b in biomarkers:
            got = [index.get((k.knee, v, b)) for k, _ in per_knee]
            found = [g for g in got if g is not None]
            mean, sd, srm, n = standardised_response_mean(
                [g["change_from_baseline"] for g in found]
            )
            pct = [g["change_from_baseline_pct"] for g in found]
            pct = [p for p in pct if math.isfinite(p)]
            out.append(
                {
                    "biomarker": b,
                    "visit_index": v,
                    "visit": visit,
                    "knees": n,
                    "mean_change": mean,
                    "sd_change": sd,
                    "srm": srm,
                    "mean_change_pct": sum(pct) / len(pct) if pct else math.nan,
                    "knees_beyond_sdc95": sum(bool(g["exceeds_sdc95"]) for g in found),
                }
            )
    return out


def _num(x: float, digits: int = 3) -> str:
    return "-" if not math.isfinite(x) else f"{x:.{digits}f}"


def _render(
    console: Any,
    per_knee: list[tuple[KneeVisits, list[dict[str, Any]]]],
    rows: list[dict[str, Any]],
    srm: list[dict[str, Any]],
    source: str,
) -> None:
    from rich.table import Table

    index = {(r["knee"], r["visit_index"], r["biomarker"]): r for r in rows}
    for knee, measured in per_knee:
        names = [v for v, _ in knee.visits]
        table = Table(
            title=f"{knee.knee}: thickness (mm) per visit and change from {names[0]} "
            "(* beyond the SDC95)"
        )
        table.add_column("biomarker", overflow="fold")
        for v in names:
            table.add_column(v, justify="right")
        for v in names[1:]:
            table.add_column(f"change {v}", justify="right")
        table.add_column("SDC95", justify="right")
        biomarkers = list(dict.fromkeys(r["biomarker"] for r in rows if r["knee"] == knee.knee))
        for b in biomarkers:
            cells = [_num(index[(knee.knee, i, b)]["value"]) for i in range(len(names))]
            for i in range(1, len(names)):
                r = index[(knee.knee, i, b)]
                mark = "*" if r["exceeds_sdc95"] else " "
                cells.append(
                    f"{_num(r['change_from_baseline'])} ({_num(r['change_from_baseline_pct'], 1)}"
                    f" %){mark}"
                )
            cells.append(_num(index[(knee.knee, 0, b)]["sdc95"]))
            table.add_row(b, *cells)
        console.print(table)
        failed = [v for v, m in zip(names, measured, strict=True) if not m.get("qc_ok")]
        if failed:
            console.print(
                f"QC flags raised at: {', '.join(failed)} (measure those label maps without "
                "--longitudinal to see which)"
            )
    if srm:
        table = Table(title="standardised response mean over knees (mean change / SD of change)")
        for col in ("biomarker", "visit", "knees", "mean change", "SD", "SRM", "mean %"):
            table.add_column(col, justify="left" if col == "biomarker" else "right")
        for r in srm:
            table.add_row(
                r["biomarker"],
                r["visit"],
                str(r["knees"]),
                _num(r["mean_change"]),
                _num(r["sd_change"]),
                _num(r["srm"], 2),
                _num(r["mean_change_pct"], 1),
            )
        console.print(table)
    console.print(f"SDC95 = 1.96 x sqrt(2) x rescan SD; the SDs: {source}", soft_wrap=True)
