"""A tiny deterministic training task for the distributed tests, and the rank entry point.

``TinyTask`` classifies 8x8 (2D) or 8x8x8 (3D) noise images by the sign of their mean
brightness with a small VGG-like network (no normalisation layers, no dropout), so a batch's
loss is the mean of per-sample losses and N ranks with the same global batch must follow the
one-rank loss curve up to floating-point summation order.

Run as a rank: ``python distributed_helpers.py RUN_DIR OUT_JSON [key=value ...]`` reads the rank
from the environment (``RANK``/``WORLD_SIZE`` or Slurm's variables), trains with
:func:`kneescope.training.engine.fit` and, on rank 0, writes the result as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from kneescope.models import NetworkConfig
from kneescope.training.task import Metrics, TaskBatch


class TinyTask:
    """Sign-of-mean classification of noise images (2 classes)."""

    kind = "tiny"

    def __init__(self, dims: int = 2, size: int = 8, width: int = 4, val: int = 32) -> None:
        self.dims = dims
        self.size = size
        self.network = NetworkConfig(
            name="vgg_classifier",
            spatial_dims=dims,  # type: ignore[arg-type]
            in_channels=1,
            out_channels=2,
            features=(width, 2 * width),
            convs_per_stage=(1, 1),
            fc_features=(16,),
            input_shape_vox=(size,) * dims,
        )
        self.data_fingerprint = f"tiny-{dims}-{size}-{width}"
        self.train_size = 10_000
        self.val_size = val

    def _images(self, seed: int, n: int) -> TaskBatch:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((n, 1) + (self.size,) * self.dims, generator=gen)
        x = x + 0.3 * torch.randn((n, 1) + (1,) * self.dims, generator=gen)
        y = (x.mean(dim=tuple(range(1, x.dim()))) > 0).long()
        return TaskBatch(inputs=x, targets=y)

    def batch(self, index: int, size: int) -> TaskBatch:
        return self._images(1_000 + index, size)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(outputs, targets)

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        data = self._images(7, self.val_size)
        network.eval()
        with torch.no_grad():
            pred = network(data.inputs.to(device)).argmax(dim=1).cpu()
        accuracy = float((pred == data.targets).float().mean())
        return Metrics(score=accuracy, values={"accuracy": accuracy})

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        return {"classes": ["negative", "positive"], "input_size": [self.size] * self.dims}


def main(argv: list[str]) -> int:
    """One rank: train TinyTask with the engine; rank 0 writes the history as JSON."""
    from kneescope.training.distributed import rank_guard, shutdown, world_from_env
    from kneescope.training.engine import fit
    from kneescope.training.engine_config import EngineConfig

    run_dir, out = Path(argv[0]), Path(argv[1])
    options = dict(a.split("=", 1) for a in argv[2:])
    dims = int(options.pop("dims", "2"))
    model = options.pop("model", "")
    stop_after = int(options.pop("stop_after", "0")) or None
    config = EngineConfig.model_validate({"precision": "fp32", "validate_every": 1000, **options})
    world = world_from_env()
    with rank_guard(world):
        result = fit(
            TinyTask(dims=dims),
            config,
            run_dir=run_dir,
            model_path=Path(model) if model else None,
            world=world,
            stop_after=stop_after,
        )
    if world.is_main:
        out.write_text(
            json.dumps(
                {
                    "world_size": world.size,
                    "backend": world.backend,
                    "losses": [row["loss"] for row in result.history],
                    "iterations_run": result.iterations_run,
                    "resumed_from": result.resumed_from,
                    "model": str(result.model_path) if result.model_path else None,
                    "score": result.metrics.score if result.metrics else None,
                }
            )
        )
    shutdown(world)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
