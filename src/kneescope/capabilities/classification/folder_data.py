"""Training images from a folder with one sub-folder per class (e.g. kneeKL224's ``train/0`` to
``train/4``: 224 x 224 8-bit crops of knee radiographs, named participant ID + ``L``/``R``).

Layout: ``ROOT/<class>/<image>``, images PNG or JPEG (one greyscale image each). Classes are
the sub-folder names in the order given (or sorted). Each image is resized (bilinear with
anti-aliasing) to the network's input size; the task normalises it.

Pairs: two images whose names differ only in a final ``L``/``R`` before the suffix (e.g.
``9001695L.png`` and ``9001695R.png``) are each other's pair (the same participant's two
knees); an image without one is its own pair.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from kneescope.capabilities.classification.synthetic import ClassificationData
from kneescope.errors import InputError
from kneescope.io.raster_image import is_raster_image, read_raster_image

_SIDE = re.compile(r"^(?P<stem>.+?)(?P<side>[LR])$")


def resize_images(
    images: Sequence[npt.NDArray[np.generic]], size_vox: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """``(N, rows, columns)`` float32: each image resized to ``size_vox`` (bilinear,
    anti-aliased)."""
    out = np.empty((len(images), *size_vox), dtype=np.float32)
    for idx, image in enumerate(images):
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None]
        if tuple(tensor.shape[2:]) != tuple(size_vox):
            tensor = torch.nn.functional.interpolate(
                tensor, size=size_vox, mode="bilinear", align_corners=False, antialias=True
            )
        out[idx] = tensor[0, 0].numpy()
    return out


def pair_indices(names: Sequence[str]) -> npt.NDArray[np.int64]:
    """``(N,)`` index of each name's L/R partner (itself when it has none)."""
    where: dict[tuple[str, str], int] = {}
    keys: list[tuple[str, str] | None] = []
    for idx, name in enumerate(names):
        match = _SIDE.match(Path(name).stem)
        key = None if match is None else (match["stem"], match["side"])
        keys.append(key)
        if key is not None:
            where[key] = idx
    out = np.arange(len(names), dtype=np.int64)
    for idx, key in enumerate(keys):
        if key is not None:
            other = (key[0], "L" if key[1] == "R" else "R")
            out[idx] = where.get(other, idx)
    return out


def load_class_folder(
    root: Path, classes: Sequence[str], size_vox: tuple[int, int]
) -> ClassificationData:
    """Every PNG/JPEG under ``root/<class>/``, resized and normalised.

    Args:
        root: the folder holding one sub-folder per class.
        classes: class names = sub-folder names, in label order; empty: the sorted sub-folders.
        size_vox: the network's input size (rows, columns).

    Returns:
        images ``(N, rows, columns)`` float32 (grey values as stored), labels, classes, names
        (``<class>/<file>``) and pairs.

    Raises:
        InputError: a missing folder or class folder, no images, or an unreadable image.
    """
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; give a folder with one sub-folder per class")
    names = tuple(classes) or tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if len(names) < 2:
        raise InputError(f"{root}: needs at least two class sub-folders, found {list(names)}")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            raise InputError(f"{folder}: no such class folder; the classes are {list(names)}")
        found = sorted(p for p in folder.iterdir() if p.is_file() and is_raster_image(p))
        files += found
        labels += [label] * len(found)
    if not files:
        raise InputError(f"{root}: no PNG or JPEG images in the class folders")
    images = resize_images([read_raster_image(p) for p in files], size_vox)
    image_names = tuple(f"{p.parent.name}/{p.name}" for p in files)
    return ClassificationData(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        classes=names,
        names=image_names,
        pairs=pair_indices([p.name for p in files]),
    )
