"""The training engine against damaged or hostile files: a truncated or code-carrying
checkpoint, a checkpoint of another run, a forged model file, a crash while writing."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kneescope.errors import ModelError
from kneescope.models import NetworkConfig
from kneescope.models.model_file import load_model_file
from kneescope.training.engine import FitResult, fit
from kneescope.training.engine_config import EngineConfig
from kneescope.training.task import Metrics, TaskBatch

NET = NetworkConfig(
    name="unet", spatial_dims=2, out_channels=2, features=(4, 8), strides=(2,), num_res_units=0
)


class Stripes:
    """Tell bright rows from dark ones (16x16 images, seeded per batch)."""

    kind = "stripes"
    network = NET
    data_fingerprint = "stripes"
    train_size = 100

    def batch(self, index: int, size: int) -> TaskBatch:
        rng = np.random.default_rng(index)
        masks = np.zeros((size, 16, 16), dtype=np.int64)
        masks[:, ::3] = 1
        images = masks + rng.normal(0.0, 0.3, masks.shape)
        return TaskBatch(
            torch.from_numpy(images.astype(np.float32))[:, None], torch.from_numpy(masks)
        )

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(outputs, targets)

    def evaluate(self, network: torch.nn.Module, device: torch.device) -> Metrics:
        batch = self.batch(999, 2)
        with torch.no_grad():
            pred = network(batch.inputs).argmax(1)
        return Metrics(score=float((pred == batch.targets).float().mean()))

    def model_spec(self, metrics: Metrics | None) -> dict[str, Any]:
        return {"classes": ["dark", "bright"]}


def train(folder: Path, **kw: Any) -> FitResult:
    config = EngineConfig(
        iterations=4,
        batch_size=2,
        precision="fp32",
        validate_every=2,
        checkpoint_every=1,
        threads=1,
    )
    return fit(Stripes(), config, run_dir=folder, model_path=folder / "model.pt", **kw)


def test_truncated_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    train(tmp_path, stop_after=2)
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(
        ModelError, match=r"checkpoint .* is unreadable .*; delete it to start over"
    ):
        train(tmp_path)


class _Boom:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (print, ("code ran while loading a checkpoint",))


def test_checkpoint_that_would_run_code_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(pickle.dumps({"run_key": _Boom()}))
    with pytest.raises(ModelError, match="unreadable"):
        train(tmp_path)
    assert "code ran" not in capsys.readouterr().out


def test_model_file_of_a_forged_kind_or_network_is_refused(tmp_path: Path) -> None:
    train(tmp_path)
    path = tmp_path / "model.pt"
    payload = torch.load(path, weights_only=True)
    payload["kind"] = ["not", "a", "kind"]
    torch.save(payload, path)
    with pytest.raises(ModelError, match="model kind or description missing"):
        load_model_file(path)
    payload["kind"] = "stripes"
    payload["network"]["out_channels"] = 10_000
    torch.save(payload, path)
    with pytest.raises(ModelError, match="output channels is more than kneescope allows"):
        load_model_file(path)


def test_a_crash_while_writing_leaves_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(tmp_path, stop_after=2)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, f, *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    resumed = train(tmp_path)  # and the run goes on from there
    assert resumed.resumed_from == 2 and resumed.model_path == tmp_path / "model.pt"
