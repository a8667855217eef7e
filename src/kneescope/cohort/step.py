"""The Step protocol: one stage of a cohort pipeline (load, segment, measure, ...).

A step declares what it reads and writes (names of in-memory values passed between steps in
one item), its version and, if it uses one, the hash of its model. The runner calls
``setup()`` once per worker process (load a model once, not once per scan), then
``run(item, context)`` for every item. ``run`` returns a :class:`StepResult`: scalar values
for the results table, in-memory data for later steps, and the per-item output files it wrote
(always through :meth:`StepContext.write_output`, which writes atomically).

Plugging in a new step needs no change to the runner: register the class under a short name
in the ``kneescope.steps`` entry-point group of an installed package and name it in the
pipeline config (see :mod:`kneescope.cohort.step_registry`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from kneescope.cohort.item import Item
from kneescope.cohort.result_schema import ResultColumn

if TYPE_CHECKING:
    from kneescope.catalog.view import CatalogView

Phase = Literal["read", "preprocess", "infer", "postprocess", "measure", "write"]
PHASES: tuple[Phase, ...] = ("read", "preprocess", "infer", "postprocess", "measure", "write")
"""Timing phases stored per item and summarised per run."""

Scalar = float | int | str | bool | None


@dataclass
class StepResult:
    """What one step returns for one item.

    Attributes:
        values: scalar columns for the results table (names must be unique across steps).
        data: in-memory values for later steps; keys must equal the step's ``writes``.
        files: output files written through ``context.write_output`` (name -> absolute path).
    """

    values: dict[str, Scalar] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Step(Protocol):
    """One pipeline stage. Implementations are plain classes built from config options.

    Class attributes:
        name: short name used in configs, timings and provenance.
        version: bump it when the step's results change; a new version re-runs items.
        reads: names of data this step needs (produced by earlier steps' ``writes``).
        writes: names of data this step produces for later steps.
        prefetchable: True for pure-I/O steps that read only the item's input (they run ahead
            of compute on a reader thread).
        capability: the capability the step belongs to (``"segmentation"``, ``"biomarkers"``,
            a plug-in's name); the catalog stores every value under it.
        results: every column the step may put in the results table
            (:class:`~kneescope.cohort.result_schema.ResultColumn`: name, kind, unit). The
            runner checks each value a step returns against them: an undeclared name or a
            value of the wrong kind is a bug in the step and stops the run.

    Optional class attributes (read without instantiating the step):
        model_options: names of options that name a model file; the runner resolves them as
            ``kneescope segment --model`` does (a path relative to the config file's folder,
            else a name in ``WS/models/``) before the step is built.
        path_options: names of options holding paths; relative ones are resolved against the
            config file's folder.
        model_hash_for(options): classmethod; hash of the model the step would use with these
            (resolved) options, "" when it uses none. Part of every item's key.
        results_for(options): classmethod; the columns the step declares with these options
            (default ``results``), for a step whose columns depend on its options.

    :class:`BaseStep` gives every optional part a default.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    capability: ClassVar[str]
    results: ClassVar[tuple[ResultColumn, ...]]
    reads: ClassVar[tuple[str, ...]]
    writes: ClassVar[tuple[str, ...]]
    prefetchable: ClassVar[bool]

    def setup(self) -> None:
        """Prepare once per worker process (load a model, warm a cache)."""
        ...

    def run(self, item: Item, context: StepContext) -> StepResult:
        """Process one item; raise a KneescopeError subclass for bad input."""
        ...


class BaseStep:
    """Defaults for the optional parts of the Step protocol; subclass it to write a step.

    A subclass sets ``name``, ``capability`` and ``results`` (every column it returns, with
    units: the defaults declare none, so a step that returns values must declare them) and
    implements ``run``.
    """

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "1"
    capability: ClassVar[str] = ""
    results: ClassVar[tuple[ResultColumn, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    prefetchable: ClassVar[bool] = False
    model_options: ClassVar[tuple[str, ...]] = ()
    path_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def model_hash_for(cls, options: Mapping[str, Any]) -> str:
        """Hash of the model used with ``options`` ("": none)."""
        del options
        return ""

    @classmethod
    def results_for(cls, options: Mapping[str, Any]) -> tuple[ResultColumn, ...]:
        """The columns declared with ``options`` (default: ``results``)."""
        del options
        return cls.results

    def setup(self) -> None:
        return None


def declared_results(cls: type[Any], options: Mapping[str, Any]) -> tuple[ResultColumn, ...]:
    """The columns a step class declares with ``options`` (``results_for`` or ``results``)."""
    hook = getattr(cls, "results_for", None)
    columns = hook(options) if hook is not None else getattr(cls, "results", ())
    return tuple(columns)


_KIND_TYPES: dict[str, tuple[type[Any], ...]] = {
    "float": (float, int),
    "int": (int,),
    "str": (str,),
    "bool": (bool,),
}


def value_problem(step_name: str, columns: Mapping[str, ResultColumn], key: str, value: Any) -> str:
    """Why ``value`` may not go in column ``key`` of a step declaring ``columns`` ("" if it may).

    None (a missing value) fits every kind; an int fits a float column; a bool is not a
    number. Values are plain Python scalars (``numpy.float64`` is a float), not numpy ones:
    they are stored as JSON.
    """
    column = columns.get(key)
    if column is None:
        return (
            f"step {step_name!r} returned column {key!r}, which it does not declare; "
            f"add it to the step's results (declared: {', '.join(columns) or 'none'})"
        )
    if value is None:
        return ""
    numeric = column.kind in ("float", "int")
    if isinstance(value, _KIND_TYPES[column.kind]) and not (numeric and isinstance(value, bool)):
        return ""
    found, shown, hint = type(value).__name__, repr(value), ""
    if isinstance(value, np.generic):
        found, shown = f"numpy.{found}", str(value)
        hint = "; convert it with float(), int() or bool()"
    return (
        f"step {step_name!r} returned {found} {shown:.60} for column {key!r}, declared "
        f"{column.kind}{hint}"
    )


class StepContext:
    """Per-item context handed to each step: data from earlier steps, timers, output folder.

    Args:
        output_dir: folder for this item's output files (created on first write).
        data: values produced by earlier steps, by name.
        catalog: read access to the run's catalog (clinical variables, other visits, the
            subject's series; see :class:`kneescope.catalog.view.CatalogView`); None when
            the run has no catalog. What a step reads there is not part of the item's key:
            a step whose values depend on it re-runs when its version or options change.
    """

    def __init__(
        self,
        output_dir: Path,
        data: dict[str, Any] | None = None,
        catalog: CatalogView | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.data: dict[str, Any] = dict(data or {})
        self.catalog = catalog
        self.phase_s: dict[str, float] = {}

    @contextmanager
    def phase(self, name: Phase) -> Iterator[None]:
        """Time a block of work under one of :data:`PHASES` (seconds, accumulated)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phase_s[name] = self.phase_s.get(name, 0.0) + time.perf_counter() - start

    def write_output(self, filename: str, write: Callable[[Path], None]) -> str:
        """Write one output file atomically: ``write(tmp_path)`` then rename into place.

        A reader never sees a half-written file; if ``write`` raises, its temporary is
        removed (:func:`kneescope.io.atomic.atomic_write`); a killed worker leaves at most a
        hidden ``.<filename>.tmp-<pid>-*`` file. Returns the final absolute path.
        """
        from kneescope.io.atomic import atomic_write

        with self.phase("write"):
            self.output_dir.mkdir(parents=True, exist_ok=True)
            final = atomic_write(self.output_dir / filename, write)
        return str(final)
