"""Options of the ``measure`` step."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from kneescope.biomarkers.measure_config import MeasureConfig

VOLUME_STRUCTURES = (
    "femoral_cartilage",
    "medial_tibial_cartilage",
    "lateral_tibial_cartilage",
    "patellar_cartilage",
    "medial_meniscus",
    "lateral_meniscus",
)
"""Structures whose volume is measured (``<structure>_volume_mm3``): the only keys
``volume_ranges_mm3`` may hold in a pipeline, so that every QC column is declared."""


class MeasureStepConfig(MeasureConfig):
    """Options of the ``measure`` step (frozen; unknown options are refused).

    Attributes:
        side: ``"auto"`` (the item's side when known, else the one the anatomy tells),
            ``"right"`` or ``"left"``.
        labels: the label scheme of the items' label maps: ``"kneescope"``, ``"oai-zib"``,
            ``"oaizib-cm"``, or the path of a JSON file mapping structure names to values
            (:mod:`kneescope.biomarkers.label_schemes`; checked when the step is made).
        maps: keep each knee's 2D cartilage thickness maps (one ``thickness_maps.npz`` per
            item, results column ``file_measure_thickness_maps``; ~50-150 kB): what
            ``kneescope report`` draws on the knee pages. ``false``: no file.
        every other field: as :class:`kneescope.biomarkers.measure_config.MeasureConfig`.
    """

    side: Literal["auto", "right", "left"] = "auto"
    labels: str = "kneescope"
    maps: bool = True

    @field_validator("labels")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        from kneescope.biomarkers.label_schemes import resolve_scheme
        from kneescope.errors import InputError

        try:
            resolve_scheme(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("volume_ranges_mm3")
    @classmethod
    def _known_structures(cls, value: dict[str, object]) -> dict[str, object]:
        unknown = sorted(set(value) - set(VOLUME_STRUCTURES))
        if unknown:
            raise ValueError(
                f"volume_ranges_mm3 names {unknown}, which measure has no volume of; "
                f"use {', '.join(VOLUME_STRUCTURES)}"
            )
        return value

    def measure_config(self) -> MeasureConfig:
        """The options :func:`kneescope.biomarkers.measure_knee` takes (without ``side``,
        ``labels`` and ``maps``)."""
        return MeasureConfig.model_validate(self.model_dump(exclude={"side", "labels", "maps"}))
