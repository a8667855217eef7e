"""Figures of a synthetic knee: MRI slice montage with label overlay and radiographs (PNG).

Usage:
    .venv/bin/python benchmarks/synth_figures.py --out figures [--size full]

Writes synth_mri_montage.png (6 sagittal slices + a coronal and an axial reformat, each
image | overlay), synth_xray_knee.png and synth_xray_full_leg.png. Needs Pillow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from kneescope.synth.cohort import CohortSpec, plan_subject
from kneescope.synth.full_leg import render_full_leg
from kneescope.synth.knee import render_knee
from kneescope.synth.params import size_spec
from kneescope.synth.radiograph import render_knee_radiograph

COLOURS = np.array(
    [[0, 0, 0], [230, 200, 150], [255, 70, 70], [120, 170, 230], [70, 230, 70],
     [60, 110, 255], [200, 150, 230], [255, 230, 0], [255, 0, 255], [0, 230, 230]],
    dtype=float,
)  # fmt: skip


def pair(img: np.ndarray, lab: np.ndarray, scale: float) -> np.ndarray:
    g = np.repeat(np.clip(img / scale, 0, 1)[..., None] * 255, 3, axis=2)
    over = g.copy()
    m = lab > 0
    over[m] = 0.55 * g[m] + 0.45 * COLOURS[lab[m]]
    return np.concatenate([g, np.full((g.shape[0], 4, 3), 255.0), over], axis=1)


def stretch(a: np.ndarray, factor: float) -> np.ndarray:
    """Resize rows by ``factor`` (nearest) so anisotropic reformats look undistorted."""
    rows = np.clip((np.arange(round(a.shape[0] * factor)) / factor).astype(int), 0, a.shape[0] - 1)
    return a[rows]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("figures"))
    ap.add_argument("--size", default="full")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--subject", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spec = CohortSpec(subjects=1, visits=("V00",), seed=args.seed)
    plan = plan_subject(spec, args.subject)
    side = max(("right", "left"), key=lambda s: plan.knees[s][0].klg)
    state = plan.knees[side][0]
    sample = render_knee(state.params, size_spec(args.size))
    img, lab = sample.image.array.astype(float), sample.labels.array
    scale = float(np.percentile(img, 99.7))
    n = img.shape[0]
    sag = [
        pair(img[int(f * n)], lab[int(f * n)], scale) for f in (0.3, 0.38, 0.46, 0.54, 0.62, 0.7)
    ]
    rows = [np.concatenate(sag[:3], axis=1), np.concatenate(sag[3:], axis=1)]
    sp = sample.image.spacing_mm
    k = img.shape[2] // 2
    cor = stretch(pair(img[:, :, k], lab[:, :, k], scale).transpose(1, 0, 2), 1.0)
    cor = pair(img[:, :, k].T, lab[:, :, k].T, scale)
    cor = np.concatenate(
        [stretch(c.transpose(1, 0, 2), sp[0] / sp[1]).transpose(1, 0, 2) for c in (cor,)], axis=1
    )
    j = int(0.52 * img.shape[1])
    axial = pair(img[:, j, :], lab[:, j, :], scale)
    axial = stretch(axial, sp[0] / sp[2])
    width = rows[0].shape[1]

    def pad(a: np.ndarray) -> np.ndarray:
        out = np.full((a.shape[0], width, 3), 255.0)
        out[:, : min(a.shape[1], width)] = a[:, :width]
        return out

    bottom = np.concatenate([cor, np.full((cor.shape[0], 8, 3), 255.0)], axis=1)
    if axial.shape[0] <= cor.shape[0]:
        ax = np.full((cor.shape[0], axial.shape[1], 3), 255.0)
        ax[: axial.shape[0]] = axial
        bottom = np.concatenate([bottom, ax], axis=1)
    montage = np.concatenate([rows[0], rows[1], pad(bottom)], axis=0)
    path = args.out / "synth_mri_montage.png"
    Image.fromarray(montage.astype(np.uint8)).save(path)
    print(f"{path}: {side} knee, KLG {state.klg}, {sample.image}")
    knees = {
        s: (plan.knees[s][0].params, plan.knees[s][0].klg, plan.knees[s][0].osteophyte_grade,
            plan.medial_predominant[s])
        for s in ("right", "left")
    }  # fmt: skip
    xr, truths = render_knee_radiograph(knees, seed=1)
    a = xr.array.astype(float)
    Image.fromarray((255 * np.clip(a / a.max(), 0, 1)).astype(np.uint8)).save(
        args.out / "synth_xray_knee.png"
    )
    print(args.out / "synth_xray_knee.png", truths)
    leg, legs = render_full_leg({s: (plan.knees[s][0].hka_deg, 1.0) for s in knees}, seed=1)
    a = leg.array.astype(float)
    small = Image.fromarray((255 * np.clip(a / a.max(), 0, 1)).astype(np.uint8))
    small.resize((a.shape[1] // 3, a.shape[0] // 3)).save(args.out / "synth_xray_full_leg.png")
    print(args.out / "synth_xray_full_leg.png", legs)


if __name__ == "__main__":
    main()
