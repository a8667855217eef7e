"""Per-iteration cost of domain randomisation: a batch of 2D patches drawn with and without
it, next to one training step of the 2D network on that batch (CPU).

    python benchmarks/domain_randomisation_overhead.py [--batch 8] [--patch 256] [--threads 2]

The tissue map is a knee-sized phantom (160 x 384 x 384, the FULL grid), so crop and
statistics costs are those of a real case; the synthesis cost depends on the patch only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from kneescope.core import tissues as tt
from kneescope.models import NetworkConfig, build_network, preset
from kneescope.transforms.domain_randomisation import DomainRandomisationConfig
from kneescope.transforms.patches import PatchSampler


def phantom(shape: tuple[int, int, int]) -> np.ndarray:
    """Concentric tissues (fat, muscle, fluid, cartilage, cortex, marrow) in every slice."""
    idx = np.indices(shape[1:]).astype(np.float32)
    c = (np.asarray(shape[1:], dtype=np.float32) - 1) / 2
    r = np.sqrt(((idx - c[:, None, None]) ** 2).sum(0)) / shape[1]
    plane = np.zeros(shape[1:], dtype=np.uint8)
    for radius, t in (
        (0.48, tt.FAT),
        (0.4, tt.MUSCLE),
        (0.3, tt.FLUID),
        (0.27, tt.FEMORAL_CARTILAGE),
        (0.22, tt.FEMUR_CORTEX),
        (0.19, tt.FEMUR_MARROW),
    ):
        plane[r < radius] = t
    return np.broadcast_to(plane, shape).copy()


def timed(fn, reps: int) -> float:  # type: ignore[no-untyped-def]
    fn(0)
    start = time.perf_counter()
    for k in range(1, reps + 1):
        fn(k)
    return (time.perf_counter() - start) / reps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tissues = phantom((160, 384, 384))
    labels = tt.tissue_label_lut()[tissues]
    image = tt.CONTRASTS["dess"][tissues]
    patch = (1, args.patch, args.patch)
    common = dict(
        patch_size_vox=patch,
        classes=10,
        class_weights=[0.1] * 10,
        mode="2d",
        augment=True,
        seed=0,
        flip_axis=None,
    )
    plain = PatchSampler([image], [labels], **common)  # type: ignore[arg-type]
    dr = PatchSampler(
        [image],
        [labels],
        **common,
        tissues=[tissues],  # type: ignore[arg-type]
        domain_randomisation=DomainRandomisationConfig(),
    )
    from monai.losses.dice import DiceCELoss

    net = build_network(
        NetworkConfig.model_validate({**preset("unet2d-small").model_dump(), "out_channels": 10})
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    x, y = plain.batch(0, args.batch)

    def step(_: int) -> None:
        opt.zero_grad()
        loss(net(x), y).backward()
        opt.step()

    rows = [
        ("patches, today's augmentation", timed(lambda k: plain.batch(k, args.batch), args.reps)),
        ("patches, domain randomisation", timed(lambda k: dr.batch(k, args.batch), args.reps)),
        ("network step (unet2d-small)", timed(step, args.reps)),
    ]
    print(f"batch {args.batch} x 1 x {args.patch} x {args.patch}, {args.threads} torch threads")
    for name, sec in rows:
        print(f"  {name:32s} {1000 * sec:8.0f} ms")


if __name__ == "__main__":
    main()
