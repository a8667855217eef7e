"""Commonly quoted memory tables next to kneescope's predictions (VGG19-like 2D/3D; 3D U-Net).

VGG19-like classifier, 1 channel, 5 classes, batch 1, fp32, Adam (as the reference tables):
parameter count (exact) and memory: the reference figure, our predicted peak of a training step
(CUDA kernels: no CPU workspace model), ratio, breakdown, and two simple accountings:
``16 B/param`` (weights, gradients, two Adam moments) and ``16 B/param + 3 x conv outputs``.
Then the 3D U-Net claims (about 40 GB at 160x384x384; 48x256x256 the largest input in an
11 GB GTX 1080 Ti): predicted peaks over U-Net widths. Usage::

    .venv/bin/python benchmarks/memory_reference_tables.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math

from kneescope.memory import StepConfig, predict_step
from kneescope.memory.predict import margin_for, peak_model
from kneescope.models import NetworkConfig, count_parameters, preset

SEED_VGG = [
    ((224, 224), 139, 2.3),
    ((256, 256), 171, 2.8),
    ((320, 320), 246, 4.0),
    ((384, 384), 338, 5.4),
    ((512, 512), 573, 9.1),
    ((80, 80, 80), 93, 2.5),
    ((96, 96, 96), 133, 4.1),
    ((128, 128, 128), 211, 8.0),
    ((128, 144, 144), 211, 8.6),
    ((160, 384, 384), 1586, 80.0),
]
GB = 1e9


def conv_output_floats(shape: tuple[int, ...]) -> int:
    """Elements of all VGG19 conv outputs for one input of ``shape`` (batch 1)."""
    total = 0
    size = shape
    for width, n in zip((64, 128, 256, 512, 512), (2, 2, 4, 4, 4), strict=True):
        total += n * width * math.prod(size)
        size = tuple(s // 2 for s in size)
    return total


def vgg_rows() -> list[dict[str, object]]:
    rows = []
    print(
        f"{'input':>12} {'params':>13} {'seed M':>6} | {'seed GB':>7} {'pred GB':>7} "
        f"{'seed/pred':>9} | {'16B/p':>6} {'+3xact':>6} | {'weights':>7} {'grads':>6} "
        f"{'adam':>6} {'activ':>6} {'temp':>6}"
    )
    for shape, seed_m, seed_gb in SEED_VGG:
        net = preset(f"vgg19-{len(shape)}d", shape)
        params = count_parameters(net)
        e = predict_step(net, StepConfig(input_shape_vox=shape, device="cuda"))
        b = e.breakdown_bytes
        simple = 16 * params / GB
        with_act = simple + 3 * 4 * conv_output_floats(shape) / GB
        print(
            f"{'x'.join(map(str, shape)):>12} {params:13,d} {seed_m:6d} | {seed_gb:7.1f} "
            f"{e.peak_bytes / GB:7.2f} {seed_gb / (e.peak_bytes / GB):9.2f} | {simple:6.2f} "
            f"{with_act:6.2f} | {b['weights'] / GB:7.2f} {b['gradients'] / GB:6.2f} "
            f"{b['optimizer_state'] / GB:6.2f} {b['activations'] / GB:6.2f} "
            f"{b['temporaries'] / GB:6.2f}"
        )
        assert params // 1_000_000 == seed_m
        rows.append(
            {
                "input": shape,
                "parameters": params,
                "seed_parameters_millions": seed_m,
                "seed_gb": seed_gb,
                "predicted_peak_gb": e.peak_bytes / GB,
                "predicted_required_gb": e.required_bytes / GB,
                "breakdown_gb": {k: v / GB for k, v in b.items()},
                "sixteen_bytes_per_param_gb": simple,
                "plus_three_conv_outputs_gb": with_act,
            }
        )
    return rows


def unet(width: int, levels: int, norm: str) -> NetworkConfig:
    return NetworkConfig(
        name="dynunet",
        spatial_dims=3,
        out_channels=10,
        features=tuple(width * 2**i for i in range(levels)),
        strides=(1,) + (2,) * (levels - 1),
        norm=norm,  # type: ignore[arg-type]
        act="relu",
    )


def unet_rows() -> list[dict[str, object]]:
    print(
        "\n3D U-Net (two 3^3 convs per level, doubling widths, fp32, Adam, batch 1): "
        "predicted peak GB"
    )
    shapes = [(48, 256, 256), (64, 256, 256), (96, 256, 256), (160, 384, 384)]
    print(
        f"{'widths':>28} {'params':>11} | "
        + " ".join(f"{'x'.join(map(str, s)):>12}" for s in shapes)
        + " | largest z at 256x256 within 11 GB (with margin)"
    )
    rows = []
    for levels in (4, 5):
        for width in (8, 16, 24, 32):
            net = unet(width, levels, "batch")
            step = StepConfig(input_shape_vox=(160, 384, 384), device="cuda")
            model = peak_model(net, step, (2**levels,) * 3)
            peaks = [model.peak_bytes(1, s) for s in shapes]
            div = 2 ** (levels - 1)
            z = div
            while (
                model.peak_bytes(1, (z + div, 256, 256))
                + margin_for(model.peak_bytes(1, (z + div, 256, 256)))
                <= 11 * GB
                and z < 512
            ):
                z += div
            print(
                f"{net.features!s:>28} {count_parameters(net):11,d} | "
                + " ".join(f"{p / GB:12.2f}" for p in peaks)
                + f" | {z}x256x256"
            )
            rows.append(
                {
                    "features": net.features,
                    "parameters": count_parameters(net),
                    "peaks_gb": {
                        "x".join(map(str, s)): p / GB for s, p in zip(shapes, peaks, strict=True)
                    },
                    "largest_z_at_256_in_11gb": z,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args()
    result = {"vgg": vgg_rows(), "unet": unet_rows()}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
