"""The ``hka`` step: leg alignment of a full-leg standing film (item unit ``full_leg``).

Reads the item's film (a single-frame DICOM file, or a folder holding one; or a 2D ``image``
an earlier step loaded), runs the full-leg cascade
(:func:`kneescope.capabilities.landmarks.full_leg.measure_full_leg`) and returns per leg the
HKA angle, the mechanical axis deviation, the three landmarks in film mm and a reason when
the leg cannot be measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn
from kneescope.cohort.step import BaseStep, StepContext, StepResult
from kneescope.errors import ConfigError, InputError
from kneescope.io.digest import file_sha256

CAPABILITY = "landmarks"
SIDES = ("right", "left")
LANDMARKS = ("hip", "knee", "ankle")


def _columns() -> tuple[ResultColumn, ...]:
    columns: list[ResultColumn] = []
    for side in SIDES:
        columns += [
            ResultColumn(
                f"hka_{side}_deg",
                "float",
                "deg",
                f"{side} leg: hip-knee-ankle angle, 180 neutral, < 180 varus",
            ),
            ResultColumn(
                f"mad_{side}_mm",
                "float",
                "mm",
                f"{side} leg: knee centre from the hip-ankle line (film mm), + lateral (varus)",
            ),
        ]
        for name in LANDMARKS:
            what = {"hip": "femoral head centre", "knee": "knee centre", "ankle": "ankle centre"}
            columns += [
                ResultColumn(
                    f"{name}_{side}_row_mm", "float", "mm", f"{side} {what[name]}: film row, mm"
                ),
                ResultColumn(
                    f"{name}_{side}_column_mm",
                    "float",
                    "mm",
                    f"{side} {what[name]}: film column (to the patient's left), mm",
                ),
            ]
        columns.append(
            ResultColumn(f"leg_{side}_reason", "str", "", f"why the {side} leg has no HKA")
        )
    return tuple(columns)


HKA_RESULTS = _columns()
"""The columns the ``hka`` step writes (per side: HKA, MAD, landmarks, reason)."""


def read_film(path: Path) -> Any:
    """The full-leg film of an item: a file, or a folder holding one file
    (:func:`kneescope.io.readers.read_film`).

    Raises:
        InputError: no such file, a folder without exactly one file, or not a 2D image.
    """
    from kneescope.io.readers import read_film as read_one

    return read_one(path, "full-leg film")


def _model_hash(model: object, default: str) -> str:
    from kneescope.models.pretrained import step_model_path

    path = step_model_path(model, default)
    name = str(model or default)
    if not path.is_file():
        raise ConfigError(
            f"hka: no landmark model file or shipped model called {name!r}; give the "
            "file written by `kneescope train` or a name from `kneescope models list`"
        )
    try:
        return file_sha256(path)[:16]
    except OSError as exc:
        raise ConfigError(f"hka: cannot read model {path} ({exc.strerror})") from None


class Hka(BaseStep):
    """HKA angle of both legs of the item's full-leg film (cascade of two landmark models).

    Options:
        coarse_model: the coarse landmark model (file, name in ``WS/models/`` or shipped
            name); default the shipped ``full-leg-coarse``.
        fine_model: the fine landmark model; default the shipped ``full-leg-fine``.
    """

    name = "hka"
    version = "1"
    capability = CAPABILITY
    results: ClassVar[tuple[ResultColumn, ...]] = HKA_RESULTS
    model_options: ClassVar[tuple[str, ...]] = ("coarse_model", "fine_model")

    @classmethod
    def model_hash_for(cls, options: Mapping[str, Any]) -> str:
        """Both models' hashes (16 hex each), joined."""
        from kneescope.capabilities.landmarks.full_leg import COARSE_MODEL, FINE_MODEL

        coarse = _model_hash(options.get("coarse_model"), COARSE_MODEL)
        fine = _model_hash(options.get("fine_model"), FINE_MODEL)
        return f"{coarse}{fine}"

    def __init__(self, coarse_model: str | None = None, fine_model: str | None = None) -> None:
        self.coarse_model = coarse_model
        self.fine_model = fine_model
        self._hash = self.model_hash_for({"coarse_model": coarse_model, "fine_model": fine_model})
        self._models: tuple[Any, Any] | None = None

    @property
    def model_hash(self) -> str:
        return self._hash

    def setup(self) -> None:
        from kneescope.capabilities.landmarks.full_leg import (
            COARSE_MODEL,
            FINE_MODEL,
            load_full_leg_model,
        )

        self._models = (
            load_full_leg_model(self.coarse_model, COARSE_MODEL),
            load_full_leg_model(self.fine_model, FINE_MODEL),
        )

    def run(self, item: Item, context: StepContext) -> StepResult:
        from kneescope.capabilities.landmarks.full_leg import measure_full_leg

        if self._models is None:
            self.setup()
        assert self._models is not None
        film = context.data.get("image")
        if film is None or getattr(film, "ndim", 0) != 2:  # none, or a series read as 3D
            if item.path is None:
                raise InputError(f"item {item.item_id} has no film; give the film's path")
            with context.phase("read"):
                film = read_film(Path(item.path))
        with context.phase("infer"):
            legs = measure_full_leg(film, coarse=self._models[0], fine=self._models[1])
        values: dict[str, Any] = {}
        for leg in legs:
            side = leg.side
            values[f"hka_{side}_deg"] = leg.hka_deg
            values[f"mad_{side}_mm"] = leg.mad_mm
            for name in LANDMARKS:
                point = getattr(leg, f"{name}_mm")
                values[f"{name}_{side}_row_mm"] = None if point is None else point[0]
                values[f"{name}_{side}_column_mm"] = None if point is None else point[1]
            values[f"leg_{side}_reason"] = leg.reason
        return StepResult(values=values)
