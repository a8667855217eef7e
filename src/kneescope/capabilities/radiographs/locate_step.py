"""The ``locate_knee`` step: find the item's knee on a bilateral PA knee film.

Pipeline: ``locate_knee -> [kl_grade ->] xray_jsw`` with items of unit ``radiograph_knee``
(one item per knee of a film: the item's ``side`` names the knee). It reads the item's film
itself (a DICOM file, or a catalog series folder holding one file; data ``image`` from an
earlier step is used when it is a 2D film) and writes:

- ``knee_roi``: the standard ROI of the item's knee (``(700, 700)`` float32, 140 mm at
  0.2 mm, right frame; :mod:`kneescope.xray.roi`), or None when the knee cannot be graded
  (not found, a lateral view, an implant, a side conflict): later steps then record no value
  and the reason, never a made-up grade;
- ``other_knee_roi``: the contralateral knee's ROI (right frame) when it is gradable too,
  else None (for networks that see both knees);
- ``knee_reason``: the reason (None when gradable).

Columns (capability ``radiographs``): the knee's side and how it was decided, the knee
centre on the film, the joint-line angle, the pixel spacing and its DICOM source, gradable
and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, Scalar, StepContext, StepResult
from kneescope.errors import InputError
from kneescope.xray.locate import FilmKnees, KneeLocation

CAPABILITY = "radiographs"

LOCATE_RESULTS: tuple[ResultColumn, ...] = (
    ResultColumn("knee_side", "str", "", "the knee of the film this item is (right or left)"),
    ResultColumn("knee_side_source", "str", "", "how the knee's side was decided"),
    ResultColumn("knee_found", "bool", "", "the knee was found on the film"),
    ResultColumn("knee_centre_row_px", "float", "px", "knee centre: film row (0 = top)"),
    ResultColumn("knee_centre_col_px", "float", "px", "knee centre: film column (0 = left)"),
    ResultColumn("joint_angle_deg", "float", "deg", "in-plane angle of the joint line"),
    ResultColumn("film_spacing_mm", "float", "mm", "film pixel spacing used (columns)"),
    ResultColumn(
        "spacing_source",
        "str",
        "",
        "where the spacing came from: PixelSpacing, ImagerPixelSpacing or affine",
    ),
    ResultColumn("gradable", "bool", "", "the knee can be graded and measured"),
    ResultColumn("reason", "str", "", "why the knee cannot be graded (empty: it can)"),
)
"""Columns of ``locate_knee``."""


def read_film(path: Path) -> Any:
    """The knee film of an item: a file, or a folder holding one file
    (:func:`kneescope.io.readers.read_film`).

    Raises:
        InputError: no such file, a folder without exactly one file, or not a 2D image.
    """
    from kneescope.io.readers import read_film as read_one

    return read_one(path, "knee film")


def location_values(knees: FilmKnees, knee: KneeLocation) -> dict[str, Scalar]:
    """The ``locate_knee`` columns of one knee of a located film."""
    centre = knee.centre_rc
    return {
        "knee_side": knee.side,
        "knee_side_source": knee.side_source,
        "knee_found": knee.found,
        "knee_centre_row_px": None if centre is None else round(centre[0], 2),
        "knee_centre_col_px": None if centre is None else round(centre[1], 2),
        "joint_angle_deg": knee.joint_angle_deg,
        "film_spacing_mm": float(knees.spacing_mm[1]),
        "spacing_source": knees.spacing_source,
        "gradable": knee.gradable,
        "reason": knee.reason or "",
    }


class LocateKnee(BaseStep):
    """Find the item's knee on its bilateral film (data ``image``) and cut its standard ROI.

    Options:
        side: ``auto`` (the item's side; an item without one is refused), ``right`` or
            ``left``.
    """

    name = "locate_knee"
    version = "1"
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = LOCATE_RESULTS
    writes: ClassVar[tuple[str, ...]] = ("knee_roi", "other_knee_roi", "knee_reason")

    def __init__(self, side: str = "auto", **options: Any) -> None:
        if options:
            raise InputError(f"locate_knee options: unknown {sorted(options)}; it takes only side")
        if side not in ("auto", "right", "left"):
            raise InputError(f"locate_knee side {side!r} is not one of auto, right, left")
        self.side = side

    @classmethod
    def results_for(cls, options: Mapping[str, Any]) -> tuple[ResultColumn, ...]:
        del options
        return LOCATE_RESULTS

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.xray.locate import locate_knees

        side = item.side if self.side == "auto" else self.side
        if side not in ("right", "left"):
            raise InputError(
                f"item {item.item_id} names no knee (side {item.side!r}); select films with "
                "items.unit = 'radiograph_knee' (one item per knee), give a side column in "
                "the item list, or set the step's side option"
            )
        film = context.data.get("image")
        if film is None:
            if item.path is None:
                raise InputError(f"item {item.item_id} has no film; give its path")
            with context.phase("read"):
                film = read_film(Path(item.path))
        if getattr(film, "ndim", 0) != 2:
            raise InputError(
                f"item {item.item_id}: locate_knee needs a 2D knee radiograph, got an image of "
                f"shape {getattr(film, 'shape', '?')}"
            )
        with context.phase("preprocess"):
            knees = locate_knees(film)
        knee = knees.knee(side)
        other = knees.knee("left" if side == "right" else "right")
        return StepResult(
            values=location_values(knees, knee),
            data={
                "knee_roi": knee.roi if knee.gradable else None,
                "other_knee_roi": other.roi if other.gradable else None,
                "knee_reason": knee.reason,
            },
        )


__all__ = ["CAPABILITY", "LOCATE_RESULTS", "LocateKnee", "location_values", "read_film"]
