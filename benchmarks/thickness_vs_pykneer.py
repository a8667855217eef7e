"""Plate mean cartilage thickness: kneescope against the exact synthetic truth and pyKNEEr.

For synthetic knees (seeds 0-4: KLG 2, 4, 3, 0, 1; right, left, ...) rendered on the OAI DESS
grid (``full``, 0.7 x 0.365 x 0.365 mm) and on the fine isotropic grid (``fine-iso``,
0.365 mm), per plate:

- the exact truth ``PlateTruth.thickness_mean_mm`` (imposed thickness along the bone normal,
  area-weighted over bone where it exceeds 0.15 mm; kneescope.synth.truth);
- kneescope (``measure_knee``, the default method: thickness along the bone normal), the
  same without its smoothing (``smoothing_mm=0``: shows that the smoothing does not move
  plate means) and kneescope's earlier nearest-surface method (``method="nearest"``), all on
  the plate's crop as ``measure_knee`` makes it;
- with ``--pykneer-src DIR`` (a checkout of github.com/sbonaretti/pyKNEEr; its
  ``pykneer/pykneer`` folder is put on ``sys.path``, and its ``cylinder_fitting`` needs
  matplotlib importable, e.g. ``PYTHONPATH=<dir with matplotlib>``): pyKNEEr's own
  ``morphology_functions.separate_cartilage`` and ``nearest_neighbor_thickness``, called as
  its pipeline calls them (``morphology_for_nb``: the first returned point set is named the
  articular one, algorithm 1 measures from the second to the nearest point of the first; the
  plate value is the unweighted mean over points, as its thickness table), on the same
  plate mask, sagittal slices (the synth grid's first axis, medial-lateral) as its slices.
  pyKNEEr's contour separation (a circle fitted per slice) is made for the femur; it runs
  on every plate here, as asked, and its tibial and patellar values show what it gives.

    .venv/bin/python benchmarks/thickness_vs_pykneer.py [--knees 4] [--sizes full,fine-iso]
        [--pykneer-src DIR] [--pykneer-sizes full] [--cache DIR]

``--cache DIR`` keeps rendered label maps (``<size>_s<seed>.npz`` + truth ``.json``) for
reruns. Prints Markdown tables (docs/biomarkers.md, Validation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from kneescope.biomarkers import measure_knee, plate_surfaces
from kneescope.biomarkers.crop import cropped_affine, expand_box
from kneescope.core.labels import CARTILAGE_PLATES

CASES = [(0, 2, "right"), (1, 4, "left"), (2, 3, "right"), (3, 0, "left"), (4, 1, "right")]
PLATES = ("femoral", "medial_tibial", "lateral_tibial", "patellar")


def _knee(
    seed: int, klg: int, side: str, size_name: str, cache: Path | None
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64], dict[str, Any]]:
    """(labels, affine, truth as JSON) of one knee, rendered or from the cache."""
    stem = f"{size_name}_s{seed}"
    if cache is not None and (cache / f"{stem}.npz").exists():
        data = np.load(cache / f"{stem}.npz")
        truth = json.loads((cache / f"{stem}.json").read_text())["truth"]
        return data["labels"], data["affine"], truth
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import sample_knee_params, size_spec

    params = sample_knee_params(np.random.default_rng(seed), klg=klg)
    sample = render_knee(params.model_copy(update={"side": side}), size_spec(size_name))
    truth = sample.truth.model_dump(mode="json")
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            cache / f"{stem}.npz", labels=sample.labels.array, affine=sample.labels.affine_ras
        )
        (cache / f"{stem}.json").write_text(json.dumps({"truth": truth}))
    return sample.labels.array, sample.labels.affine_ras, truth


def _crop(
    labels: npt.NDArray[Any], affine: npt.NDArray[np.float64], plate: str
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """The plate's cartilage and bone masks on measure_knee's crop (bbox + 4 mm)."""
    cart_label, bone_label = CARTILAGE_PLATES[plate]
    found = ndimage.find_objects((labels == cart_label).astype(np.uint8))[0]
    assert found is not None
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    box = expand_box(found, 4.0, spacing, labels.shape)  # type: ignore[arg-type]
    crop = labels[box]
    return crop == cart_label, crop == bone_label, cropped_affine(affine, box)


def _plate_mean(
    cart: npt.NDArray[np.bool_], bone: npt.NDArray[np.bool_], aff: Any, **kw: Any
) -> float:
    surf = plate_surfaces(cart, bone, aff, **kw)
    w = surf.bone.vertex_area_mm2[surf.covered]
    return float(np.average(surf.thickness_mm[surf.covered], weights=w))


def _pykneer_mean(mf: Any, cart: npt.NDArray[np.bool_], affine: Any) -> float:
    """pyKNEEr's plate thickness (mm) on a cartilage mask whose first axis is medial-lateral."""
    import SimpleITK as sitk  # noqa: N813

    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    # pyKNEEr slices mask[:, :, s] of the SimpleITK array: put the sagittal axis last
    # (int32: its slice test sums pixels in the image's type)
    img = sitk.GetImageFromArray(
        np.ascontiguousarray(np.transpose(cart, (1, 2, 0))).astype(np.int32)
    )
    img.SetSpacing((float(spacing[0]), float(spacing[2]), float(spacing[1])))  # type: ignore[no-untyped-call]
    arti, bone = mf.separate_cartilage(img)  # as morphology_for_nb names them
    thickness = mf.nearest_neighbor_thickness(bone, arti)  # its algorithm 1
    return float(np.average(thickness))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--knees", type=int, default=4)
    ap.add_argument("--sizes", default="full,fine-iso")
    ap.add_argument("--pykneer-src", type=Path, default=None)
    ap.add_argument("--pykneer-sizes", default="full")
    ap.add_argument("--pykneer-plates", default=",".join(PLATES))
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    mf = None
    if args.pykneer_src is not None:
        sys.path.insert(0, str(args.pykneer_src / "pykneer" / "pykneer"))
        import morphology_functions as mf  # type: ignore[import-not-found, no-redef]
    py_plates = set(args.pykneer_plates.split(","))
    print(
        "| grid | knee | plate | exact truth mm | kneescope mm | vs truth % "
        "| no smoothing: vs truth % | smoothing moved mean mm | earlier nearest-surface vs truth % "
        "| pyKNEEr mm | pyKNEEr vs truth % | pyKNEEr - kneescope mm (%) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    errors: dict[str, list[float]] = {}
    for size_name in args.sizes.split(","):
        for seed, klg, side in CASES[: args.knees]:
            labels, affine, truth = _knee(seed, klg, side, size_name, args.cache)
            t0 = time.process_time()
            m = measure_knee((labels, affine))
            cpu = time.process_time() - t0
            name = f"seed {seed} KLG {klg} {side} ({cpu:.1f} s CPU)"
            for plate in PLATES:
                exact = float(truth["plates"][plate]["thickness_mean_mm"])
                ks = m.values[f"{plate}_cartilage_thickness_mean_mm"]
                cart, bone, aff = _crop(labels, affine, plate)
                raw = _plate_mean(cart, bone, aff, smoothing_mm=0.0)
                old = _plate_mean(cart, bone, aff, method="nearest")
                pct = 100 * (ks / exact - 1)
                errors.setdefault(size_name, []).append(pct)
                row = (
                    f"| {size_name} | {name} | {plate} | {exact:.3f} | {ks:.3f} | {pct:+.2f} "
                    f"| {100 * (raw / exact - 1):+.2f} | {ks - raw:+.4f} "
                    f"| {100 * (old / exact - 1):+.2f} "
                )
                if mf is not None and size_name in args.pykneer_sizes and plate in py_plates:
                    py = _pykneer_mean(mf, cart, aff)
                    row += (
                        f"| {py:.3f} | {100 * (py / exact - 1):+.2f} "
                        f"| {py - ks:+.3f} ({100 * (py / ks - 1):+.1f}) |"
                    )
                else:
                    row += "| - | - | - |"
                print(row, flush=True)
    for size_name, errs in errors.items():
        print(
            f"\n{size_name}: kneescope vs exact truth {min(errs):+.2f} .. {max(errs):+.2f} % "
            f"over {len(errs)} plates (mean |error| {np.mean(np.abs(errs)):.2f} %)"
        )


if __name__ == "__main__":
    main()
