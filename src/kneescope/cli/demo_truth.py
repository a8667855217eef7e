"""The demo's check against the synthetic truth: what a user needs to believe the numbers.

A synthetic cohort (``kneescope synth``) carries exact truth: ``truth/knee_truth.csv`` (one
row per knee and visit) and the true label map of every DESS series (``labels/``). After a
``load_volume -> segment -> measure`` run over it, :func:`check_against_truth` compares, knee
by knee, with the knee's QC verdict beside every number:

- Dice of each of the 9 structures: the run's label map (``file_segment_labels``) against
  the true one (:func:`kneescope.inference.evaluation.dice_per_label`);
- every biomarker column the truth tables know (:data:`TRUTH_COLUMNS`): plate mean cartilage
  thickness against both truths of the synth (the *plain* one, ``<plate>_ThMean_mm``: the
  imposed thickness over the covered bone; and the *visible* one, ``<plate>_ThMeanVisible_mm``:
  the same where it is at least half the largest voxel spacing, what a label map can show; see
  docs/biomarkers.md and docs/benchmarks.md for how far apart they are), plate and meniscal
  volumes (error in %), denuded bone area (mm²) and meniscal extrusion (mm).

Summaries (mean and worst knee) are taken over the knees that passed QC only: a QC-failed
knee's numbers are listed on their own with its QC state and reasons, never folded into a
mean. Sub-region thickness and covered areas have no counterpart in the truth tables (the
synth's regions are not the measurement's) and are not compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from kneescope.core import Volume
from kneescope.core.labels import CARTILAGE_PLATES, KNEE_LABELS
from kneescope.errors import InputError

KNEE_TRUTH = Path("truth") / "knee_truth.csv"
"""The synthetic cohort's truth table, relative to the cohort folder."""

TRUTH_CHECK_CSV = "truth_check.csv"
"""The demo's per-knee comparison (long format), written into the run folder."""


@dataclass(frozen=True)
class TruthColumn:
    """One results-table column and its truth.

    Attributes:
        key: the quantity's name in the check (the result column, or the result column and
            ``_vs_visible`` for the thickness against the visible truth).
        result: the results-table column (``measure`` step).
        truth: the ``truth/knee_truth.csv`` column.
        error: ``"difference"`` (measured - truth, in ``unit``) or ``"percent"``
            (100 (measured / truth - 1)).
        unit: the error's unit (``mm``, ``mm2``, ``%``).
    """

    key: str
    result: str
    truth: str
    error: Literal["difference", "percent"]
    unit: str


def _truth_columns() -> tuple[TruthColumn, ...]:
    columns: list[TruthColumn] = []
    for plate in CARTILAGE_PLATES:
        pre = f"{plate}_cartilage"
        thickness = f"{pre}_thickness_mean_mm"
        columns += [
            TruthColumn(thickness, thickness, f"{plate}_ThMean_mm", "difference", "mm"),
            TruthColumn(
                f"{thickness}_vs_visible",
                thickness,
                f"{plate}_ThMeanVisible_mm",
                "difference",
                "mm",
            ),
            TruthColumn(
                f"{pre}_volume_mm3", f"{pre}_volume_mm3", f"{plate}_Vol_mm3", "percent", "%"
            ),
        ]
        denuded = f"{plate}_denuded_bone_area_mm2"
        columns.append(TruthColumn(denuded, denuded, f"{plate}_Denuded_mm2", "difference", "mm2"))
    for name, key in (("medial", "Med"), ("lateral", "Lat")):
        volume, extrusion = f"{name}_meniscus_volume_mm3", f"{name}_meniscus_extrusion_mm"
        columns += [
            TruthColumn(volume, volume, f"{key}Meniscus_Vol_mm3", "percent", "%"),
            TruthColumn(extrusion, extrusion, f"{key}Extrusion_mm", "difference", "mm"),
        ]
    return tuple(columns)


TRUTH_COLUMNS: tuple[TruthColumn, ...] = _truth_columns()
"""Every biomarker column that the synthetic truth tables know, with its truth column."""


@dataclass
class KneeCheck:
    """One knee of the run against its truth.

    Attributes:
        subject, visit, side: the knee.
        qc_ok: its QC verdict (None when the run measured no QC).
        qc_reasons: the raised QC flags' reasons in words.
        qc_flags: the raised QC flags that fail QC (``qc_*`` columns without the prefix).
        dice: structure -> Dice (NaN: in neither map; absent when no label map was written).
        errors: quantity (:attr:`TruthColumn.key`) -> error (NaN: not measured).
        measured, truth: quantity -> value.
    """

    subject: str
    visit: str
    side: str
    qc_ok: bool | None
    qc_reasons: str
    qc_flags: list[str] = field(default_factory=list)
    dice: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    truth: dict[str, float] = field(default_factory=dict)


@dataclass
class TruthCheck:
    """The whole run against the truth.

    Attributes:
        knees: every knee of the results table that has a truth row, in table order.
        without_truth: knees of the results table with no truth row (subject/visit/side).
        dice: over the QC-passed knees, structure -> summary
            (:func:`kneescope.inference.evaluation.summarise`, kind ``dice``).
        errors: over the QC-passed knees, quantity -> summary (kind ``error``: ``mean``
            of the absolute error, ``bias``, ``worst`` absolute error, ``worst_knee`` index
            into the passed knees).
    """

    knees: list[KneeCheck]
    without_truth: list[str]
    dice: dict[str, dict[str, Any]]
    errors: dict[str, dict[str, Any]]

    @property
    def passed(self) -> list[KneeCheck]:
        return [k for k in self.knees if k.qc_ok is True]

    @property
    def failed(self) -> list[KneeCheck]:
        return [k for k in self.knees if k.qc_ok is not True]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (units in ``error_units``)."""
        return {
            "knees": len(self.knees),
            "qc_passed": len(self.passed),
            "qc_failed": len(self.failed),
            "without_truth": self.without_truth,
            "summary_over": "knees that passed QC",
            "dice": self.dice,
            "errors": self.errors,
            "error_units": {c.key: c.unit for c in TRUTH_COLUMNS},
            "result_columns": {c.key: c.result for c in TRUTH_COLUMNS},
            "truth_columns": {c.key: c.truth for c in TRUTH_COLUMNS},
            "per_knee": [
                {
                    "subject": k.subject,
                    "visit": k.visit,
                    "side": k.side,
                    "qc": _qc_word(k.qc_ok),
                    "qc_reasons": k.qc_reasons,
                    "qc_flags": k.qc_flags,
                    "dice": k.dice,
                    "errors": k.errors,
                    "measured": k.measured,
                    "truth": k.truth,
                }
                for k in self.knees
            ],
        }


def _qc_word(ok: bool | None) -> str:
    return "not checked" if ok is None else ("ok" if ok else "failed")


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _qc_of(value: Any) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _raised_flags(row: Mapping[str, Any]) -> list[str]:
    """The QC flags a results row raises that fail QC (informative ones left out)."""
    from kneescope.biomarkers.qc import INFORMATIVE_FLAGS

    raised = []
    for key, value in row.items():
        if not key.startswith("qc_") or key in ("qc_ok", "qc_reasons") or key in INFORMATIVE_FLAGS:
            continue
        number = _float(value)
        if number == number and number > 0:
            raised.append(key[3:])
    return raised


def _error(column: TruthColumn, measured: float, truth: float) -> float:
    if column.error == "difference":
        return measured - truth
    return 100.0 * (measured / truth - 1.0) if truth > 0 else math.nan


def labels_on_grid(pred: Volume, truth: Volume) -> npt.NDArray[Any]:
    """``pred``'s labels on ``truth``'s voxel grid: the same array when the grids are the
    same, else ``pred`` permuted and flipped (the two grids must be the same voxels in
    another axis order, as a DICOM series and the NIfTI of its label map can be).

    Raises:
        InputError: the grids are not the same voxels.
    """
    a, b = np.asarray(pred.affine_ras, dtype=np.float64), np.asarray(truth.affine_ras)
    if pred.shape == truth.shape and np.allclose(a, b, atol=1e-3):
        return pred.array
    # truth index -> pred index: p = M t
    m = np.linalg.solve(a, b)
    rot, shift = m[:3, :3], m[:3, 3]
    perm = np.rint(rot)
    ok = np.allclose(rot, perm, atol=1e-3) and np.allclose(np.abs(perm).sum(axis=0), 1.0)
    ok = ok and np.allclose(np.abs(perm).sum(axis=1), 1.0)
    if ok:
        axes = [int(np.argmax(np.abs(perm[:, t]))) for t in range(3)]  # pred axis of truth t
        array = np.transpose(pred.array, axes)
        for t, p in enumerate(axes):
            if perm[p, t] < 0:
                array = np.flip(array, axis=t)
        start = [
            shift[p] if perm[p, t] > 0 else pred.shape[p] - 1 - shift[p] for t, p in enumerate(axes)
        ]
        if array.shape == truth.shape and np.allclose(start, 0.0, atol=1e-3):
            return np.ascontiguousarray(array)
    raise InputError(
        f"the label map {pred.source_path or ''} is not on the grid of its truth "
        f"{truth.source_path or ''} (shapes {pred.shape} and {truth.shape}); "
        "compare label maps of the same series"
    )


def _read_truth(cohort: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    import csv

    path = cohort / KNEE_TRUTH
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise InputError(
            f"cannot read the synthetic truth {path} ({exc.strerror}); "
            "the demo cohort must be one that `kneescope synth` wrote"
        ) from None
    return {(r["ParticipantID"], r["Visit"], r["Side"]): r for r in rows if r.get("LabelPath")}


def check_against_truth(results: Sequence[Mapping[str, Any]], cohort: Path) -> TruthCheck:
    """Every knee of a run's results (rows of its results table) against the truth of the
    synthetic cohort in ``cohort`` (see the module docstring).

    Args:
        results: results-table rows (``subject``, ``visit``, ``side``, the ``measure``
            columns, ``qc_ok``, ``qc_reasons`` and ``file_segment_labels``, the label map
            the ``segment`` step wrote, when it wrote one).
        cohort: the folder ``kneescope synth`` wrote.

    Raises:
        InputError: the truth table is missing, or a label map is not on its truth's grid.
    """
    from kneescope.inference.evaluation import dice_per_label, summarise
    from kneescope.io import read_volume

    truth_rows = _read_truth(cohort)
    knees: list[KneeCheck] = []
    without: list[str] = []
    for row in results:
        key = (str(row.get("subject", "")), str(row.get("visit", "")), str(row.get("side", "")))
        truth = truth_rows.get(key)
        if truth is None:
            without.append(" ".join(key))
            continue
        knee = KneeCheck(
            subject=key[0],
            visit=key[1],
            side=key[2],
            qc_ok=_qc_of(row.get("qc_ok")),
            qc_reasons=str(row.get("qc_reasons") or ""),
            qc_flags=_raised_flags(row),
        )
        for column in TRUTH_COLUMNS:
            measured, true = _float(row.get(column.result)), _float(truth.get(column.truth))
            knee.measured[column.key] = measured
            knee.truth[column.key] = true
            knee.errors[column.key] = _error(column, measured, true)
        labels_file = row.get("file_segment_labels") or row.get("file_labels")
        if labels_file:
            true_map = read_volume(cohort / truth["LabelPath"])
            predicted = labels_on_grid(read_volume(Path(str(labels_file))), true_map)
            dice = dice_per_label(predicted, true_map.array, tuple(KNEE_LABELS.labels))
            knee.dice = {KNEE_LABELS.labels[v]: d for v, d in dice.items()}
        knees.append(knee)
    passed = [k for k in knees if k.qc_ok is True]
    return TruthCheck(
        knees=knees,
        without_truth=without,
        dice=summarise([k.dice for k in passed], kind="dice") if passed else {},
        errors=summarise([k.errors for k in passed], kind="error") if passed else {},
    )


def check_rows(check: TruthCheck) -> list[dict[str, Any]]:
    """The comparison in long format, one row per knee and quantity, each with the knee's QC
    state: subject, visit, side, qc, quantity, measured, truth, error, error_unit."""
    units = {c.key: c.unit for c in TRUTH_COLUMNS}
    rows: list[dict[str, Any]] = []
    for k in check.knees:
        base = {"subject": k.subject, "visit": k.visit, "side": k.side, "qc": _qc_word(k.qc_ok)}
        for structure, value in k.dice.items():
            rows.append(
                {
                    **base,
                    "quantity": f"dice_{structure}",
                    "measured": value,
                    "truth": 1.0,
                    "error": value - 1.0 if not math.isnan(value) else math.nan,
                    "error_unit": "1",
                }
            )
        for name, error in k.errors.items():
            rows.append(
                {
                    **base,
                    "quantity": name,
                    "measured": k.measured[name],
                    "truth": k.truth[name],
                    "error": error,
                    "error_unit": units[name],
                }
            )
    return rows
