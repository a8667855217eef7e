"""One folder per knee that 3D Slicer and ITK-SNAP open in one step, without a ``.mrml``
scene: the image, its segmentation with names and colours, and a loader for each viewer.

``write_viewer_bundle(folder, image, labels, names, stem)`` writes, atomically (the folder
appears complete or not at all):

- ``<stem>.nrrd``: the image (geometry exact, LPS as ITK writes it);
- ``<stem>_labels.seg.nrrd``: the label map as a Slicer segmentation, each segment named and
  coloured (:mod:`kneescope.io.seg_nrrd`);
- ``<stem>.itksnap``: an ITK-SNAP workspace (its XML registry format) with the image as main
  layer, the segmentation layer and the label table (names, colours): ITK-SNAP ->
  File -> Open Workspace, or ``itksnap -w <stem>.itksnap``. ITK-SNAP resolves the layers
  relative to the workspace file when the folder is moved;
- ``<stem>_labels.itksnap.txt``: the same label table as an ITK-SNAP label description file
  (``itksnap -g <stem>.nrrd -s <stem>_labels.seg.nrrd -l <stem>_labels.itksnap.txt``);
- ``load_in_slicer.py``: ``Slicer --python-script load_in_slicer.py`` opens the image with the
  segmentation over it (the files are found next to the script). Dragging the two ``.nrrd``
  files onto Slicer's window does the same: Slicer reads ``.seg.nrrd`` as a segmentation.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kneescope.core.labels import label_colour
from kneescope.core.volume import Volume
from kneescope.errors import InputError

SLICER_SCRIPT = "load_in_slicer.py"
ITKSNAP_WORKSPACE_VERSION = "20190612"
"""The workspace format version ITK-SNAP 3.8 and later write and read."""


@dataclass(frozen=True)
class ViewerBundle:
    """The files :func:`write_viewer_bundle` wrote (absolute paths)."""

    folder: Path
    image: Path
    segmentation: Path
    itksnap_workspace: Path
    itksnap_labels: Path
    slicer_script: Path


def bundle_paths(folder: Path, stem: str) -> ViewerBundle:
    """Where each file of the bundle for ``stem`` lies inside ``folder``."""
    return ViewerBundle(
        folder=folder,
        image=folder / f"{stem}.nrrd",
        segmentation=folder / f"{stem}_labels.seg.nrrd",
        itksnap_workspace=folder / f"{stem}.itksnap",
        itksnap_labels=folder / f"{stem}_labels.itksnap.txt",
        slicer_script=folder / SLICER_SCRIPT,
    )


def _entry(parent: ET.Element, key: str, value: str) -> None:
    ET.SubElement(parent, "entry", key=key, value=value)


def _folder(parent: ET.Element, key: str) -> ET.Element:
    return ET.SubElement(parent, "folder", key=key)


def itksnap_workspace(paths: ViewerBundle, names: Mapping[int, str]) -> str:
    """The text of an ITK-SNAP workspace: main image, segmentation, label table."""
    root = ET.Element("registry")
    _entry(root, "SaveLocation", str(paths.folder))
    _entry(root, "Version", ITKSNAP_WORKSPACE_VERSION)
    layers = _folder(root, "Layers")
    main = _folder(layers, "Layer[000]")
    _entry(main, "AbsolutePath", str(paths.image))
    _entry(main, "Role", "MainRole")
    _entry(main, "Tags", "")
    meta = _folder(main, "LayerMetaData")
    _entry(meta, "Alpha", "255")
    _entry(meta, "CustomNickName", paths.image.name)
    _entry(meta, "Sticky", "0")
    _entry(meta, "Tags", "")
    iris = _folder(_folder(main, "ProjectMetaData"), "IRIS")
    table = _folder(iris, "LabelTable")
    _entry(table, "NumberOfElements", str(len(names)))
    for n, (value, name) in enumerate(sorted(names.items())):
        element = _folder(table, f"Element[{n}]")
        r, g, b = label_colour(value, name)
        _entry(element, "Alpha", "255")
        _entry(element, "Color", f"{r} {g} {b}")
        _entry(element, "Flags", "1 1")
        _entry(element, "Index", str(value))
        _entry(element, "Label", name)
    seg = _folder(layers, "Layer[001]")
    _entry(seg, "AbsolutePath", str(paths.segmentation))
    _entry(seg, "Role", "SegmentationRole")
    _entry(seg, "Tags", "")
    seg_meta = _folder(seg, "LayerMetaData")
    _entry(seg_meta, "Alpha", "0.5")
    _entry(seg_meta, "CustomNickName", paths.segmentation.name)
    _entry(seg_meta, "Sticky", "1")
    _entry(seg_meta, "Tags", "")
    ET.indent(root, space="  ")
    header = (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        "<!--ITK-SNAP (itksnap.org) Project File, written by kneescope.\n"
        "Keep it next to the images it names: ITK-SNAP finds them relative to this file\n"
        "when the folder is moved.\n-->\n"
        "<!DOCTYPE registry [\n"
        "<!ELEMENT registry (entry*,folder*)>\n"
        "<!ELEMENT folder (entry*,folder*)>\n"
        "<!ELEMENT entry EMPTY>\n"
        "<!ATTLIST folder key CDATA #REQUIRED>\n"
        "<!ATTLIST entry key CDATA #REQUIRED>\n"
        "<!ATTLIST entry value CDATA #REQUIRED>\n"
        "]>\n"
    )
    return header + ET.tostring(root, encoding="unicode") + "\n"


def slicer_script(paths: ViewerBundle) -> str:
    """The text of ``load_in_slicer.py`` (runs inside 3D Slicer's Python)."""
    return f'''"""Open this knee in 3D Slicer: Slicer --python-script {SLICER_SCRIPT}
(or drag {paths.image.name} and {paths.segmentation.name} onto Slicer's window).
Written by kneescope."""

import os

import slicer

try:
    HERE = os.path.dirname(os.path.abspath(__file__))
except NameError:  # run by exec() without __file__: the folder it was written to
    HERE = {str(paths.folder)!r}

volume = slicer.util.loadVolume(os.path.join(HERE, {paths.image.name!r}))
segmentation = slicer.util.loadSegmentation(os.path.join(HERE, {paths.segmentation.name!r}))
segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
slicer.util.setSliceViewerLayers(background=volume, fit=True)
'''


def write_viewer_bundle(
    folder: Path,
    image: Volume,
    labels: Volume,
    names: Mapping[int, str],
    stem: str,
    *,
    overwrite: bool = False,
) -> ViewerBundle:
    """Write the image, its segmentation and both viewers' loaders into ``folder``.

    Args:
        folder: the bundle folder to create (its parent must exist).
        image: the image volume.
        labels: its label map, on the image's grid.
        names: label value -> structure name.
        stem: file-name stem of the image (e.g. the series' canonical stem).
        overwrite: replace an existing folder.

    Raises:
        InputError: the folder exists (without ``overwrite``) or its parent does not, the
            label map is not on the image's grid, or see
            :func:`~kneescope.io.seg_nrrd.write_seg_nrrd`.
    """
    import numpy as np

    from kneescope.io.atomic import atomic_write_dir, atomic_write_text
    from kneescope.io.colour_table import itksnap_label_description
    from kneescope.io.itk_formats import write_itk
    from kneescope.io.seg_nrrd import write_seg_nrrd

    folder = Path(folder).absolute()
    if not folder.parent.is_dir():
        raise InputError(f"--out {folder}: folder {folder.parent} does not exist; create it first")
    if folder.exists() and not overwrite:
        raise InputError(f"--out {folder} exists; pass --overwrite to replace it")
    if image.shape != labels.shape or not np.allclose(
        image.affine_ras, labels.affine_ras, atol=1e-3, rtol=0
    ):
        raise InputError(
            f"the label map ({labels.shape}) is not on the image's grid ({image.shape}); "
            "resample it onto the image first"
        )
    final = bundle_paths(folder, stem)
    with atomic_write_dir(folder) as tmp:
        staged = bundle_paths(tmp, stem)
        write_itk(image, staged.image)
        write_seg_nrrd(Volume(labels.array, image.affine_ras), staged.segmentation, names)
        atomic_write_text(staged.itksnap_workspace, itksnap_workspace(final, names))
        atomic_write_text(staged.itksnap_labels, itksnap_label_description(names))
        atomic_write_text(staged.slicer_script, slicer_script(final))
    return final
