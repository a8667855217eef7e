"""The model file: a trained network's weights plus everything needed to use them.

A model file is a ``torch.save`` of plain data (dicts, lists, strings, numbers, tensors), so it
loads with ``torch.load(weights_only=True)`` and never runs code. Version 2 (every task) is an
envelope::

    {"format": "kneescope-model", "version": 2, "kind": "segmentation" | "classification" | ...,
     "network": NetworkConfig as a dict, "spec": the kind's own description (labels or
     classes, grid, preprocessing), "data_fingerprint": hash of the training data,
     "metrics": {"score": ..., "values": {...}} or None, "training": a record of the run,
     "state_dict": {name: tensor}, "weights_dtype": "float16" (only in files stored in half
     precision, see :func:`save_model_file`)}

The kind's package validates ``spec`` (segmentation: :mod:`kneescope.inference.segmentation_model`).
Version-1 files (``"kneescope-segmentation-model"``, segmentation only) are still read: they
come back as kind ``"segmentation"`` with their whole description as ``spec``.
"""

from __future__ import annotations

import io
import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from pydantic import BaseModel, ValidationError

from kneescope.errors import ModelError
from kneescope.io.atomic import atomic_write_bytes
from kneescope.models.network_config import NetworkConfig
from kneescope.models.registry import build_network

_Model = TypeVar("_Model", bound=BaseModel)

log = logging.getLogger(__name__)

FORMAT = "kneescope-model"
FORMAT_VERSION = 2
V1_FORMAT = "kneescope-segmentation-model"
"""Version-1 files (segmentation only, before the training engine)."""

MAX_FEATURES = 4096
"""Widest layer a model file may describe (nnU-Net-class networks stop at 320-512)."""
MAX_IN_CHANNELS = 16
MAX_OUT_CHANNELS = 256

WeightsDtype = Literal["float16", "bfloat16"]
"""Half-precision storage types of a model file's floating weights."""
_HALF_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelFile:
    """A model file's contents (``state_dict`` tensors on the CPU).

    Attributes:
        kind: the task kind (``"segmentation"``, ``"classification"``, ``"landmarks"``, ...).
        network: the registry config the weights belong to.
        spec: the kind-specific description (plain JSON-like data).
        state_dict: the weights.
        data_fingerprint: hash of the training data.
        metrics: the final validation metrics (``{"score": float, "values": {...}}``) or None.
        training: a record of the training run (engine config, step plan, iterations, ...).
        version: the file's format version (1 or 2).
    """

    kind: str
    network: NetworkConfig
    spec: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    data_fingerprint: str = ""
    metrics: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def build(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The network with these weights, in eval mode, on ``device``."""
        return network_with_weights(self.network, self.state_dict, device)


def network_with_weights(
    network: NetworkConfig, state_dict: dict[str, torch.Tensor], device: torch.device | str
) -> torch.nn.Module:
    """The network ``network`` describes with ``state_dict`` loaded, in eval mode, on ``device``.

    Raises:
        ModelError: the weights do not fit the config (a corrupt or edited file).
    """
    net = build_network(network)
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(
            f"model weights do not fit the recorded network config ({first}); "
            "the file is corrupt or was edited: retrain or use another model file"
        ) from None
    return net.to(device).eval()


def save_model_file(
    model: ModelFile, path: Path, *, weights_dtype: WeightsDtype | None = None
) -> Path:
    """Write ``model`` to ``path`` atomically as a version-2 model file; returns ``path``.

    Args:
        weights_dtype: store the floating-point weights in this half-precision type (half the
            file size; shipped models use ``"float16"``); :func:`load_model_file` gives them
            back as float32. ``None`` stores them as they are (float32). Integer tensors
            (e.g. batch-norm counters) are never converted.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict.items()}
    if weights_dtype is not None:
        half = _HALF_DTYPES[weights_dtype]
        state = {k: v.to(half) if v.is_floating_point() else v for k, v in state.items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": model.kind,
        "network": model.network.model_dump(mode="json"),
        "spec": model.spec,
        "data_fingerprint": model.data_fingerprint,
        "metrics": model.metrics,
        "training": model.training,
        "state_dict": state,
    }
    if weights_dtype is not None:
        payload["weights_dtype"] = weights_dtype
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised in memory: torch names the archive's records after the file, so writing the
    # temporary file directly would make the bytes (and the sha256) depend on its random name.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    log.info("wrote model %s", path)
    return path


def load_model_file(path: Path, *, kind: str | None = None) -> ModelFile:
    """Read a model file (version 1 or 2) with ``torch.load(weights_only=True)``.

    Args:
        kind: the kind the caller can use; another kind is refused.

    Raises:
        ModelError: the file is missing, not a kneescope model, corrupt, from a newer format,
            of another kind, or its weights do not fit its network config.
    """
    payload = _read_payload(path)
    if payload.get("format") == V1_FORMAT:
        model = _from_v1(path, payload)
    elif payload.get("format") == FORMAT:
        model = _from_v2(path, payload)
    else:
        raise ModelError(
            f"{path} is a torch file but not a kneescope model; "
            "give a file written by `kneescope train`"
        )
    if kind is not None and model.kind != kind:
        raise ModelError(
            f"{path} is a {model.kind} model, not a {kind} model; give a {kind} model file"
        )
    _check_weight_shapes(path, model.network, model.state_dict)
    return model


def _read_payload(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(
            f"model file {path} does not exist; give a file written by `kneescope train`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ModelError(
            f"model file {path} is corrupt or not a torch file ({reason}); "
            "re-copy it or retrain with `kneescope train`"
        ) from None
    if not isinstance(payload, dict):
        raise ModelError(
            f"{path} is a torch file but not a kneescope model; "
            "give a file written by `kneescope train`"
        )
    return payload


def _check_version(path: Path, payload: dict[str, Any], wanted: int) -> None:
    version = payload.get("version")
    if version != wanted:
        raise ModelError(
            f"{path} has model format version {version}, this kneescope reads {wanted}; "
            "upgrade kneescope or retrain"
        )


def _from_v1(path: Path, payload: dict[str, Any]) -> ModelFile:
    _check_version(path, payload, 1)
    spec = payload.get("spec")
    if not isinstance(spec, dict):
        raise ModelError(f"{path}: model description missing; retrain the model")
    training = spec.get("training")
    return ModelFile(
        kind="segmentation",
        network=_network(path, spec.get("network")),
        spec=spec,
        state_dict=_weights(path, payload),
        data_fingerprint=str(spec.get("data_fingerprint", "")),
        training=training if isinstance(training, dict) else {},
        version=1,
    )


def _from_v2(path: Path, payload: dict[str, Any]) -> ModelFile:
    _check_version(path, payload, FORMAT_VERSION)
    kind, spec = payload.get("kind"), payload.get("spec")
    if not isinstance(kind, str) or not isinstance(spec, dict):
        raise ModelError(f"{path}: model kind or description missing; retrain the model")
    metrics, training = payload.get("metrics"), payload.get("training")
    return ModelFile(
        kind=kind,
        network=_network(path, payload.get("network")),
        spec=spec,
        state_dict=_weights(path, payload),
        data_fingerprint=str(payload.get("data_fingerprint") or ""),
        metrics=metrics if isinstance(metrics, dict) else None,
        training=training if isinstance(training, dict) else {},
    )


def validate_description(
    model_type: type[_Model],
    raw: object,
    path: Path,
    *,
    what: str = "model",
    prefix: str = "",
    default_where: str = "",
    hint: str = "",
) -> _Model:
    """``model_type`` validated from ``raw`` (part of the model file at ``path``).

    Args:
        what: what the description is, for the message (``"model"``, ``"landmark"``).
        prefix: put before the failing field's path (``"network."``).
        default_where: the place named when the error has no field path.
        hint: appended to the message (``"; retrain the model"``).

    Raises:
        ModelError: one line, ``<path>: <what> description invalid at <field>: <reason>``.
    """
    try:
        return model_type.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        place = f"{prefix}{where}" if where else default_where
        at = f" at {place}" if place else ""
        raise ModelError(f"{path}: {what} description invalid{at}: {first['msg']}{hint}") from None


def _network(path: Path, raw: object) -> NetworkConfig:
    net = validate_description(NetworkConfig, raw, path, prefix="network.", default_where="network")
    if max(net.features, default=0) > MAX_FEATURES:
        raise ModelError(
            f"{path}: model description invalid: network features {net.features} exceed "
            f"{MAX_FEATURES}; the file is corrupt"
        )
    if net.in_channels > MAX_IN_CHANNELS or net.out_channels > MAX_OUT_CHANNELS:
        raise ModelError(
            f"{path}: model description invalid: {net.in_channels} input / "
            f"{net.out_channels} output channels is more than kneescope allows "
            f"({MAX_IN_CHANNELS} / {MAX_OUT_CHANNELS})"
        )
    return net


def _weights(path: Path, payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights, floating-point ones as float32 (a file may store them in half precision:
    ``weights_dtype``)."""
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: model weights missing or malformed; retrain the model")
    stored = payload.get("weights_dtype")
    if stored is None:
        return state
    if stored not in _HALF_DTYPES:
        raise ModelError(
            f"{path}: unknown weights storage type {str(stored)[:40]!r} (this kneescope reads "
            f"{', '.join(_HALF_DTYPES)}); upgrade kneescope or retrain"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _check_weight_shapes(
    path: Path, network: NetworkConfig, state: dict[str, torch.Tensor]
) -> None:
    """The weights must have exactly the shapes the network config describes; checked on
    torch's ``meta`` device, so a config claiming huge layers allocates nothing.

    Raises:
        ModelError: a missing, extra or differently shaped weight.
    """
    try:
        with torch.device("meta"):
            net = build_network(network)
    except Exception as exc:  # MONAI raises assorted errors on inconsistent configs
        raise ModelError(
            f"{path}: the recorded network config cannot be built ({str(exc)[:120]}); "
            "the file is corrupt: retrain or use another model file"
        ) from None
    wanted = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if wanted == found:
        return
    names = sorted(set(wanted) ^ set(found)) or sorted(k for k in wanted if wanted[k] != found[k])
    name = names[0]
    raise ModelError(
        f"{path}: model weights do not fit the recorded network config ({name}: config "
        f"{wanted.get(name, 'none')}, file {found.get(name, 'none')}); the file is corrupt or "
        "was edited: retrain or use another model file"
    )
