"""Longitudinal QC: is each knee-visit the same knee as at baseline?

Two checks per knee-visit, each flag with its reason in words:

- ``side``: the knee's side (from the catalog: the series' side) against what the pipeline
  measured: ``side_from_anatomy`` (the side the anatomy tells, ``measure``: fibula lateral,
  medial condyle ...) and ``measured_side`` (the side it was measured as). A disagreement is
  a swapped side (a series filed under the other knee) or a mirrored image; the same knee
  also must not change its anatomical side between visits.
- ``bone_size``: the knee's bone size (the sum of the bone-size columns that both visits
  measured: ``measure``'s bone volumes ``<bone>_bone_volume_mm3`` where present, else the
  total subchondral bone area of every plate, tAB, which in a knee losing its cartilage
  cover can follow it) must stay within ``tolerance_pct`` of its baseline. A jump is
  another person's knee under this knee's name, or a failed segmentation. On the synthetic
  OAI cohort (seed 17001, 8 subjects, small grid, label maps measured) the summed bone
  volumes stay within 0.5 % of baseline over 2 years (the summed areas of a KL 4 knee: 13 %).

A flagged baseline flags the whole knee (every change is taken against it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

QC_COLUMNS = ("subject", "side", "visit", "baseline_visit", "check", "value", "reason")
"""Columns of the QC table: one row per flag (``check``: ``side`` | ``bone_size`` |
``baseline``; ``value``: the measured side(s), or the bone-size change in %)."""


@dataclass(frozen=True)
class QcResult:
    """The longitudinal QC of aligned knee-visits.

    Attributes:
        flags: one row per flag, columns :data:`QC_COLUMNS`.
        flagged: ``(n,)`` bool per row of the aligned frame: any flag of the knee-visit, or
            of its knee's baseline.
        side_checked: knee-visits the side check could test (the table has the columns).
        bone_checked: knee-visits (after baseline) with a bone size at both visits.
        bone_change_pct: ``(n,)`` float64 bone-size change from baseline in % (NaN where not
            checked).
    """

    flags: pd.DataFrame
    flagged: np.ndarray
    side_checked: int
    bone_checked: int
    bone_change_pct: np.ndarray


def _words(column: str) -> str:
    stem = column.removesuffix("_mm2").removesuffix("_mm3")
    return stem.replace("_", " ")


def longitudinal_qc(
    frame: pd.DataFrame,
    bone_columns: Sequence[str],
    tolerance_pct: float,
    *,
    check_side: bool = True,
) -> QcResult:
    """Flag knee-visits that are not the same knee as at baseline (see the module).

    Args:
        frame: aligned knee-visits (:class:`~.change.Aligned` ``frame``: subject, side,
            visit, baseline_visit, the bone columns and their ``__base`` twins, and the
            ``side_from_anatomy`` / ``measured_side`` columns where the table had them).
        bone_columns: bone-size columns (same unit: their sum is the bone size).
        tolerance_pct: allowed |bone-size change| from baseline, %.
        check_side: run the side check.
    """
    import pandas as pd

    n = len(frame)
    own = np.zeros(n, dtype=bool)
    rows: list[dict[str, object]] = []
    subject = frame["subject"].to_numpy()
    side = frame["side"].to_numpy()
    visit = frame["visit"].to_numpy()
    base_visit = frame["baseline_visit"].to_numpy()
    side_checked = 0
    if check_side:
        anatomy = (
            frame["side_from_anatomy"].to_numpy()
            if "side_from_anatomy" in frame
            else np.full(n, "", dtype=object)
        )
        measured = (
            frame["measured_side"].to_numpy()
            if "measured_side" in frame
            else np.full(n, "", dtype=object)
        )
        for i in range(n):
            said: list[str] = []
            if anatomy[i]:
                bad = sorted(set(str(anatomy[i]).split("/")) - {side[i]})
                if bad:
                    said.append(f"the anatomy shows a {' and a '.join(bad)} knee")
            if measured[i]:
                bad = sorted(set(str(measured[i]).split("/")) - {side[i]})
                if bad:
                    said.append(f"it was measured as the {' and the '.join(bad)} knee")
            if anatomy[i] or measured[i]:
                side_checked += 1
            if said:
                own[i] = True
                rows.append(
                    {
                        "subject": subject[i],
                        "side": side[i],
                        "visit": visit[i],
                        "baseline_visit": base_visit[i],
                        "check": "side",
                        "value": str(anatomy[i] or measured[i]),
                        "reason": f"{'; '.join(said)}, but the catalog files it as the "
                        f"{side[i]} knee: a series filed under the wrong side or a mirrored "
                        "image; check the series' side in the catalog",
                    }
                )
    bone = list(bone_columns)
    change = np.full(n, np.nan)
    bone_checked = 0
    if bone:
        now = frame.loc[:, bone].to_numpy(dtype=np.float64)
        then = frame.loc[:, [f"{c}__base" for c in bone]].to_numpy(dtype=np.float64)
        both = np.isfinite(now) & np.isfinite(then)
        total_now = np.where(both, now, 0.0).sum(axis=1)
        total_then = np.where(both, then, 0.0).sum(axis=1)
        checked = both.any(axis=1) & (total_then > 0) & (visit != base_visit)
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.where(checked, 100.0 * (total_now - total_then) / total_then, np.nan)
        bone_checked = int(checked.sum())
        jump = checked & (np.abs(change) > tolerance_pct)
        what = (
            _words(bone[0])
            if len(bone) == 1
            else "bone size (the sum of " + ", ".join(_words(c) for c in bone) + ")"
        )
        for i in np.flatnonzero(jump).tolist():
            own[i] = True
            direction = "above" if change[i] > 0 else "below"
            rows.append(
                {
                    "subject": subject[i],
                    "side": side[i],
                    "visit": visit[i],
                    "baseline_visit": base_visit[i],
                    "check": "bone_size",
                    "value": f"{change[i]:.1f}",
                    "reason": f"{what} is {abs(change[i]):.1f} % {direction} baseline "
                    f"{base_visit[i]} (tolerance {tolerance_pct:g} %): another knee under "
                    "this knee's name, or a failed segmentation; check this visit's series "
                    "and its label map",
                }
            )
    # a flagged baseline flags its whole knee
    at_base = visit == base_visit
    bad_knees = {(subject[i], side[i]) for i in np.flatnonzero(own & at_base).tolist()}
    flagged = own.copy()
    for i in range(n):
        if not at_base[i] and (subject[i], side[i]) in bad_knees:
            flagged[i] = True
            rows.append(
                {
                    "subject": subject[i],
                    "side": side[i],
                    "visit": visit[i],
                    "baseline_visit": base_visit[i],
                    "check": "baseline",
                    "value": "",
                    "reason": f"the baseline {base_visit[i]} of this knee is flagged, and "
                    "its change is taken against it",
                }
            )
    flags = pd.DataFrame(rows, columns=list(QC_COLUMNS))
    return QcResult(
        flags=flags,
        flagged=flagged,
        side_checked=side_checked,
        bone_checked=bone_checked,
        bone_change_pct=change,
    )
