"""Saliency maps for reports: where in the image the classifier found its evidence.

:func:`gradcam_saliency` computes Grad-CAM (Selvaraju et al. 2017) with MONAI's
:class:`monai.visualize.GradCAM`: the activations of one convolutional layer, weighted by the
spatial mean of the gradient of the class score with respect to them, summed over channels,
rectified, upsampled (bilinear) to the input size and scaled to ``[0, 1]`` per image (divided
by its maximum; a map with no positive evidence is all zeros). By default the layer is the
network's last convolution (the last ``Conv1d/2d/3d`` it registers): that works for
kneescope's VGG classifier and for MONAI's ResNet and DenseNet backbones; pass
``target_layer`` to choose another (e.g. ``"layer4"`` of a MONAI ResNet).

:func:`save_saliency_overlay` writes an image with its map blended on top as a PNG.

The caller's network is never changed: the maps are computed on a copy (MONAI registers hooks
that stay on the module, switches in-place activations off and accumulates gradients).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from kneescope.errors import InputError
from kneescope.io.atomic import atomic_write

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def last_conv_layer(network: nn.Module) -> str:
    """Name (as ``network.named_modules()`` gives it) of the last convolution ``network``
    registers.

    Raises:
        InputError: the network has no convolution.
    """
    names = [name for name, module in network.named_modules() if isinstance(module, _CONVS)]
    if not names:
        raise InputError(
            "the network has no convolutional layer for Grad-CAM; pass target_layer naming a "
            "layer with a spatial output"
        )
    return names[-1]


def _as_batch(images: Any) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise InputError(
            f"images must be a torch tensor or numpy array, found {type(images).__name__}"
        )
    if images.ndim < 3 or images.shape[0] < 1:
        raise InputError(
            f"images must be a batch (N, C, *spatial) with N >= 1, found shape "
            f"{tuple(images.shape)}; add the batch and channel axes"
        )
    if not images.is_floating_point():
        images = images.float()
    if not bool(torch.isfinite(images).all()):
        raise InputError("images contain NaN or infinity; check the normalisation")
    return images


def _classes(class_index: int | Sequence[int] | None, n: int) -> list[int] | None:
    if class_index is None:
        return None
    if isinstance(class_index, int | np.integer):
        return [int(class_index)] * n
    picks = [int(c) for c in class_index]
    if len(picks) != n:
        raise InputError(
            f"class_index has {len(picks)} entries for {n} images; give one per image or one int"
        )
    return picks


def gradcam_saliency(
    network: nn.Module,
    images: torch.Tensor | npt.NDArray[Any],
    *,
    class_index: int | Sequence[int] | None = None,
    target_layer: str | None = None,
    view: int = 0,
) -> npt.NDArray[np.float32]:
    """Grad-CAM saliency of ``network`` for each image of a batch.

    Args:
        network: a classifier mapping ``(N, C, *spatial)`` float inputs to ``(N, K)`` logits
            (kneescope's VGG classifier, a MONAI ResNet or DenseNet, ...). It is not changed.
        images: ``(N, C, *spatial)`` inputs, normalised as the network expects (torch tensor
            on any device, or numpy array).
        class_index: the class whose evidence is shown: ``None`` the predicted class of each
            image, an int the same class for all, or one int per image.
        target_layer: name of the layer (``named_modules``) whose activations are weighted;
            ``None``: :func:`last_conv_layer`.
        view: for a network that folds several images of one input into its batch (the
            both-knees network runs its shared backbone once on ``(2N, C, *spatial)``: input
            ``i``'s image at ``2i``, its pair at ``2i + 1``), which of them the map is of:
            0 the image being graded, 1 its pair. A network that does not fold has only view 0.

    Returns:
        ``(N, *spatial)`` float32 maps in ``[0, 1]`` at the input size (1 = the strongest
        evidence in that image), on the CPU.

    Raises:
        InputError: a batch of the wrong shape or with non-finite values, an unknown
            ``target_layer``, a class index or view out of range, or a target layer that runs
            more than once per forward pass (a network that calls a shared branch twice: give
            a layer that runs once, or compute the maps on the single-branch network).
    """
    x = _as_batch(images)
    picks = _classes(class_index, x.shape[0])
    # the copy's parameters and the cloned input must be ordinary (autograd) tensors even when
    # the caller runs under torch.inference_mode() or torch.no_grad()
    with torch.inference_mode(False), torch.enable_grad():
        return _gradcam(network, x, picks, target_layer, view)


def _gradcam(
    network: nn.Module,
    x: torch.Tensor,
    picks: list[int] | None,
    target_layer: str | None,
    view: int,
) -> npt.NDArray[np.float32]:
    from monai.visualize.class_activation_maps import GradCAM

    n = x.shape[0]
    model = copy.deepcopy(network)
    layer = target_layer if target_layer is not None else last_conv_layer(model)
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        raise InputError(
            f"the network has no layer {layer!r}; name one of its modules "
            f"(e.g. {last_conv_layer(model)!r})"
        )
    # MONAI's full backward hook fails on an output that a following in-place activation
    # overwrites: switch in-place off everywhere in the copy
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False  # type: ignore[assignment]
    calls = [0]

    def count(_m: nn.Module, _i: Any, _o: Any) -> None:
        calls[0] += 1

    modules[layer].register_forward_hook(count)
    try:
        device = next(iter(model.parameters())).device
    except StopIteration:
        device = x.device
    cam = GradCAM(nn_module=model, target_layers=layer, postprocessing=lambda m: m)
    out = np.zeros((n, *x.shape[2:]), dtype=np.float32)
    # an input that requires grad makes the hooks fire even on the first layer
    batch = x.detach().clone().to(device).requires_grad_(True)
    model.eval()
    n_classes = _n_classes(model, batch)
    if picks is None:
        with torch.no_grad():
            picks = [int(c) for c in model(batch).argmax(1).tolist()]
    if min(picks) < 0 or max(picks) >= n_classes:
        raise InputError(
            f"class_index must lie in 0..{n_classes - 1}, found {min(picks)}..{max(picks)}"
        )
    for c in sorted(set(picks)):
        rows = [i for i, p in enumerate(picks) if p == c]
        calls[0] = 0
        maps = cam(batch[rows], class_idx=c).detach().float()  # (B * views, 1, *spatial)
        if calls[0] != 1:
            raise InputError(
                f"layer {layer!r} runs {calls[0]} times per forward pass (shared weights); "
                "pass a target_layer that runs once, or use the single-branch network"
            )
        views, rest = divmod(maps.shape[0], len(rows))
        if rest or views < 1:
            raise InputError(
                f"layer {layer!r} sees a batch of {maps.shape[0]} for {len(rows)} inputs; "
                "pass a target_layer inside the network's per-image part"
            )
        if not 0 <= view < views:
            raise InputError(
                f"view must lie in 0..{views - 1} (the network folds {views} image(s) per "
                f"input), found {view}"
            )
        maps = maps.reshape(len(rows), views, *maps.shape[1:])[:, view]
        flat = maps.reshape(len(rows), -1).clamp_min(0)
        peak = flat.max(dim=1, keepdim=True).values
        scaled = torch.where(peak > 0, flat / peak.clamp_min(1e-12), torch.zeros_like(flat))
        out[rows] = scaled.reshape(len(rows), *x.shape[2:]).clamp(0, 1).cpu().numpy()
    return out


def _n_classes(model: nn.Module, batch: torch.Tensor) -> int:
    with torch.no_grad():
        logits = model(batch[:1])
    if logits.ndim != 2:
        raise InputError(
            f"the network returns shape {tuple(logits.shape)}, not (N, classes) logits; "
            "compute saliency on a network with one row of logits per image"
        )
    return int(logits.shape[1])


def overlay_rgb(
    image: npt.NDArray[Any], saliency: npt.NDArray[Any], *, alpha: float = 0.5
) -> npt.NDArray[np.uint8]:
    """``(H, W, 3)`` uint8: the grey image (1st..99th percentile stretched) with the saliency
    blended on top in the "inferno" colour map, opacity ``alpha * saliency`` per pixel.

    Args:
        image: ``(H, W)`` intensities (any range).
        saliency: ``(H, W)`` map in ``[0, 1]`` (as :func:`gradcam_saliency` returns).
        alpha: opacity of the map where the saliency is 1 (0 .. 1).

    Raises:
        InputError: shapes that differ or are not 2D, non-finite values, a saliency outside
            ``[0, 1]``, ``alpha`` outside ``[0, 1]``.
    """
    from matplotlib import colormaps

    img = np.asarray(image, dtype=np.float64)
    sal = np.asarray(saliency, dtype=np.float64)
    if img.ndim != 2 or sal.shape != img.shape:
        raise InputError(
            f"image and saliency must be 2D of the same shape, found {img.shape} and "
            f"{sal.shape}; pass one image and its map"
        )
    if not (np.isfinite(img).all() and np.isfinite(sal).all()):
        raise InputError("image or saliency contains NaN or infinity")
    if sal.min() < 0 or sal.max() > 1:
        raise InputError("saliency must lie in [0, 1]; pass gradcam_saliency's map")
    if not 0 <= alpha <= 1:
        raise InputError(f"alpha must lie in [0, 1], found {alpha}")
    lo, hi = np.percentile(img, [1, 99])
    grey = np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(img)
    colour = colormaps["inferno"](sal)[..., :3]
    weight = (alpha * sal)[..., None]
    rgb = (1 - weight) * grey[..., None] + weight * colour
    out: npt.NDArray[np.uint8] = np.round(rgb * 255).astype(np.uint8)
    return out


def save_saliency_overlay(
    image: npt.NDArray[Any],
    saliency: npt.NDArray[Any],
    path: str | Path,
    *,
    alpha: float = 0.5,
) -> Path:
    """Write :func:`overlay_rgb` of ``image`` and ``saliency`` as an RGB PNG at ``path``
    (same pixel size as the image), atomically. Returns the path.

    Raises:
        InputError: as :func:`overlay_rgb`; the folder of ``path`` does not exist.
    """
    from PIL import Image

    rgb = overlay_rgb(image, saliency, alpha=alpha)
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"folder {path.parent} does not exist; create it first")
    atomic_write(path, lambda tmp: Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG"))
    return path
