"""Grad-CAM saliency: a network trained on the synthetic bars looks at the bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from kneescope.capabilities.classification.config import default_classifier
from kneescope.capabilities.classification.saliency import (
    gradcam_saliency,
    last_conv_layer,
    overlay_rgb,
    save_saliency_overlay,
)
from kneescope.capabilities.classification.synthetic import synthetic_classification
from kneescope.errors import InputError
from kneescope.models import build_network

SIZE = (32, 32)


def _zscore(images: np.ndarray) -> torch.Tensor:
    mean = images.mean(axis=(1, 2), keepdims=True)
    std = images.std(axis=(1, 2), keepdims=True)
    return torch.from_numpy(((images - mean) / std)[:, None].astype(np.float32))


def _bar_masks(n: int, seed: int) -> np.ndarray:
    """The bars of ``synthetic_classification(n, seed=seed)``: the same images without noise
    (the generator draws the noise last, so the geometry is the same), minus each row's
    background (constant along a row), thresholded at half the bar's contrast."""
    clean = synthetic_classification(n, size_vox=SIZE, noise=0.0, seed=seed).images
    bar = clean - clean.min(axis=2, keepdims=True)
    return bar > 0.4


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """The small VGG-like classifier trained on 3 bar orientations (about 3 CPU-seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: more threads only wait on each other
    torch.manual_seed(0)
    data = synthetic_classification(600, size_vox=SIZE, seed=11)
    x, y = _zscore(data.images), torch.from_numpy(data.labels)
    net = build_network(default_classifier(SIZE, 3))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(250):
        picks = torch.randint(0, len(y), (32,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[picks]), y[picks]).backward()
        opt.step()
    torch.set_num_threads(threads)
    net.eval()
    return net


def test_saliency_of_a_trained_network_lies_on_the_bar(trained: nn.Module) -> None:
    n, seed = 60, 12
    data = synthetic_classification(n, size_vox=SIZE, seed=seed)
    masks = _bar_masks(n, seed)
    # the masks are the bars of these very images (the generator's draws did not shift)
    assert all(
        data.images[i][masks[i]].mean() > data.images[i][~masks[i]].mean() + 0.5 for i in range(n)
    )
    x = _zscore(data.images)
    with torch.no_grad():
        accuracy = (trained(x).argmax(1).numpy() == data.labels).mean()
    assert accuracy > 0.9  # precondition: the network has learned the task
    maps = gradcam_saliency(trained, x)
    assert maps.shape == (n, *SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    # share of the saliency mass on the bar, against the bar's share of the image (chance)
    on_bar = (maps * masks).sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    chance = masks.mean(axis=(1, 2))
    assert np.median(on_bar / chance) > 2.5
    # pointing game: the hottest pixel lies on the bar or within 3 pixels of it (the map comes
    # from an 8 x 8 layer: one cell is 4 pixels)
    near = np.stack([ndimage.binary_dilation(m, iterations=3) for m in masks])
    peaks = maps.reshape(n, -1).argmax(1)
    hits = near.reshape(n, -1)[np.arange(n), peaks]
    assert hits.mean() > 0.7 > 3 * near.mean()


def test_saliency_leaves_the_network_as_it_was(trained: nn.Module) -> None:
    data = synthetic_classification(4, size_vox=SIZE, seed=13)
    x = _zscore(data.images)
    trained.train()
    for p in trained.parameters():
        p.grad = None  # the fixture's last training step left gradients
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    relus = [m.inplace for m in trained.modules() if isinstance(m, nn.ReLU)]
    with torch.inference_mode():  # as a prediction loop would call it
        maps = gradcam_saliency(trained, x, class_index=[0, 1, 2, 0])
    assert maps.shape == (4, *SIZE)
    assert trained.training  # mode kept
    assert all(p.grad is None for p in trained.parameters())
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())
    assert [m.inplace for m in trained.modules() if isinstance(m, nn.ReLU)] == relus
    assert all(not m._forward_hooks and not m._backward_hooks for m in trained.modules())
    trained.eval()
    # per-image classes give each image its own map: the same image for two classes differs
    two = gradcam_saliency(trained, x[:1].repeat(2, 1, 1, 1), class_index=[0, 1])
    assert not np.allclose(two[0], two[1])


def test_monai_resnet_backbone_default_layer() -> None:
    from monai.networks.nets import resnet18

    torch.manual_seed(0)
    net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=5)
    assert last_conv_layer(net) == "layer4.1.conv2"
    x = torch.randn(3, 1, 64, 48)
    maps = gradcam_saliency(net, x.numpy())
    assert maps.shape == (3, 64, 48) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    by_block = gradcam_saliency(net, x, target_layer="layer4", class_index=2)
    assert by_block.shape == (3, 64, 48)


class _SharedBranches(nn.Module):
    """Both halves of the input through one convolution (shared weights), as a both-knees
    network does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x[:, :1]).mean(dim=(2, 3))
        b = self.conv(x[:, 1:]).mean(dim=(2, 3))
        out: torch.Tensor = self.head(torch.cat([a, b], dim=1))
        return out


class _Folding(nn.Module):
    """A both-knees network in miniature: ``(B, 2, H, W)`` -> one pass of a shared 1 x 1
    convolution (identity) over ``(2B, 1, H, W)`` -> mean per image -> class 0 scores the
    image (channel 0), class 1 its pair (channel 1). Grad-CAM of class 0 on the image is then
    exactly ``relu(image) / max``; its map of the pair is empty."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.head.weight.copy_(torch.eye(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = x.reshape(x.shape[0] * 2, 1, *x.shape[2:])
        pooled = self.conv(both).mean(dim=(2, 3)).reshape(x.shape[0], 2)
        out: torch.Tensor = self.head(pooled)
        return out


def test_folded_views_give_the_map_of_the_image_or_of_its_pair() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(3, 2, 12, 10)).astype(np.float32))
    net = _Folding()

    def truth(a: torch.Tensor) -> np.ndarray:
        r = a.clamp_min(0).numpy()
        return r / r.max(axis=(1, 2), keepdims=True)

    image_map = gradcam_saliency(net, x, class_index=0)
    assert image_map.shape == (3, 12, 10)
    np.testing.assert_allclose(image_map, truth(x[:, 0]), atol=1e-5)
    assert not gradcam_saliency(net, x, class_index=0, view=1).any()
    np.testing.assert_allclose(
        gradcam_saliency(net, x, class_index=1, view=1), truth(x[:, 1]), atol=1e-5
    )
    with pytest.raises(InputError, match=r"view must lie in 0\.\.1"):
        gradcam_saliency(net, x, view=2)


def test_bad_requests_are_refused(trained: nn.Module) -> None:
    x = _zscore(synthetic_classification(2, size_vox=SIZE, seed=14).images)
    with pytest.raises(InputError, match="no layer 'nope'"):
        gradcam_saliency(trained, x, target_layer="nope")
    with pytest.raises(InputError, match=r"class_index must lie in 0\.\.2"):
        gradcam_saliency(trained, x, class_index=3)
    with pytest.raises(InputError, match="2 images"):
        gradcam_saliency(trained, x, class_index=[0])
    with pytest.raises(InputError, match=r"\(N, C, \*spatial\)"):
        gradcam_saliency(trained, x[0, 0])
    with pytest.raises(InputError, match="NaN"):
        gradcam_saliency(trained, torch.full_like(x, float("nan")))
    with pytest.raises(InputError, match="runs 2 times"):
        gradcam_saliency(_SharedBranches(), torch.randn(2, 2, 16, 16))
    with pytest.raises(InputError, match="no convolutional layer"):
        last_conv_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_overlay_png(tmp_path: Path) -> None:
    from PIL import Image

    image = np.linspace(0, 1000, 40 * 30).reshape(40, 30)
    saliency = np.zeros((40, 30), dtype=np.float32)
    saliency[10:20, 5:15] = 1.0
    rgb = overlay_rgb(image, saliency, alpha=0.5)
    assert rgb.shape == (40, 30, 3) and rgb.dtype == np.uint8
    # where the saliency is 0 the pixel stays grey; where it is 1 it is coloured
    assert rgb[30, 20, 0] == rgb[30, 20, 1] == rgb[30, 20, 2]
    assert len(set(rgb[15, 10].tolist())) > 1
    path = save_saliency_overlay(image, saliency, tmp_path / "knee.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (30, 40) and im.mode == "RGB"
        assert np.array_equal(np.asarray(im), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["knee.png"]
    with pytest.raises(InputError, match="same shape"):
        save_saliency_overlay(image, saliency[:10], tmp_path / "bad.png")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        save_saliency_overlay(image, saliency * 2, tmp_path / "bad.png")
    with pytest.raises(InputError, match="does not exist"):
        save_saliency_overlay(image, saliency, tmp_path / "missing" / "x.png")
    assert not (tmp_path / "bad.png").exists()
