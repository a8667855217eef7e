"""Synthetic knee films -> knee crops in the kneeKL224 layout, for KL grading on synthetic data.

    .venv/bin/python benchmarks/kl_synthetic_films.py export --out DIR
        [--train 240] [--val 60] [--test 100]

Renders bilateral PA films (:func:`kneescope.synth.knee_film_set.knee_films`; training,
validation and held-out test sets from the seeds below), cuts each knee's standard ROI at the
true knee centre (right frame: left knees mirrored), keeps its central ``--crop-mm`` (90 mm,
the field of view of the real kneeKL224 crops) and writes it as a 224 x 224 8-bit PNG
(1st-99th percentile window) to ``DIR/<split>/<KL>/<film><L|R>.png``: the same layout, naming
(film id + side, so both knees of a film are a pair) and look as kneeKL224, so the same
training file trains on either and each domain's model can grade the other's crops.
Knees with an implant are left out (not gradable). ``DIR/<split>/truth.csv`` lists every crop
with its KL, JSN and osteophyte grades. Test films are for the release report only.

    .venv/bin/python benchmarks/kl_synthetic_films.py relabel --data DIR --column OsteophyteGrade
        --out DIR2

sorts the same crops (hard links) by another truth column, e.g. to train an osteophyte-grade
classifier with the same training file.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from kneescope.capabilities.classification.folder_data import resize_images
from kneescope.synth.knee_film_set import knee_films
from kneescope.xray.roi import extract_roi

SEEDS = {"train": 15001, "val": 15002, "test": 15003}
CROP_PX = 224


def crop_png(roi: np.ndarray, crop_mm: float, roi_pixel_mm: float = 0.2) -> np.ndarray:
    """The central ``crop_mm`` of a standard ROI, 224 x 224 uint8 (1-99 % window)."""
    keep = round(crop_mm / roi_pixel_mm)
    start = (roi.shape[0] - keep) // 2
    crop = roi[start : start + keep, start : start + keep]
    small = resize_images([crop], (CROP_PX, CROP_PX))[0]
    lo, hi = np.percentile(small, (1.0, 99.0))
    return np.clip((small - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)


def export(out: Path, counts: dict[str, int], crop_mm: float) -> None:
    for split, n in counts.items():
        rows = []
        for index, film in enumerate(knee_films(n, SEEDS[split])):
            for knee in film.knees:
                if knee.implant:
                    continue
                roi = extract_roi(
                    film.image.array,
                    (film.image.spacing_mm[0], film.image.spacing_mm[1]),
                    knee.centre_rc,
                    mirror=knee.side == "left",
                )
                name = f"{SEEDS[split]}{index:05d}{'R' if knee.side == 'right' else 'L'}.png"
                folder = out / split / str(knee.klg)
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(crop_png(roi, crop_mm)).save(folder / name)
                rows.append(
                    {
                        "file": f"{knee.klg}/{name}",
                        "KLG": knee.klg,
                        "JSN_M": knee.jsn_medial,
                        "JSN_L": knee.jsn_lateral,
                        "OsteophyteGrade": knee.osteophyte_grade,
                    }
                )
        if not rows:
            continue
        with (out / split / "truth.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"{split}: {len(rows)} knees from {n} films")


def relabel(data: Path, column: str, out: Path) -> None:
    """``out/<split>/<value of column>/<file>``: the same crops (hard links) sorted by another
    truth column (e.g. ``OsteophyteGrade`` to train an osteophyte-grade classifier)."""
    for split_dir in sorted(p for p in data.iterdir() if (p / "truth.csv").is_file()):
        with (split_dir / "truth.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        for row in rows:
            source = split_dir / row["file"]
            target = out / split_dir.name / row[column] / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.hardlink_to(source)
        print(f"{split_dir.name}: {len(rows)} crops by {column}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--train", type=int, default=240)
    ex.add_argument("--val", type=int, default=60)
    ex.add_argument("--test", type=int, default=100)
    ex.add_argument("--crop-mm", type=float, default=90.0)
    rl = sub.add_parser("relabel")
    rl.add_argument("--data", type=Path, required=True)
    rl.add_argument("--column", required=True)
    rl.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "relabel":
        relabel(args.data, args.column, args.out)
        return
    export(args.out, {"train": args.train, "val": args.val, "test": args.test}, args.crop_mm)


if __name__ == "__main__":
    main()
