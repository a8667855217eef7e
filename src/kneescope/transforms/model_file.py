"""The segmentation model file: weights plus everything needed to use them.

A model file is a ``torch.save`` of plain data (dicts, lists, strings, numbers, tensors), so it
loads with ``torch.load(weights_only=True)`` and never runs code. Beside the weights it records
the network config, the label map, the spacing and orientation the network was trained at, the
intensity normalisation, the inference window, and a fingerprint of the training data.

It lives in ``transforms`` because both training (writes it) and inference (reads it) need it,
and those two layers may not import each other.
"""

from __future__ import annotations

import logging
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, ValidationError, model_validator

from kneescope.config import FROZEN
from kneescope.errors import ModelError
from kneescope.models import NetworkConfig, build_network
from kneescope.transforms.intensity import NormalisationConfig

log = logging.getLogger(__name__)

FORMAT = "kneescope-segmentation-model"
FORMAT_VERSION = 1

MAX_FEATURES = 4096
"""Widest layer a model file may describe (nnU-Net-class networks stop at 320-512)."""
MAX_CLASSES = 255
"""Most output channels: label maps are uint8."""
MAX_WINDOW_SIDE = 1024
"""Longest side of an inference window, voxels."""
MAX_WINDOW_VOXELS = 2**26
"""Most voxels in one inference window (64 Mi, e.g. 400^3): the window's logits, blending
weights and their sums are allocated per window."""


def window_problem(roi_size_vox: tuple[int, ...]) -> str | None:
    """Why an inference window cannot be used (too small, too large), or None when it can."""
    if len(roi_size_vox) != 3 or any(int(n) < 1 for n in roi_size_vox):
        return f"window {tuple(roi_size_vox)} needs three positive sizes"
    if max(roi_size_vox) > MAX_WINDOW_SIDE or math.prod(roi_size_vox) > MAX_WINDOW_VOXELS:
        return (
            f"window {tuple(roi_size_vox)} is larger than kneescope allows (at most "
            f"{MAX_WINDOW_SIDE} voxels a side and {MAX_WINDOW_VOXELS:,} voxels)"
        )
    return None


class ModelSpec(BaseModel):
    """Everything about a trained segmentation network except its weights.

    Attributes:
        network: the registry config the weights belong to.
        mode: ``"2d"`` (slice-wise along axis i) or ``"3d"``.
        labels: output channel value -> structure name (0 is background, not listed).
        label_scheme: name of the label scheme (``"kneescope"``, ``"oai-zib"``).
        spacing_mm: voxel spacing (i, j, k) the network works at, after reorientation.
        orientation: axis code the arrays are reoriented to before the network, e.g. ``"LPS"``.
        normalisation: intensity normalisation.
        roi_size_vox: inference window (i, j, k); 2D models use ``(1, h, w)``.
        flip_axes: reoriented array axes the training augmentation flipped (the only flips
            test-time augmentation may use; 3D models flip left-right, axis i).
        side_canonical: left knees are mirrored along the left-right axis before the network
            and back after, so the network only ever sees right-knee anatomy; segmenting with
            it needs each knee's side.
        data_fingerprint: hash of the training data (file names, sizes, label counts).
        training: free-form record of the training run (config, epochs, validation scores).
    """

    model_config = FROZEN

    network: NetworkConfig
    mode: Literal["2d", "3d"]
    labels: dict[int, str]
    label_scheme: str = "kneescope"
    spacing_mm: tuple[float, float, float]
    orientation: str = "RAS"
    normalisation: NormalisationConfig = Field(default_factory=NormalisationConfig)
    roi_size_vox: tuple[int, int, int]
    flip_axes: tuple[int, ...] = ()
    side_canonical: bool = False
    data_fingerprint: str = ""
    training: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_limits(self) -> ModelSpec:
        """Refuse values that would allocate absurd memory before anything is allocated."""
        net = self.network
        if max(net.features, default=0) > MAX_FEATURES:
            raise ValueError(
                f"network features {net.features} exceed {MAX_FEATURES}; the file is corrupt"
            )
        if net.out_channels > MAX_CLASSES + 1 or net.in_channels > 16:
            raise ValueError(
                f"{net.in_channels} input / {net.out_channels} output channels is more than "
                f"kneescope allows (16 / {MAX_CLASSES + 1})"
            )
        problem = window_problem(self.roi_size_vox)
        if problem:
            raise ValueError(problem)
        if not all(math.isfinite(s) and 0 < s <= 100 for s in self.spacing_mm):
            raise ValueError(f"spacing_mm {self.spacing_mm} must be positive mm (at most 100)")
        return self

    @property
    def num_classes(self) -> int:
        return self.network.out_channels


@dataclass(frozen=True)
class SegmentationModel:
    """A model spec with its weights (``state_dict`` tensors on the CPU)."""

    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]

    def build(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The network with these weights, in eval mode, on ``device``."""
        net = build_network(self.spec.network)
        try:
            net.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ModelError(
                f"model weights do not fit the recorded network config ({first}); "
                "the file is corrupt or was edited: retrain or use another model file"
            ) from None
        return net.to(device).eval()


def save_model(model: SegmentationModel, path: Path) -> Path:
    """Write ``model`` to ``path`` atomically (temporary sibling, then rename)."""
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "spec": model.spec.model_dump(mode="json"),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    log.info("wrote model %s", path)
    return path


def load_model(path: Path) -> SegmentationModel:
    """Read a model file with ``torch.load(weights_only=True)``.

    Raises:
        ModelError: the file is missing, not a kneescope model, corrupt, or from a newer format.
    """
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
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(
            f"{path} is a torch file but not a kneescope segmentation model; "
            "give a file written by `kneescope train`"
        )
    version = payload.get("version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{path} has model format version {version}, this kneescope reads {FORMAT_VERSION}; "
            "upgrade kneescope or retrain"
        )
    try:
        spec = ModelSpec.model_validate(payload.get("spec"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        at = f" at {where}" if where else ""
        raise ModelError(f"{path}: model description invalid{at}: {first['msg']}") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: model weights missing or malformed; retrain the model")
    _check_weight_shapes(path, spec, state)
    return SegmentationModel(spec=spec, state_dict=state)


def _check_weight_shapes(path: Path, spec: ModelSpec, state: dict[str, torch.Tensor]) -> None:
    """The weights must have exactly the shapes the network config describes; checked on
    torch's ``meta`` device, so a config claiming huge layers allocates nothing.

    Raises:
        ModelError: a missing, extra or differently shaped weight.
    """
    try:
        with torch.device("meta"):
            net = build_network(spec.network)
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
