"""On which grids is meniscal extrusion measurable? Measured against the synth truth.

Renders the same synthetic knees (kneescope.synth, exact extrusion in the truth) on grids of
the same field of view (112 x 140 x 140 mm) with coarser and coarser voxels, measures their
label maps with the grid limit switched off, and prints the extrusion error (measured minus
truth) per grid. Axis 0 of the synth grid is the knee's medial-lateral axis (sagittal
slices), axes 1-2 the sagittal plane. The validity limit of docs/biomarkers.md
(``MeasureConfig.extrusion_max_spacing_mm``) comes from this table.

    .venv/bin/python benchmarks/extrusion_grids.py [--knees 4] [--grids 1.2x0.56,...]

With ``--osteophytes`` it measures instead, on the full DESS grid, knees with marginal
tibial osteophytes in the mid-coronal slab (2 mm medial and 3 mm lateral, then 3 mm medial
and 2 mm lateral) and with the generator's own random spur positions, and prints the
extrusion of the old rim (outermost tibial bone in the slab) and of the osteophyte-free rim
(mid-coronal, 3D max and mean over the body) against the exact truth
(``KneeTruth.biomarkers``):

    .venv/bin/python benchmarks/extrusion_grids.py --osteophytes --knees 4
"""

from __future__ import annotations

import argparse
import math

import numpy as np

FOV_MM = (112.0, 140.0, 140.0)
# (spacing across the sagittal slices = medial-lateral, in-plane spacing) in mm
GRIDS = (
    (0.7, 140.0 / 384),  # full (OAI DESS)
    (0.7, 0.56),
    (0.7, 0.7),
    (0.7, 1.09375),
    (1.0, 0.56),
    (1.0, 1.0),
    (1.4, 0.56),
    (1.4, 1.09375),
    (112.0 / 48, 140.0 / 128),  # small
)
CASES = ((0, 2, "right"), (1, 4, "left"), (2, 3, "right"), (3, 0, "left"), (4, 1, "right"))


def main() -> None:
    from kneescope.biomarkers import MeasureConfig, measure_knee
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import SizeSpec, sample_knee_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knees", type=int, default=4, help="synthetic knees per grid (<= 5)")
    parser.add_argument(
        "--grids",
        default="",
        help="grids to measure instead of the default ones, e.g. 1.2x0.56,0.85x0.65 "
        "(medial-lateral x in-plane spacing, mm)",
    )
    parser.add_argument(
        "--osteophytes",
        action="store_true",
        help="old vs osteophyte-free rim on knees with spurs in the slab (full grid)",
    )
    args = parser.parse_args()
    if args.osteophytes:
        osteophyte_table(args.knees)
        return
    grids = (
        [tuple(float(v) for v in g.split("x")) for g in args.grids.split(",")]
        if args.grids
        else list(GRIDS)
    )
    # the grid limit off, so that the table shows what the method itself does on each grid
    cfg = MeasureConfig(extrusion_max_spacing_mm=math.inf, extrusion_max_inplane_mm=math.inf)
    print(
        "| grid spacing mm (ML x in-plane) | voxel extent mm along the knee's ML axis "
        "| along its S/A axes | knees | extrusion error mm: median abs "
        "| max abs | not measured (NaN) | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for ml, ip in grids:
        spacing = (ml, ip, ip)
        shape = tuple(round(f / s) for f, s in zip(FOV_MM, spacing, strict=True))
        size = SizeSpec(name="sweep", shape=shape, spacing_mm=spacing)  # type: ignore[arg-type]
        errors: list[float] = []
        extents: list[tuple[float, float]] = []
        nan = 0
        for seed, klg, side in CASES[: args.knees]:
            params = sample_knee_params(np.random.default_rng(seed), klg=klg)
            params = params.model_copy(update={"side": side})
            sample = render_knee(params, size)
            # the voxel's extent along the canonical knee axes (x medial-lateral, y anterior,
            # z superior), as measure_knee computes it along the measured knee frame
            extent = np.abs(sample.to_canonical[:3, :3]).sum(axis=1)
            extents.append((float(extent[0]), float(max(extent[1], extent[2]))))
            m = measure_knee(sample.labels, config=cfg, with_maps=False)
            for men in ("medial", "lateral"):
                value = m.values[f"{men}_meniscus_extrusion_mm"]
                if math.isfinite(value):
                    errors.append(value - sample.truth.extrusion_mm[men])
                else:
                    nan += 1
        err = np.abs(np.asarray(errors)) if errors else np.array([math.nan])
        listed = " ".join(f"{e:+.2f}" for e in errors)
        ext = np.asarray(extents)
        print(
            f"| {ml:.3g} x {ip:.3g} | {ext[:, 0].min():.2f}-{ext[:, 0].max():.2f} "
            f"| {ext[:, 1].min():.2f}-{ext[:, 1].max():.2f} | {args.knees} "
            f"| {np.median(err):.2f} | {err.max():.2f} | {nan} of {2 * args.knees} | {listed} |",
            flush=True,
        )


SPUR_CASES = (  # (seed, KL grade, side)
    (0, 2, "right"),
    (1, 4, "left"),
    (2, 3, "right"),
    (5, 2, "left"),
    (4, 3, "right"),
)


def osteophyte_table(knees: int) -> None:
    """Old (outermost-bone) vs osteophyte-free extrusion against the exact truth."""
    from kneescope.biomarkers import MeasureConfig, measure_knee
    from kneescope.biomarkers.menisci import extrusion_columns
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import FULL, TibialOsteophyte, sample_knee_params

    old_cfg = MeasureConfig(extrusion_rim="outermost-bone")
    placements: list[tuple[str, tuple[TibialOsteophyte, ...] | None]] = [
        (
            "slab: 2 mm medial, 3 mm lateral",
            (
                TibialOsteophyte(medial=True, angle_deg=0.0, radius_mm=2.0),
                TibialOsteophyte(medial=False, angle_deg=0.0, radius_mm=3.0),
            ),
        ),
        (
            "slab: 3 mm medial, 2 mm lateral",
            (
                TibialOsteophyte(medial=True, angle_deg=0.0, radius_mm=3.0),
                TibialOsteophyte(medial=False, angle_deg=0.0, radius_mm=2.0),
            ),
        ),
        ("generator's random positions", None),
    ]
    print(
        "| knee | spurs | meniscus | truth mid-coronal mm | old rim | osteophyte-free rim "
        "| truth 3D max | measured | truth 3D mean | measured |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    errors: dict[str, list[float]] = {"old": [], "mid": [], "max": [], "mean": []}
    for seed, klg, side in SPUR_CASES[:knees]:
        base = sample_knee_params(np.random.default_rng(seed), side=side, klg=klg)  # type: ignore[arg-type]
        for label, spurs in placements:
            params = (
                base if spurs is None else base.model_copy(update={"tibial_osteophytes": spurs})
            )
            if spurs is None:
                spots = ", ".join(
                    f"{'M' if o.medial else 'L'} {o.angle_deg:+.0f} deg"
                    for o in params.tibial_osteophytes or ()
                )
                label = f"random ({params.osteophyte_mm:.1f} mm at {spots})"
            sample = render_knee(params, FULL)
            new = measure_knee(sample.labels, config=MeasureConfig(), with_maps=False).values
            old = measure_knee(sample.labels, config=old_cfg, with_maps=False).values
            truth = sample.truth.biomarkers
            for men in ("medial", "lateral"):
                mid, top, mean = extrusion_columns(men)
                errors["old"].append(old[mid] - truth[mid])
                errors["mid"].append(new[mid] - truth[mid])
                errors["max"].append(new[top] - truth[top])
                errors["mean"].append(new[mean] - truth[mean])
                print(
                    f"| seed {seed} KLG {klg} {side} | {label} | {men} | {truth[mid]:.2f} "
                    f"| {old[mid]:.2f} | {new[mid]:.2f} | {truth[top]:.2f} | {new[top]:.2f} "
                    f"| {truth[mean]:.2f} | {new[mean]:.2f} |",
                    flush=True,
                )
    print()
    print("| extrusion | n | median abs error mm | max abs error mm |")
    print("|---|---|---|---|")
    names = {
        "old": "mid-coronal, old rim (outermost bone)",
        "mid": "mid-coronal, osteophyte-free rim",
        "max": "3D max over the body",
        "mean": "3D mean over the body",
    }
    for key, errs in errors.items():
        e = np.abs(np.asarray(errs))
        e = e[np.isfinite(e)]
        print(f"| {names[key]} | {len(e)} | {np.median(e):.2f} | {e.max():.2f} |")


if __name__ == "__main__":
    main()
