"""The generic model file: version-2 envelope of any kind, version-1 segmentation files still
read, other kinds and versions refused with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kneescope.errors import ModelError
from kneescope.inference.segmentation_model import ModelSpec, SegmentationModel, load_model
from kneescope.models import NetworkConfig, build_network
from kneescope.models.model_file import ModelFile, load_model_file, save_model_file

NET = NetworkConfig(
    name="unet", spatial_dims=3, out_channels=3, features=(4, 8), strides=(2,), num_res_units=0
)


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in build_network(NET).state_dict().items()}


def _spec() -> ModelSpec:
    return ModelSpec(
        network=NET,
        mode="3d",
        labels={1: "femur", 2: "tibia"},
        spacing_mm=(1.0, 0.5, 0.5),
        orientation="LPS",
        roi_size_vox=(16, 16, 16),
        flip_axes=(0,),
        data_fingerprint="abc123",
        training={"iterations": 7},
    )


def test_any_kind_round_trips(tmp_path: Path) -> None:
    model = ModelFile(
        kind="classification",
        network=NET,
        spec={"classes": ["KL0", "KL1", "KL2"], "input_size": [16, 16, 16]},
        state_dict=_weights(),
        data_fingerprint="f00d",
        metrics={"score": 0.75, "values": {"accuracy": 0.75}},
        training={"iterations": 3},
    )
    path = save_model_file(model, tmp_path / "cls.pt")
    raw = torch.load(path, weights_only=True)  # plain data only
    assert (raw["format"], raw["version"], raw["kind"]) == ("kneescope-model", 2, "classification")
    loaded = load_model_file(path)
    assert (loaded.kind, loaded.network, loaded.spec) == (model.kind, NET, model.spec)
    assert (loaded.data_fingerprint, loaded.metrics, loaded.training) == (
        "f00d",
        model.metrics,
        {"iterations": 3},
    )
    for k, v in model.state_dict.items():
        torch.testing.assert_close(loaded.state_dict[k], v)
    with pytest.raises(ModelError, match="is a classification model, not a segmentation"):
        load_model(path)
    assert [p.name for p in tmp_path.iterdir()] == ["cls.pt"]  # no temporary left behind


def test_segmentation_model_round_trips_through_the_envelope(tmp_path: Path) -> None:
    from kneescope.inference.segmentation_model import save_model

    path = save_model(SegmentationModel(_spec(), _weights()), tmp_path / "seg.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["kind"] == "segmentation" and "network" not in raw["spec"]
    assert raw["data_fingerprint"] == "abc123"
    loaded = load_model(path)
    assert loaded.spec == _spec()


def test_version_1_segmentation_file_still_loads(tmp_path: Path) -> None:
    """A file as kneescope wrote it before the training engine (format version 1)."""
    spec = _spec()
    path = tmp_path / "old.pt"
    torch.save(
        {
            "format": "kneescope-segmentation-model",
            "version": 1,
            "spec": spec.model_dump(mode="json"),
            "state_dict": _weights(1),
        },
        path,
    )
    loaded = load_model(path)
    assert loaded.spec == spec
    torch.testing.assert_close(loaded.state_dict, _weights(1))
    generic = load_model_file(path)
    assert (generic.kind, generic.version, generic.data_fingerprint) == (
        "segmentation",
        1,
        "abc123",
    )


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"format": "kneescope-model", "version": 3}, "format version 3, this kneescope reads 2"),
        ({"format": "kneescope-segmentation-model", "version": 2}, "version 2, this kneescope"),
        ({"format": "kneescope-model", "version": 2, "spec": {}}, "kind or description missing"),
        ({"format": "other"}, "not a kneescope model"),
    ],
    ids=["newer-v2", "v1-format-newer-version", "no-kind", "foreign"],
)
def test_unreadable_envelopes_are_refused(
    tmp_path: Path, payload: dict[str, object], match: str
) -> None:
    path = tmp_path / "m.pt"
    torch.save(payload, path)
    with pytest.raises(ModelError, match=match):
        load_model_file(path)
