"""Accuracy of kneescope's biomarkers against exact truth.

1. Cartilage thickness on analytic shapes (flat slabs, cylindrical and spherical shells,
   and wedges whose thickness grows 0.3 mm per mm) of 1.0-4.0 mm, voxelised by the exact
   inside test at voxel centres on the OAI DESS grid (0.7 x 0.3646 x 0.3646 mm) in uniformly
   random rigid orientations and sub-voxel offsets: bias and mean absolute error (MAE) over
   interface points whose layer lies >= 2.5 mm inside the field (wedge: where 1-5 mm thick);
   ``--method nearest`` for kneescope's earlier nearest-surface thickness.
2. Synthetic knees (kneescope.synth) on the full DESS grid: plate mean thickness
   and covered area against both synth truth definitions (plain: imposed thickness > 0.15 mm;
   visible: >= half the largest voxel spacing), volumes, denuded area and meniscal extrusion
   against the synth truth; meniscal coverage against kneescope.biomarkers.validation
   (computed from the continuous phantom, plain and visible rule); and the share of the truth
   bone surface that the label map shows covered, per band of imposed thickness.

    .venv/bin/python benchmarks/biomarkers_accuracy.py [--poses 8] [--knees 3] [--size full]
        [--method normal|nearest]

Plate means against the exact truth on the DESS and fine isotropic grids, and pyKNEEr beside
them: benchmarks/thickness_vs_pykneer.py.

Prints Markdown tables (the ones in docs/biomarkers.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kneescope.biomarkers import measure_knee, plate_surfaces
from kneescope.biomarkers.analytic_phantoms import analytic_plate, random_rotation

THICKNESSES_MM = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
KINDS = ("slab", "cylinder", "sphere", "wedge")
PLATES = ("femoral", "medial_tibial", "lateral_tibial", "patellar")


def analytic_table(poses: int, seed: int = 2026, method: str = "normal") -> None:
    rng = np.random.default_rng(seed)
    print(f"Analytic shapes, thickness method {method!r}\n")
    print("| shape | thickness mm | bias mm | MAE mm (mean over poses) | MAE mm (worst pose) |")
    print("|---|---|---|---|---|")
    for kind in KINDS:
        for t in THICKNESSES_MM:
            bias, mae = [], []
            for _ in range(poses):
                plate = analytic_plate(
                    kind,  # type: ignore[arg-type]
                    t,
                    rotation=random_rotation(rng),
                    offset_mm=rng.uniform(-0.5, 0.5, 3),
                )
                surf = plate_surfaces(
                    plate.cartilage,
                    plate.bone,
                    plate.affine,
                    method=method,  # type: ignore[arg-type]
                )
                # evaluated where the layer along the normal lies inside the grid (the
                # phantom's layer is cut by the field of view) and, on the wedge, where the
                # true thickness is 1-5 mm (its thin end is a plate edge)
                pts = surf.bone.vertices_mm
                true = plate.true_thickness_mm(pts)
                tip = pts + true[:, None] * surf.bone.normals
                sel = surf.covered & plate.interior(pts) & plate.interior(tip)
                sel &= (true >= 1.0) & (true <= 5.0)
                w = surf.bone.vertex_area_mm2[sel]
                err = surf.thickness_mm[sel] - true[sel]
                bias.append(float(np.average(err, weights=w)))
                mae.append(float(np.average(np.abs(err), weights=w)))
            print(
                f"| {kind} | {t:.2f} | {np.mean(bias):+.3f} | {np.mean(mae):.3f} "
                f"| {np.max(mae):.3f} |"
            )


def synth_table(knees: int, size_name: str) -> None:
    from kneescope.biomarkers.validation import (
        label_shown_thickness_truth,
        label_visibility_by_thickness,
        synth_tibial_coverage_pct,
    )
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import sample_knee_params, size_spec
    from kneescope.synth.truth import plate_surface_truth

    size = size_spec(size_name)
    cases = [(0, 2, "right"), (1, 4, "left"), (2, 3, "right"), (3, 0, "left"), (4, 1, "right")]
    print(f"\nSynthetic knees, grid {size_name} {size.shape} {size.spacing_mm}\n")
    print(
        "Thickness and covered area against both truth definitions: plain (imposed thickness "
        "> 0.15 mm) and visible (>= half the largest voxel spacing).\n"
    )
    print(
        "| knee | plate | thickness truth plain mm | truth visible mm | measured "
        "| error % vs plain | error % vs visible | volume error % "
        "| denuded truth mm2 | measured mm2 "
        "| covered area truth plain mm2 | truth visible mm2 | measured mm2 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    extrusion_rows = []
    visibility_rows = []
    reference_rows = []
    for seed, klg, side in cases[:knees]:
        params = sample_knee_params(np.random.default_rng(seed), klg=klg)
        params = params.model_copy(update={"side": side})
        sample = render_knee(params, size)
        t0 = time.perf_counter()
        m = measure_knee(sample.labels)
        seconds = time.perf_counter() - t0
        name = f"seed {seed} KLG {klg} {side} ({seconds:.1f} s)"
        v = m.values
        for plate in PLATES:
            pt = sample.truth.plates[plate]
            th = v[f"{plate}_cartilage_thickness_mean_mm"]
            vol = v[f"{plate}_cartilage_volume_mm3"]
            covered = v[f"{plate}_subchondral_bone_area_mm2"] - v[f"{plate}_denuded_bone_area_mm2"]
            print(
                f"| {name} | {plate} | {pt.thickness_mean_mm:.3f} "
                f"| {pt.thickness_mean_visible_mm:.3f} | {th:.3f} "
                f"| {100 * (th / pt.thickness_mean_mm - 1):+.1f} "
                f"| {100 * (th / pt.thickness_mean_visible_mm - 1):+.1f} "
                f"| {100 * (vol / pt.volume_mm3 - 1):+.1f} "
                f"| {pt.denuded_area_mm2:.1f} | {v[f'{plate}_denuded_bone_area_mm2']:.1f} "
                f"| {pt.area_mm2:.0f} | {pt.area_visible_mm2:.0f} | {covered:.0f} |"
            )
            bands = label_visibility_by_thickness(
                plate, sample.shape, sample.labels.array, sample.to_canonical
            )
            visibility_rows.append((name, plate, bands))
            shown_mm, shown_mm2 = label_shown_thickness_truth(
                plate, sample.shape, sample.labels.array, sample.to_canonical
            )
            other = [
                plate_surface_truth(plate, sample.shape, pt.volume_mm3, visible_threshold_mm=x)
                for x in (0.25, 0.45)
            ]
            means = (
                pt.thickness_mean_mm,
                other[0].thickness_mean_visible_mm,
                pt.thickness_mean_visible_mm,
                other[1].thickness_mean_visible_mm,
                shown_mm,
            )
            errors = " | ".join(f"{100 * (th / x - 1):+.1f}" for x in means)
            reference_rows.append(
                f"| {name} | {plate} | {errors} | {shown_mm2:.0f} | {pt.area_visible_mm2:.0f} "
                f"| {covered:.0f} |"
            )
        threshold_mm = sample.truth.plates["medial_tibial"].visible_threshold_mm
        for men in ("medial", "lateral"):
            medial = men == "medial"
            extrusion_rows.append(
                (
                    name,
                    men,
                    sample.truth.extrusion_mm[men],
                    v[f"{men}_meniscus_extrusion_mm"],
                    sample.truth.meniscus_volume_mm3[men],
                    v[f"{men}_meniscus_volume_mm3"],
                    synth_tibial_coverage_pct(sample.shape, medial),
                    synth_tibial_coverage_pct(sample.shape, medial, threshold_mm),
                    v[f"{men}_tibial_coverage_pct"],
                )
            )
    print(
        "\n| knee | meniscus | extrusion truth mm | measured | error mm | volume error % "
        "| coverage truth plain % | truth visible % | measured "
        "| error points vs plain | vs visible |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, men, ext_t, ext_m, vol_t, vol_m, cov_p, cov_v, cov_m in extrusion_rows:
        print(
            f"| {name} | {men} | {ext_t:.2f} | {ext_m:.2f} | {ext_m - ext_t:+.2f} "
            f"| {100 * (vol_m / vol_t - 1):+.1f} | {cov_p:.1f} | {cov_v:.1f} | {cov_m:.1f} "
            f"| {cov_m - cov_p:+.1f} | {cov_m - cov_v:+.1f} |"
        )
    print(
        "\nMeasured plate mean thickness against candidate references (error %): plain "
        "(> 0.15 mm), imposed thickness >= 0.25 / 0.35 (visible, half the largest spacing) / "
        "0.45 mm, and the imposed thickness averaged over exactly the bone that the label map "
        "shows covered (label_shown_thickness_truth, no threshold); areas in mm2.\n"
    )
    print(
        "| knee | plate | vs plain | vs >= 0.25 | vs >= 0.35 (visible) | vs >= 0.45 "
        "| vs label-shown | label-shown area | visible area | measured covered area |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in reference_rows:
        print(row)
    print(
        "\nShare of the truth bone surface that the label map shows covered by the plate's "
        "cartilage, per band of imposed thickness (label_visibility_by_thickness; no "
        "biomarker code involved); cells: share (truth area mm2).\n"
    )
    bands0 = visibility_rows[0][2] if visibility_rows else []
    header = " | ".join(f"{lo:.2f}-{hi:.2f} mm" for lo, hi, _, _ in bands0)
    print(f"| knee | plate | {header} |")
    print("|---|---|" + "---|" * len(bands0))
    for name, plate, bands in visibility_rows:
        cells = " | ".join(f"{share:.2f} ({area:.0f})" for _, _, area, share in bands)
        print(f"| {name} | {plate} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=8, help="random poses per shape")
    parser.add_argument("--knees", type=int, default=3, help="synthetic knees (0: none)")
    parser.add_argument("--size", default="full", help="synth grid: full or small")
    parser.add_argument("--method", default="normal", choices=("normal", "nearest"))
    args = parser.parse_args()
    analytic_table(args.poses, method=args.method)
    if args.knees:
        synth_table(args.knees, args.size)


if __name__ == "__main__":
    main()
