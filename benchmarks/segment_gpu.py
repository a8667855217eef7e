"""Volumes per second per GPU for the `kneescope segment` path in bf16 (run on a GPU machine).

On one CUDA device: segments full-size 160x384x384 knee-like volumes with
:class:`kneescope.inference.Segmenter` (bf16 autocast, streaming slab stitching on the GPU,
resampling and clean-up on the host) and reports volumes per second, time per stage, peak GPU
memory (``torch.cuda.max_memory_allocated``), and for reference one MONAI default
``sliding_window_inference`` pass (fp32, overlap 0.25, sw_batch_size 1) on the same volume.

Without --model it builds the 3D U-Net of benchmarks/train_accuracy.py with random weights
(throughput does not depend on the weights). Finishes in well under 2 minutes on an H100.

Run: python benchmarks/segment_gpu.py [--model M.pt] [--seconds 40] [--sw-batch 8] [--json OUT]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def phantom(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A knee-like uint16 volume: two bright blobs with shells, muscle, noise (fast to make)."""
    rng = np.random.default_rng(seed)
    i, j, k = np.ogrid[: shape[0], : shape[1], : shape[2]]
    img = np.full(shape, 200.0, dtype=np.float32)
    for cj, ck, r in ((150, 190, 70), (260, 200, 60)):
        d = np.sqrt(((i - shape[0] / 2) / 1.0) ** 2 + (j - cj) ** 2 + (k - ck) ** 2)
        img[d < r + 6] = 700.0
        img[d < r] = 260.0
    img += rng.normal(0.0, 30.0, size=shape).astype(np.float32)
    return np.clip(img, 0, 4095).astype(np.uint16)


def default_model() -> Any:
    import torch

    from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel
    from kneescope.models import NetworkConfig, build_network

    config = NetworkConfig(
        name="unet",
        spatial_dims=3,
        out_channels=10,
        features=(16, 32, 64, 128),
        strides=(2, 2, 2),
        num_res_units=1,
        act="prelu",
    )
    torch.manual_seed(0)
    net = build_network(config)
    spec = ModelSpec(
        network=config,
        mode="3d",
        labels={i: f"s{i}" for i in range(1, 10)},
        spacing_mm=(0.7, 0.7292, 0.7292),
        orientation="RIA",
        roi_size_vox=(48, 96, 96),
        flip_axes=(0,),
    )
    return SegmentationModel(spec=spec, state_dict=net.state_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--seconds", type=float, default=40.0, help="timed segment loop")
    parser.add_argument("--sw-batch", type=int, default=8)
    parser.add_argument("--roi", type=int, nargs=3, help="inference window (default: model's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--device", default="cuda", help="cpu only for a smoke test")
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 384, 384))
    args = parser.parse_args()

    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: this benchmark needs a GPU")
    from kneescope.core import Volume
    from kneescope.core.geometry import affine_from_axes
    from kneescope.inference.segmentation_model import load_model
    from kneescope.inference.segmenter import SegmentConfig, Segmenter

    torch.backends.cudnn.benchmark = True
    shape = (int(args.shape[0]), int(args.shape[1]), int(args.shape[2]))
    model = load_model(args.model) if args.model else default_model()
    config = SegmentConfig(
        device=args.device,
        precision="bf16",
        sw_batch_size=args.sw_batch,
        roi_size_vox=tuple(args.roi) if args.roi else None,
    )
    t_load = time.perf_counter()
    seg = Segmenter(model, config)
    load_s = time.perf_counter() - t_load
    # RIA sagittal stack, OAI DESS spacing
    affine = affine_from_axes(
        [0.0, 0.0, 0.0], [[1, 0, 0], [0, 0, 1], [0, -1, 0]], (0.7, 0.3646, 0.3646)
    )
    assert Volume(np.zeros((2, 2, 2)), affine).orientation == "RIA"
    volumes = [Volume(phantom(shape, s), affine) for s in range(2)]
    seg.segment(volumes[0], side="right")  # warm-up (cuDNN autotuning, allocator)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    stages: dict[str, float] = {}
    count = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds or count < 3:
        result = seg.segment(volumes[count % 2], side="right" if count % 2 == 0 else "left")
        for k, v in result.seconds.items():
            stages[k] = stages.get(k, 0.0) + v
        count += 1
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak_gb = torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan")
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "precision": seg.precision_name,
        "volume_shape": list(shape),
        "model_grid_spacing_mm": list(model.spec.spacing_mm),
        "roi_size_vox": list(seg.roi),
        "sw_batch_size": args.sw_batch,
        "volumes": count,
        "wall_s": wall,
        "volumes_per_s": count / wall,
        "seconds_per_volume_by_stage": {k: v / count for k, v in stages.items()},
        "peak_gpu_memory_gb": peak_gb,
        "model_load_s": load_s,
    }
    if not args.skip_monai and cuda:
        from monai.inferers import sliding_window_inference

        from kneescope.transforms.intensity import intensity_stats
        from kneescope.transforms.resample import plan_resampling

        net = model.build("cuda")
        grid = plan_resampling(shape, (0.7, 0.3646, 0.3646), model.spec.spacing_mm)
        work = grid.image_to_target(volumes[0].array)
        x = intensity_stats(work, model.spec.normalisation).apply_numpy(work)
        xt = torch.from_numpy(x)[None, None].cuda()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        with torch.inference_mode():
            logits = sliding_window_inference(xt, model.spec.roi_size_vox, 1, net)
            labels = torch.argmax(logits, dim=1)
        torch.cuda.synchronize()
        out["monai_default_fp32_network_s"] = time.perf_counter() - t1
        out["monai_default_peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
        del logits, labels
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
