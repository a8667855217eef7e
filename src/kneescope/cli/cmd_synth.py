"""``kneescope synth``: write a synthetic OAI-style knee cohort with known truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kneescope.cli.common import JsonOpt, emit, stderr


def synth(
    out: Annotated[
        Path,
        typer.Option(
            "--output", "-o", "--out", help="Output folder (created).", show_default=False
        ),
    ],
    subjects: Annotated[int, typer.Option("--subjects", "-n", help="Participants.")] = 4,
    visits: Annotated[
        str, typer.Option("--visits", help="OAI visit codes, e.g. V00,V01,V03.")
    ] = "V00,V01",
    size: Annotated[
        Literal["small", "full", "full-thick", "demo"],
        typer.Option(
            "--size",
            help="MRI grid: small (48x128x128 voxels, fast), full (160x384x384, OAI DESS), "
            "full-thick (80x384x384: full with 1.4 mm slices) or demo (128x352x352, 0.85 mm "
            "slices).",
            case_sensitive=False,
        ),
    ] = "small",
    contrast: Annotated[
        Literal["dess", "iw-tse-fs", "t1-gre"],
        typer.Option(
            "--contrast",
            help="MRI contrast: dess (water-excitation DESS, as the OAI), iw-tse-fs "
            "(intermediate-weighted fat-suppressed TSE) or t1-gre (T1-weighted gradient echo).",
            case_sensitive=False,
        ),
    ] = "dess",
    tissues: Annotated[
        bool,
        typer.Option(
            "--tissues",
            help="Also write each MRI series' tissue map (every tissue the generator draws, "
            "values 0-25) to tissues/, named like its label map.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Master seed (same seed, same bytes).")] = 0,
    treatment_effect: Annotated[
        float,
        typer.Option(
            "--treatment-effect",
            help="Fraction by which treatment slows progression (0: no treatment arm).",
        ),
    ] = 0.0,
    randomise: Annotated[
        bool,
        typer.Option(
            "--randomise",
            help="Randomise subjects to a control and a treatment arm (TRTARM) even when "
            "--treatment-effect is 0 (a null trial).",
        ),
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes.")] = 1,
    no_mri: Annotated[bool, typer.Option("--no-mri", help="Skip the MRI series.")] = False,
    no_xray: Annotated[
        bool, typer.Option("--no-xray", help="Skip knee and full-leg radiographs.")
    ] = False,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Add the new subjects to the synthetic cohort already in the output folder; "
            "its truth, clinical and contents tables keep every old row. Subjects of the "
            "same --seed continue its numbering (-n 2, then -n 3 --append = -n 5).",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace the synthetic cohort in the output folder (swapped in only once "
            "the new one is complete).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate N synthetic subjects (MRI, PA knee and full-leg radiographs, label maps,
    clinical and truth tables) in the OAI folder layout. A folder that is not empty is refused
    unless --append or --overwrite is given; nothing already there is ever lost."""
    from kneescope.errors import InputError
    from kneescope.synth.cohort import CohortSpec
    from kneescope.synth.generate import SynthMode, generate_cohort
    from kneescope.synth.params import size_spec
    from kneescope.synth.visits import parse_visits

    size_spec(size)
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    if subjects < 1:
        raise InputError(f"--subjects must be at least 1, got {subjects}")
    if not 0.0 <= treatment_effect <= 1.0:
        raise InputError(f"--treatment-effect must lie in 0..1, got {treatment_effect}")
    if append and overwrite:
        raise InputError("--append and --overwrite exclude each other; give one of them")
    spec = CohortSpec(
        subjects=subjects,
        visits=parse_visits(visits),
        size=size,
        seed=seed,
        treatment_effect=treatment_effect,
        randomise=randomise,
        mri=not no_mri,
        radiographs=not no_xray,
        full_leg=not no_xray,
        contrast=contrast,
        tissues=tissues,
    )
    err = stderr()
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if not as_json:
            elapsed = time.perf_counter() - start
            err.print(f"subject {done}/{total} ({elapsed:.1f} s)", highlight=False)

    mode: SynthMode = "append" if append else "overwrite" if overwrite else "new"
    summary = generate_cohort(spec, out, jobs=jobs, progress=progress, mode=mode)
    payload = {
        "out": str(summary.out),
        "mode": mode,
        "subjects": summary.subjects,
        "cohort_subjects": summary.cohort_subjects,
        "first_index": summary.first_index,
        "visits": list(summary.visits),
        "mri_series": summary.mri_series,
        "knee_radiographs": summary.radiographs,
        "full_leg_radiographs": summary.full_leg,
        "seconds": round(time.perf_counter() - start, 2),
    }
    emit(payload, as_json, lambda console: _render(console, payload))


def _render(console: Any, payload: dict[str, Any]) -> None:
    added = " added" if payload["mode"] == "append" else ""
    console.print(
        f"wrote {payload['subjects']} subjects{added} x {len(payload['visits'])} visits to "
        f"{payload['out']}: {payload['mri_series']} MRI series, {payload['knee_radiographs']} "
        f"knee and {payload['full_leg_radiographs']} full-leg radiographs "
        f"({payload['seconds']} s); the cohort has {payload['cohort_subjects']} subjects",
        markup=False,
        highlight=False,
    )
