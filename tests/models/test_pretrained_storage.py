"""Model files with half-precision weights (how shipped models stay small), and model files
whose bytes depend only on the model (so a release's sha256 is reproducible)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kneescope.errors import ModelError
from kneescope.io.digest import file_sha256
from kneescope.models import NetworkConfig, build_network
from kneescope.models.model_file import ModelFile, load_model_file, save_model_file


def _model(seed: int = 0) -> ModelFile:
    """A small 2D U-Net with batch norm (its integer counters must stay integers)."""
    config = NetworkConfig(
        name="unet",
        spatial_dims=2,
        out_channels=4,
        features=(8, 16, 32),
        strides=(2, 2),
        num_res_units=1,
        norm="batch",
    )
    torch.manual_seed(seed)
    net = build_network(config)
    with torch.no_grad():  # non-trivial running statistics
        net.train()
        net(torch.randn(2, 1, 32, 32))
    return ModelFile(
        kind="segmentation", network=config, spec={"mode": "2d"}, state_dict=net.state_dict()
    )


@pytest.mark.parametrize(
    ("dtype", "torch_dtype"), [("float16", torch.float16), ("bfloat16", torch.bfloat16)]
)
def test_half_precision_weights_halve_the_file_and_load_as_float32(
    tmp_path: Path, dtype: str, torch_dtype: torch.dtype
) -> None:
    model = _model()
    full = save_model_file(model, tmp_path / "full.pt")
    half = save_model_file(model, tmp_path / "half.pt", weights_dtype=dtype)  # type: ignore[arg-type]
    floats = sum(v.numel() for v in model.state_dict.values() if v.is_floating_point())
    saved = full.stat().st_size - half.stat().st_size
    assert saved >= 0.95 * 2 * floats  # two bytes fewer per floating-point weight

    raw = torch.load(half, map_location="cpu", weights_only=True)  # plain data, no code
    assert raw["weights_dtype"] == dtype
    assert {v.dtype for v in raw["state_dict"].values() if v.is_floating_point()} == {torch_dtype}

    loaded = load_model_file(half)
    for name, original in model.state_dict.items():
        got = loaded.state_dict[name]
        if original.is_floating_point():
            assert got.dtype == torch.float32, name
            torch.testing.assert_close(got, original.to(torch_dtype).float(), rtol=0, atol=0)
        else:  # batch-norm counters
            assert got.dtype == original.dtype and torch.equal(got, original), name
    assert any(not v.is_floating_point() for v in model.state_dict.values())

    # The network still computes the same function, to half precision.
    x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model.build()(x)
        got_out = loaded.build()(x)
    tol = 2e-2 if dtype == "bfloat16" else 3e-3
    assert float((got_out - want).abs().max()) <= tol * float(want.abs().max())


def test_a_full_precision_file_is_unchanged(tmp_path: Path) -> None:
    model = _model()
    path = save_model_file(model, tmp_path / "m.pt")
    assert "weights_dtype" not in torch.load(path, map_location="cpu", weights_only=True)
    loaded = load_model_file(path)
    for name, original in model.state_dict.items():
        assert torch.equal(loaded.state_dict[name], original), name


def test_same_model_same_bytes(tmp_path: Path) -> None:
    """Saving one model twice, under different names, gives identical files (a release's
    sha256 must not depend on the temporary file name of the atomic write)."""
    model = _model()
    a = save_model_file(model, tmp_path / "a" / "first.pt")
    b = save_model_file(model, tmp_path / "b" / "second.pt")
    assert file_sha256(a) == file_sha256(b)
    assert file_sha256(save_model_file(_model(seed=1), tmp_path / "c.pt")) != file_sha256(
        save_model_file(model, tmp_path / "d.pt")
    )


def test_an_unknown_storage_type_is_one_clear_error(tmp_path: Path) -> None:
    path = save_model_file(_model(), tmp_path / "m.pt", weights_dtype="float16")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["weights_dtype"] = "float8"
    torch.save(payload, path)
    with pytest.raises(ModelError, match="unknown weights storage type 'float8'") as err:
        load_model_file(path)
    assert "\n" not in str(err.value)
