"""Heat-maps for landmark regression: Gaussian targets, the loss, and peak decoding.

The network outputs one logit map per landmark; a spatial softmax turns each into a
probability map over the pixels. Training pulls that map towards a normalised Gaussian around
the true position (cross-entropy between the two distributions); decoding takes the most
probable pixel and refines it with the probability-weighted mean position within three
standard deviations of it (a local soft-argmax: sub-pixel, and blind to far-away mass).
"""

from __future__ import annotations

import math

import torch


def sigma_vox(sigma_mm: float, spacing_mm: tuple[float, float]) -> tuple[float, float]:
    """A heat-map standard deviation in mm as pixels per axis (rows, columns)."""
    return (sigma_mm / spacing_mm[0], sigma_mm / spacing_mm[1])


def _grid(shape: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.arange(shape[0], dtype=torch.float32, device=device)
    cols = torch.arange(shape[1], dtype=torch.float32, device=device)
    return rows[:, None], cols[None, :]


def gaussian_targets(
    positions_vox: torch.Tensor, shape: tuple[int, int], sigma_vox: tuple[float, float]
) -> torch.Tensor:
    """Normalised Gaussians around each landmark.

    Args:
        positions_vox: ``(B, L, 2)`` float (row, column) positions in pixels.
        shape: heat-map size (rows, columns).
        sigma_vox: standard deviation per axis, pixels.

    Returns:
        ``(B, L, rows, columns)`` float32, each map summing to 1.
    """
    rows, cols = _grid(shape, positions_vox.device)
    dr = (rows - positions_vox[..., 0, None, None].float()) / sigma_vox[0]
    dc = (cols - positions_vox[..., 1, None, None].float()) / sigma_vox[1]
    maps = torch.exp(-0.5 * (dr**2 + dc**2))
    return maps / maps.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def heatmap_loss(
    logits: torch.Tensor, positions_vox: torch.Tensor, sigma_vox: tuple[float, float]
) -> torch.Tensor:
    """Cross-entropy of the spatial softmax of ``logits`` against Gaussian targets.

    ``logits`` ``(B, L, rows, columns)``; ``positions_vox`` ``(B, L, 2)``. Returns the mean
    over the batch and the landmarks (a scalar).
    """
    shape = (logits.shape[-2], logits.shape[-1])
    target = gaussian_targets(positions_vox, shape, sigma_vox).flatten(2)
    log_prob = torch.log_softmax(logits.float().flatten(2), dim=-1)
    return -(target * log_prob).sum(dim=-1).mean()


def decode_heatmaps(logits: torch.Tensor, sigma_vox: tuple[float, float]) -> torch.Tensor:
    """Landmark positions from logit maps (peak, then local soft-argmax).

    Args:
        logits: ``(B, L, rows, columns)`` network outputs.
        sigma_vox: the training heat-maps' standard deviation per axis, pixels.

    Returns:
        ``(B, L, 2)`` float32 (row, column) positions in pixels.
    """
    batch, count, n_rows, n_cols = logits.shape
    prob = torch.softmax(logits.float().flatten(2), dim=-1).view(batch, count, n_rows, n_cols)
    peak = prob.flatten(2).argmax(dim=-1)
    peak_r = (peak // n_cols).float()[..., None, None]
    peak_c = (peak % n_cols).float()[..., None, None]
    rows, cols = _grid((n_rows, n_cols), logits.device)
    radius_r = math.ceil(3 * sigma_vox[0])
    radius_c = math.ceil(3 * sigma_vox[1])
    near = ((rows - peak_r).abs() <= radius_r) & ((cols - peak_c).abs() <= radius_c)
    weights = prob * near
    total = weights.sum(dim=(-2, -1)).clamp_min(1e-12)
    row = (weights * rows).sum(dim=(-2, -1)) / total
    col = (weights * cols).sum(dim=(-2, -1)) / total
    return torch.stack([row, col], dim=-1)
