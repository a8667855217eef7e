"""DICOM Segmentation (SEG) objects of knee label maps, written and read with highdicom.

A kneescope label map (integer values, :data:`kneescope.core.labels.KNEE_LABELS`) becomes one
Segmentation instance (SOP class 1.2.840.10008.5.1.4.1.1.66.4) that references every source
MR slice of its series (same Study, Frame of Reference, patient), with one segment per
structure present:

* segments are ``FRACTIONAL`` with type ``OCCUPANCY`` and maximum value 1, so each voxel of a
  segment is 0 (outside) or 1 (fully inside): a binary mask, but 8 bits per pixel, which lets
  the frames be compressed losslessly (DICOM allows an encapsulated transfer syntax for
  ``BINARY`` segments only with JPEG 2000, for which no encoder is installed) and lets
  segments overlap (a label map never makes them overlap; other tools' masks may);
  ``binary=True`` writes ``BINARY`` segments (1 bit per pixel, uncompressed) for readers
  that know no other;
* frames are compressed with JPEG-LS lossless (default; ``pyjpegls``) or RLE lossless, or
  left uncompressed; empty frames are left out;
* each segment carries SNOMED CT codes (:data:`SEGMENT_CODES`): the property category
  (anatomical structure or tissue) and type (femur, tibia, patella, cartilage, meniscus), the
  structure a tissue belongs to with a medial/lateral modifier, the knee joint with its side
  (right/left) as anatomic region, kneescope's structure name as SegmentLabel (what the reader
  maps back to label values), a display colour, and the algorithm that made it.

Geometry: the label map must lie on the series' voxel grid (see
:mod:`kneescope.io.dicom_series`: ``array[i, j, k]`` = column, row, slice in slice-normal
order); a label map on the same grid with axes permuted or flipped (a mirrored write) is
brought onto it without resampling. Frame ``k`` of each segment references the source slice
``k`` and carries that slice's ImagePositionPatient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from kneescope.core.geometry import lps_to_ras, ras_to_lps
from kneescope.core.labels import STRUCTURE_COLOURS_RGB
from kneescope.core.volume import Volume
from kneescope.errors import DicomError, InputError
from kneescope.io.atomic import atomic_write
from kneescope.io.dicom_series import scan_dicom_series
from kneescope.io.dicom_write import make_uid

SegCompression = Literal["jpeg-ls", "rle", "none"]
"""Lossless frame compression of a written SEG: JPEG-LS lossless (1.2.840.10008.1.2.4.80),
RLE lossless (1.2.840.10008.1.2.5), or none (Explicit VR Little Endian)."""

TRANSFER_SYNTAXES: Mapping[str, str] = {
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "rle": "1.2.840.10008.1.2.5",
    "none": "1.2.840.10008.1.2.1",
}
"""Transfer syntax UID of each :data:`SegCompression`."""

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class Code:
    """One coded concept: value, coding scheme (``SCT`` = SNOMED CT) and meaning."""

    value: str
    meaning: str
    scheme: str = "SCT"


ANATOMICAL_STRUCTURE = Code("91723000", "Anatomical Structure")
TISSUE = Code("85756007", "Tissue")
FEMUR = Code("71341001", "Femur")
TIBIA = Code("12611008", "Tibia")
PATELLA = Code("64234005", "Patella")
CARTILAGE = Code("309312004", "Cartilage")
MENISCUS = Code("74135004", "Meniscus")
KNEE_JOINT = Code("49076000", "Knee joint")
MEDIAL = Code("255561001", "Medial")
LATERAL = Code("49370004", "Lateral")
RIGHT = Code("24028007", "Right")
LEFT = Code("7771000", "Left")


@dataclass(frozen=True)
class SegmentCoding:
    """How one structure is coded in a SEG segment.

    Attributes:
        category: SegmentedPropertyCategory (CID 7150).
        type: SegmentedPropertyType (CID 7166 tissues / anatomical structures).
        structure: PrimaryAnatomicStructure: the bone a cartilage plate covers, the meniscus.
        modifier: PrimaryAnatomicStructureModifier (CID 2): medial or lateral.
    """

    category: Code
    type: Code
    structure: Code | None = None
    modifier: Code | None = None


SEGMENT_CODES: Mapping[str, SegmentCoding] = {
    "femur": SegmentCoding(ANATOMICAL_STRUCTURE, FEMUR),
    "tibia": SegmentCoding(ANATOMICAL_STRUCTURE, TIBIA),
    "patella": SegmentCoding(ANATOMICAL_STRUCTURE, PATELLA),
    "femoral_cartilage": SegmentCoding(TISSUE, CARTILAGE, FEMUR),
    "tibial_cartilage": SegmentCoding(TISSUE, CARTILAGE, TIBIA),
    "medial_tibial_cartilage": SegmentCoding(TISSUE, CARTILAGE, TIBIA, MEDIAL),
    "lateral_tibial_cartilage": SegmentCoding(TISSUE, CARTILAGE, TIBIA, LATERAL),
    "patellar_cartilage": SegmentCoding(TISSUE, CARTILAGE, PATELLA),
    "medial_meniscus": SegmentCoding(TISSUE, MENISCUS, MENISCUS, MEDIAL),
    "lateral_meniscus": SegmentCoding(TISSUE, MENISCUS, MENISCUS, LATERAL),
}
"""SNOMED CT coding of every knee structure kneescope's label schemes name (docs/dicom.md)."""


@dataclass(frozen=True)
class SegAlgorithm:
    """Who made the segmentation, as the SEG records it.

    Attributes:
        kind: ``AUTOMATIC`` (a model), ``SEMIAUTOMATIC`` or ``MANUAL`` (a label map given to
            kneescope, e.g. a reader's or a synthetic truth).
        name: algorithm (model) name; required unless ``MANUAL``.
        version: algorithm version (kneescope's version for kneescope's models).
        parameters: further name -> value pairs, e.g. ``{"model_sha256": "..."}``.
    """

    kind: Literal["AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"]
    name: str = ""
    version: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DicomSegWritten:
    """What :func:`write_dicom_seg` wrote.

    Attributes:
        path: the SEG file.
        size_bytes: its size.
        transfer_syntax: transfer syntax UID of the frames.
        compression: the :data:`SegCompression` used.
        segments: segment number -> kneescope structure name (SegmentLabel).
        label_values: segment number -> label value in the label map.
        n_frames: frames written (empty frames are left out).
        sop_instance_uid, series_instance_uid: of the SEG.
        source_series_uid: SeriesInstanceUID of the referenced series.
        n_source_instances: source slices referenced.
    """

    path: Path
    size_bytes: int
    transfer_syntax: str
    compression: str
    segments: dict[int, str]
    label_values: dict[int, int]
    n_frames: int
    sop_instance_uid: str
    series_instance_uid: str
    source_series_uid: str
    n_source_instances: int


def _concept(code: Code) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _grid_array(
    labels: Volume, affine_ras: npt.NDArray[np.float64], shape: tuple[int, ...]
) -> npt.NDArray[Any]:
    """``labels.array`` on the grid (``shape``, ``affine_ras``): the same voxels with axes
    permuted or flipped (e.g. a mirrored write), never resampled, padded or cropped.

    Raises:
        InputError: the label map lies on another grid.
    """
    problem = InputError(
        f"the label map ({'x'.join(map(str, labels.shape))} voxels, {labels.orientation}) "
        f"is not on the series' voxel grid ({'x'.join(map(str, shape))}); export a label "
        "map of this series (its segmentation or its catalog label map)"
    )
    # target voxel index t -> label voxel index: P @ t + o
    m = np.linalg.solve(labels.affine_ras, affine_ras)
    p = np.rint(m[:3, :3])
    o = np.rint(m[:3, 3])
    if (
        not np.allclose(m[:3, :3], p, atol=1e-3)
        or not np.allclose(m[:3, 3], o, atol=1e-2)
        or not np.array_equal(np.abs(p).sum(axis=0), np.ones(3))
        or not np.array_equal(np.abs(p).sum(axis=1), np.ones(3))
    ):
        raise problem
    axes = [int(np.flatnonzero(p[:, b])[0]) for b in range(3)]  # label axis of target axis b
    array = labels.array.transpose(axes)
    if tuple(array.shape) != tuple(shape):
        raise problem
    for b, a in enumerate(axes):
        sign = int(p[a, b])
        if o[a] != (0 if sign > 0 else shape[b] - 1):
            raise problem
        if sign < 0:
            array = np.flip(array, axis=b)
    return np.ascontiguousarray(array)


def write_dicom_seg(
    labels: Volume,
    source_folder: Path,
    out: Path,
    *,
    label_names: Mapping[int, str],
    algorithm: SegAlgorithm,
    side: str | None = None,
    series_description: str = "kneescope segmentation",
    series_number: int = 300,
    compression: SegCompression = "jpeg-ls",
    binary: bool = False,
    overwrite: bool = False,
) -> DicomSegWritten:
    """Write ``labels`` as a DICOM SEG referencing the DICOM series in ``source_folder``.

    Args:
        labels: 3D integer label map on the series' grid (see the module docstring), values
            0 (background) and keys of ``label_names``.
        source_folder: the source MR series folder (one file per slice).
        out: the SEG file to write (atomically).
        label_names: label value -> kneescope structure name (``KNEE_LABELS.labels``); a
            name without a standard coding in :data:`SEGMENT_CODES` is refused.
        algorithm: who made the label map.
        side: ``"right"``/``"left"``: the knee (the anatomic region's modifier); None: not
            recorded.
        series_description: SeriesDescription of the SEG (<= 64 characters).
        series_number: SeriesNumber of the SEG.
        compression: lossless frame compression (:data:`SegCompression`).
        binary: write ``BINARY`` segments (1 bit per pixel) instead of ``FRACTIONAL``
            occupancy; DICOM allows them only uncompressed here (``compression="none"``).
        overwrite: replace an existing ``out``.

    Returns:
        What was written (:class:`DicomSegWritten`).

    Raises:
        InputError: not a label map, values without a name or a coding, an empty label map,
            another grid than the series, an existing ``out`` without ``overwrite``.
        DicomError: the source folder is not a readable DICOM series.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    if binary and compression != "none":
        raise InputError(
            "BINARY segments are written uncompressed here (DICOM allows only JPEG 2000 for "
            "them); give compression 'none' or leave binary off"
        )
    if compression not in TRANSFER_SYNTAXES:
        raise InputError(
            f"compression {compression!r} is not one of {', '.join(TRANSFER_SYNTAXES)}"
        )
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it")
    if labels.array.ndim != 3 or labels.array.dtype.kind not in "iub":
        raise InputError(
            f"a DICOM SEG needs a 3D integer label map, got {labels.array.ndim}D "
            f"{labels.array.dtype}; give a label map"
        )
    info = scan_dicom_series(Path(source_folder))
    array = _grid_array(labels, info.affine_ras, info.shape)
    present = [int(v) for v in np.unique(array) if v != 0]
    if not present:
        raise InputError("the label map is empty (only background); nothing to segment")
    unnamed = [v for v in present if v not in label_names]
    if unnamed:
        raise InputError(
            f"label values {unnamed} have no structure name in the label scheme; give a "
            "kneescope label map"
        )
    uncoded = sorted({label_names[v] for v in present} - set(SEGMENT_CODES))
    if uncoded:
        raise InputError(
            f"structures {uncoded} have no standard (SNOMED CT) coding in kneescope; "
            f"known: {', '.join(SEGMENT_CODES)}"
        )

    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in info.files]
    frames = np.ascontiguousarray(array.transpose(2, 1, 0))  # (slices, rows, columns)
    masks = np.stack([frames == v for v in present], axis=-1).astype(np.uint8)

    algo_id = None
    if algorithm.kind != "MANUAL":
        algo_id = hd.AlgorithmIdentificationSequence(
            name=algorithm.name or "kneescope",
            version=algorithm.version or "unknown",
            family=codes.cid7162.ArtificialIntelligence,
            parameters=dict(algorithm.parameters) or None,
        )
    region = _concept(KNEE_JOINT)
    descriptions = []
    segments: dict[int, str] = {}
    values: dict[int, int] = {}
    for number, value in enumerate(present, start=1):
        name = label_names[value]
        coding = SEGMENT_CODES[name]
        rgb = STRUCTURE_COLOURS_RGB.get(name, (128, 128, 128))
        desc = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name,
            segmented_property_category=_concept(coding.category),
            segmented_property_type=_concept(coding.type),
            algorithm_type=algorithm.kind,
            algorithm_identification=algo_id,
            anatomic_regions=[region],
            primary_anatomic_structures=(
                [_concept(coding.structure)] if coding.structure is not None else None
            ),
            display_color=hd.color.CIELabColor.from_rgb(*rgb),
        )
        if side in ("right", "left"):
            desc.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [
                _concept(RIGHT if side == "right" else LEFT)
            ]
        if coding.modifier is not None:
            desc.PrimaryAnatomicStructureSequence[0].PrimaryAnatomicStructureModifierSequence = [
                _concept(coding.modifier)
            ]
        descriptions.append(desc)
        segments[number] = name
        values[number] = value

    digest = _array_digest(array)
    seed = (info.series_uid, digest, algorithm.name, algorithm.version)
    from kneescope import __version__

    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=masks,
        segmentation_type=(
            hd.seg.SegmentationTypeValues.BINARY
            if binary
            else hd.seg.SegmentationTypeValues.FRACTIONAL
        ),
        fractional_type=hd.seg.SegmentationFractionalTypeValues.OCCUPANCY,
        max_fractional_value=1,
        segment_descriptions=descriptions,
        series_instance_uid=make_uid("seg-series", *seed),
        series_number=series_number,
        sop_instance_uid=make_uid("seg-instance", *seed),
        instance_number=1,
        manufacturer="kneescope",
        manufacturer_model_name=(algorithm.name or "kneescope")[:64],
        software_versions=f"kneescope {__version__}",
        device_serial_number="0",
        content_description=_dicom_text(series_description, 64),
        content_label="KNEE_SEG",
        transfer_syntax_uid=TRANSFER_SYNTAXES[compression],
        omit_empty_frames=True,
    )
    seg.SeriesDescription = _dicom_text(series_description, 64)
    # the knee's side is in each segment's AnatomicRegionModifierSequence: General Series
    # Laterality is not allowed here (dciodvfy: type 2C, condition unsatisfied)
    atomic_write(out, lambda tmp: seg.save_as(tmp, enforce_file_format=True))
    return DicomSegWritten(
        path=out,
        size_bytes=out.stat().st_size,
        transfer_syntax=TRANSFER_SYNTAXES[compression],
        compression=compression,
        segments=segments,
        label_values=values,
        n_frames=int(seg.NumberOfFrames),
        sop_instance_uid=str(seg.SOPInstanceUID),
        series_instance_uid=str(seg.SeriesInstanceUID),
        source_series_uid=info.series_uid,
        n_source_instances=len(sources),
    )


def _dicom_text(text: str, limit: int) -> str:
    """``text`` fit for an LO element: no backslash or control characters, <= ``limit``."""
    clean = "".join(c if c.isprintable() and c != "\\" else " " for c in text)
    return clean[:limit]


def _array_digest(array: npt.NDArray[Any]) -> str:
    import hashlib

    h = hashlib.sha256(str(array.shape).encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class DicomSegSegment:
    """One segment of a SEG as read back."""

    number: int
    label: str
    category: str
    type: str
    algorithm_type: str


def read_dicom_seg(
    path: Path,
    *,
    label_values: Mapping[str, int] | None = None,
    reference: Volume | None = None,
) -> Volume:
    """Read a DICOM SEG back as one label map.

    Segment ``n`` becomes label value ``label_values[SegmentLabel]`` when the segment's label
    is a name in ``label_values`` (kneescope's own SEGs), else ``n``. Voxels in several
    segments (overlap, only in other tools' SEGs) take the highest segment's value.

    Args:
        path: the SEG file.
        label_values: structure name -> label value (``KNEE_LABELS`` inverted).
        reference: a volume on the grid wanted (e.g. the source series): the label map is
            returned on exactly that grid (axes permuted, flipped, padded with background or
            cropped as needed, never resampled). None: on the SEG's own grid (frames only
            where some segment is present).

    Returns:
        A Volume of uint16 labels with its voxel -> RAS+ affine (``array[i, j, k]`` = column,
        row, slice as :mod:`kneescope.io.dicom_series`), metadata ``role="label_map"``,
        ``source_path``, ``series_uid`` (of the SEG) and ``segments`` (number -> label).

    Raises:
        InputError: not a readable SEG, or its frames do not fit ``reference``'s grid.
    """
    import highdicom as hd
    import pydicom

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except (OSError, ValueError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
        raise InputError(f"{path}: not a readable DICOM Segmentation ({exc})") from None
    numbers = [int(n) for n in seg.segment_numbers]
    lut = np.zeros(max(numbers, default=0) + 1, dtype=np.uint16)
    names: dict[int, str] = {}
    for n in numbers:
        desc = seg.get_segment_description(n)
        names[n] = str(desc.segment_label)
        lut[n] = (label_values or {}).get(names[n], n)
    try:
        vol = seg.get_volume(combine_segments=True, skip_overlap_checks=True, dtype=np.uint16)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"{path}: the SEG's frames do not form one volume ({exc})") from None
    if reference is not None:
        ref_aff = ras_to_lps(reference.affine_ras)[:, [2, 1, 0, 3]]
        target = hd.VolumeGeometry(ref_aff, tuple(int(n) for n in reference.shape[::-1]), "PATIENT")
        try:
            vol = vol.match_geometry(target, tol=1e-3)
        except (RuntimeError, ValueError):
            raise InputError(
                f"{path}: its frames are not on the grid of the reference series; "
                "read it without a reference"
            ) from None
    array = lut[np.ascontiguousarray(vol.array.transpose(2, 1, 0))]
    affine_ras = lps_to_ras(vol.affine[:, [2, 1, 0, 3]])
    return Volume(
        array,
        affine_ras,
        {
            "role": "label_map",
            "source_path": str(path),
            "series_uid": str(seg.SeriesInstanceUID),
            "segments": names,
        },
    )


def seg_segments(path: Path) -> list[DicomSegSegment]:
    """The segments of a SEG file (number, label, property category and type meanings)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if str(ds.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
        raise DicomError(f"{path}: not a DICOM Segmentation (SOP class {ds.get('SOPClassUID')})")
    return [
        DicomSegSegment(
            number=int(item.SegmentNumber),
            label=str(item.SegmentLabel),
            category=str(item.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning),
            type=str(item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning),
            algorithm_type=str(item.SegmentAlgorithmType),
        )
        for item in ds.SegmentSequence
    ]
