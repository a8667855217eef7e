"""nnU-Net v2 raw datasets: write one from image/label pairs, read one (ours or anyone's).

The layout (nnU-Net v2's ``documentation/dataset_format.md``)::

    nnUNet_raw/Dataset018_kneescope/
        dataset.json               channel_names, labels, numTraining, file_ending (+ extras)
        imagesTr/<case>_0000.nii.gz   channel 0 of each training case
        labelsTr/<case>.nii.gz        its label map, same grid
        imagesTs/                  (optional) test images, no labels

``labels`` maps a structure name to its value, ``background`` is 0 and the values are
consecutive (nnU-Net refuses gaps). nnU-Net ignores keys it does not know, so kneescope adds a
``kneescope`` entry (its version, label scheme and, per case, subject/visit/side/series), which
:func:`read_nnunet_dataset` returns as :attr:`NnunetDataset.kneescope` (empty for a dataset made
elsewhere). Written with :func:`write_nnunet_dataset`: every file atomic, the whole dataset
folder built in a hidden temporary sibling and renamed into place when complete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kneescope.core.volume import Volume
from kneescope.errors import InputError

DATASET_JSON = "dataset.json"
IMAGES_TR = "imagesTr"
LABELS_TR = "labelsTr"
FILE_ENDING = ".nii.gz"
"""What kneescope writes (nnU-Net's default SimpleITK reader reads it)."""

READABLE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")
"""File endings of datasets kneescope reads (3D volumes; nnU-Net's 2D .png/.tif are not)."""

DATASET_NAME = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9_.-]+)$")
"""nnU-Net's dataset folder names: ``Dataset`` + three-digit id + ``_`` + a name."""

CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""Case identifiers kneescope writes (file-name safe; nnU-Net strips ``_0000`` + ending)."""

KNEESCOPE_KEY = "kneescope"
"""The dataset.json entry with kneescope's provenance (ignored by nnU-Net)."""


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset018_kneescope`` for id 18 and name ``kneescope``.

    Raises:
        InputError: id outside 1..999 or a name nnU-Net cannot use.
    """
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"nnU-Net dataset id {dataset_id} is not in 1..999")
    folder = f"Dataset{int(dataset_id):03d}_{name}"
    if not DATASET_NAME.match(folder):
        raise InputError(
            f"nnU-Net dataset name {name!r}: use letters, digits, '_', '.' or '-' only"
        )
    return folder


@dataclass(frozen=True)
class NnunetCase:
    """One training case of a dataset on disk.

    Attributes:
        case_id: the identifier (file name without ``_0000`` and the ending).
        images: one file per channel, in channel order (``_0000``, ``_0001``, ...).
        label: its label map.
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path


@dataclass(frozen=True)
class NnunetDataset:
    """An nnU-Net v2 raw dataset as :func:`read_nnunet_dataset` found it.

    Attributes:
        folder: the dataset folder (``.../DatasetNNN_Name``).
        dataset_id: NNN from the folder name, or None when the folder is named otherwise.
        channel_names: channel index (text, ``"0"``) -> name (``"MRI"``, ``"CT"``, ...).
        labels: structure name -> label value, background 0 included (plain labels only).
        file_ending: e.g. ``.nii.gz``.
        cases: the training cases, sorted by id.
        kneescope: the ``kneescope`` entry kneescope wrote (empty for other datasets).
    """

    folder: Path
    dataset_id: int | None
    channel_names: dict[str, str]
    labels: dict[str, int]
    file_ending: str
    cases: tuple[NnunetCase, ...]
    kneescope: dict[str, Any] = field(default_factory=dict)

    def label_names(self) -> dict[int, str]:
        """Label value -> structure name, background left out."""
        return {v: k for k, v in self.labels.items() if v != 0}

    def case_info(self, case_id: str) -> dict[str, Any]:
        """What kneescope recorded about ``case_id`` (subject, visit, side, series; empty
        when nothing was recorded)."""
        cases = self.kneescope.get("cases", {})
        info = cases.get(case_id, {}) if isinstance(cases, dict) else {}
        return dict(info) if isinstance(info, dict) else {}


@dataclass(frozen=True)
class NnunetCaseData:
    """One case to write: its id, image (channel 0), label map on the image's grid, and
    provenance for dataset.json's ``kneescope.cases`` entry (JSON-ready values)."""

    case_id: str
    image: Volume
    labels: Volume
    info: Mapping[str, Any] = field(default_factory=dict)


def is_nnunet_dataset(folder: Path) -> bool:
    """True when ``folder`` holds a ``dataset.json`` and an ``imagesTr`` folder."""
    return (folder / DATASET_JSON).is_file() and (folder / IMAGES_TR).is_dir()


def dataset_json(
    *,
    labels: Mapping[int, str],
    channel_name: str,
    num_training: int,
    name: str,
    description: str,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The dataset.json content nnU-Net v2 needs, plus kneescope's ``extra`` entry.

    Raises:
        InputError: label values that are not 1, 2, ... consecutive (nnU-Net needs that),
            or a name used twice.
    """
    values = sorted(int(v) for v in labels)
    if values != list(range(1, len(values) + 1)):
        raise InputError(
            f"nnU-Net needs label values 1, 2, ... without gaps; got {values}; remap the labels"
        )
    names = [labels[v] for v in values]
    if len(set(names)) != len(names) or "background" in names:
        raise InputError(f"label names must be distinct and not 'background': {names}")
    return {
        "name": name,
        "description": description,
        "channel_names": {"0": channel_name},
        "labels": {"background": 0, **{labels[v]: v for v in values}},
        "numTraining": int(num_training),
        "file_ending": FILE_ENDING,
        KNEESCOPE_KEY: dict(extra),
    }


def _check_same_grid(case: NnunetCaseData) -> Volume:
    """The label map as uint8 on exactly the image's affine (nnU-Net compares spacing,
    origin and direction); refused when it is not on the image's grid."""
    image, labels = case.image, case.labels
    if image.shape != labels.shape:
        raise InputError(
            f"case {case.case_id}: label map shape {labels.shape} differs from the image's "
            f"{image.shape}; the label map must be on the image grid"
        )
    if not np.allclose(image.affine_ras, labels.affine_ras, atol=1e-3, rtol=0):
        raise InputError(
            f"case {case.case_id}: label map geometry differs from the image's (affines "
            "differ by more than 0.001 mm); resample it onto the image grid"
        )
    array = np.asarray(labels.array)
    if array.dtype.kind not in "iub":
        raise InputError(f"case {case.case_id}: label map dtype {array.dtype} is not integer")
    if array.size and (int(array.min()) < 0 or int(array.max()) > 255):
        raise InputError(
            f"case {case.case_id}: label values {int(array.min())}..{int(array.max())} do not "
            "fit 0..255"
        )
    return Volume(array.astype(np.uint8, copy=False), image.affine_ras, {})


def write_nnunet_dataset(
    folder: Path,
    cases: Iterable[NnunetCaseData],
    *,
    labels: Mapping[int, str],
    channel_name: str = "MRI",
    description: str = "",
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> NnunetDataset:
    """Write an nnU-Net v2 raw dataset into ``folder`` (``.../DatasetNNN_Name``).

    Each case's image becomes ``imagesTr/<id>_0000.nii.gz`` (its dtype kept) and its label
    map ``labelsTr/<id>.nii.gz`` (uint8, written with the image's affine, so that nnU-Net
    finds spacing, origin and direction identical). ``cases`` is consumed one at a time (a
    generator keeps one knee in memory). Label values found in a label map must be 0 or one
    of ``labels``.

    Args:
        folder: the dataset folder; its parent must exist.
        cases: the training cases.
        labels: label value -> structure name (background 0 left out), values 1..n.
        channel_name: the name of channel 0 (nnU-Net normalises ``CT`` by its Hounsfield
            statistics, every other name per image by z-score).
        description: free text for dataset.json.
        extra: kneescope's entry in dataset.json; a ``cases`` mapping of case id -> each
            case's ``info`` is added to it.
        overwrite: replace an existing dataset folder.

    Returns:
        The dataset as :func:`read_nnunet_dataset` reads it back.

    Raises:
        InputError: the folder exists (without ``overwrite``), its parent does not, a case id
            that is not file-name safe or used twice, no case, a label map off the image grid
            or with values outside ``labels``.
    """
    from kneescope.io.atomic import atomic_write_dir, atomic_write_text
    from kneescope.io.nifti import write_nifti

    folder = Path(folder)
    match = DATASET_NAME.match(folder.name)
    if match is None:
        raise InputError(
            f"{folder.name}: an nnU-Net dataset folder is named DatasetNNN_Name "
            "(e.g. Dataset018_kneescope)"
        )
    if not folder.parent.is_dir():
        raise InputError(f"{folder.parent} does not exist; create it first")
    if folder.exists() and not overwrite:
        raise InputError(f"{folder} exists; pass --overwrite to replace it")
    allowed = np.array([0, *sorted(int(v) for v in labels)])
    dataset_json(  # check the labels before any voxel is written
        labels=labels, channel_name=channel_name, num_training=0, name="", description="", extra={}
    )
    infos: dict[str, dict[str, Any]] = {}
    with atomic_write_dir(folder) as tmp:
        (tmp / IMAGES_TR).mkdir()
        (tmp / LABELS_TR).mkdir()
        for case in cases:
            if not CASE_ID.match(case.case_id):
                raise InputError(
                    f"case id {case.case_id!r}: use letters, digits, '_', '.' or '-' only"
                )
            if case.case_id in infos:
                raise InputError(f"case id {case.case_id!r} is used twice")
            label_volume = _check_same_grid(case)
            present = np.unique(label_volume.array)
            unknown = sorted(int(v) for v in np.setdiff1d(present, allowed))
            if unknown:
                raise InputError(
                    f"case {case.case_id}: label values {unknown} are not in the label table "
                    f"({', '.join(f'{v}={n}' for v, n in sorted(labels.items()))})"
                )
            write_nifti(case.image, tmp / IMAGES_TR / f"{case.case_id}_0000{FILE_ENDING}")
            write_nifti(label_volume, tmp / LABELS_TR / f"{case.case_id}{FILE_ENDING}")
            infos[case.case_id] = dict(case.info)
        if not infos:
            raise InputError("no cases to write: the dataset would be empty")
        content = dataset_json(
            labels=labels,
            channel_name=channel_name,
            num_training=len(infos),
            name=match.group(2),
            description=description,
            extra={**(extra or {}), "cases": infos},
        )
        atomic_write_text(tmp / DATASET_JSON, json.dumps(content, indent=2) + "\n")
    return read_nnunet_dataset(folder)


def _load_json(path: Path) -> dict[str, Any]:
    from kneescope.io.guards import require_regular_file

    require_regular_file(path, what="dataset.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _plain_labels(path: Path, raw: object) -> dict[str, int]:
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: 'labels' must be an object of name -> value")
    labels: dict[str, int] = {}
    for name, value in raw.items():
        if isinstance(value, list | tuple):
            raise InputError(
                f"{path}: label {name!r} is a region ({value}); kneescope reads datasets with "
                "plain labels only (one value per structure)"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{path}: label {name!r} has value {value!r}, not an integer >= 0")
        labels[str(name)] = value
    values = sorted(v for n, v in labels.items() if n != "ignore")
    if values != list(range(len(values))):
        raise InputError(
            f"{path}: label values {values} are not 0, 1, 2, ... (background 0, no gaps) as "
            "nnU-Net requires"
        )
    return labels


def read_nnunet_dataset(folder: Path) -> NnunetDataset:
    """Read the layout of an nnU-Net v2 raw dataset (no voxels are read).

    Accepts nnU-Net's own layout (``imagesTr``/``labelsTr`` with ``dataset.json``) and its
    variant whose dataset.json lists the files under ``dataset``; checks what nnU-Net's
    integrity check checks about the layout: required keys, ``numTraining`` equal to the
    number of cases, every channel's image and the label map present for each case, label
    values 0, 1, 2, ... (an ``ignore`` label may follow).

    Raises:
        InputError: not a dataset folder, a required key missing or wrong, region-based
            labels, a file ending kneescope cannot read, a missing image or label file, a
            ``numTraining`` that does not match.
    """
    folder = Path(folder)
    path = folder / DATASET_JSON
    if not path.is_file():
        raise InputError(
            f"{folder}: no dataset.json; give an nnU-Net v2 dataset folder (DatasetNNN_Name)"
        )
    data = _load_json(path)
    missing = [
        k for k in ("labels", "channel_names", "numTraining", "file_ending") if k not in data
    ]
    if missing:
        raise InputError(f"{path}: missing the key(s) {', '.join(missing)} nnU-Net v2 needs")
    labels = _plain_labels(path, data["labels"])
    channels = data["channel_names"]
    if not isinstance(channels, dict) or sorted(channels) != [str(i) for i in range(len(channels))]:
        raise InputError(f"{path}: 'channel_names' must map '0', '1', ... to channel names")
    ending = data["file_ending"]
    if not isinstance(ending, str) or not ending.lower().endswith(READABLE_ENDINGS):
        raise InputError(
            f"{path}: file_ending {ending!r}: kneescope reads {', '.join(READABLE_ENDINGS)}"
        )
    n_channels = len(channels)
    if isinstance(data.get("dataset"), dict):
        cases = _listed_cases(folder, path, data["dataset"])
    else:
        cases = _folder_cases(folder, ending, n_channels)
    expected = data["numTraining"]
    if isinstance(expected, bool) or not isinstance(expected, int) or expected != len(cases):
        raise InputError(
            f"{path}: numTraining is {expected!r} but {len(cases)} training cases were found"
        )
    match = DATASET_NAME.match(folder.name)
    extra = data.get(KNEESCOPE_KEY)
    return NnunetDataset(
        folder=folder,
        dataset_id=int(match.group(1)) if match else None,
        channel_names={str(k): str(v) for k, v in channels.items()},
        labels=labels,
        file_ending=ending,
        cases=tuple(sorted(cases, key=lambda c: c.case_id)),
        kneescope=extra if isinstance(extra, dict) else {},
    )


def _folder_cases(folder: Path, ending: str, n_channels: int) -> list[NnunetCase]:
    images, labels = folder / IMAGES_TR, folder / LABELS_TR
    for sub in (images, labels):
        if not sub.is_dir():
            raise InputError(f"{folder}: no {sub.name}/ folder")
    ids = sorted(p.name[: -len(ending)] for p in labels.iterdir() if p.name.endswith(ending))
    image_ids = {
        p.name[: -len(ending) - 5]
        for p in images.iterdir()
        if p.name.endswith(ending) and re.search(r"_\d{4}$", p.name[: -len(ending)])
    }
    orphans = sorted(image_ids - set(ids))
    if orphans:
        raise InputError(
            f"{images}: image(s) of case {orphans[0]!r} have no label map in {labels.name}/"
        )
    cases = []
    for case_id in ids:
        files = tuple(images / f"{case_id}_{c:04d}{ending}" for c in range(n_channels))
        for f in files:
            if not f.is_file():
                raise InputError(f"case {case_id!r}: missing image {f}")
        cases.append(NnunetCase(case_id, files, labels / f"{case_id}{ending}"))
    return cases


def _listed_cases(folder: Path, path: Path, listed: dict[str, Any]) -> list[NnunetCase]:
    cases = []
    for case_id, entry in listed.items():
        if not isinstance(entry, dict) or "images" not in entry or "label" not in entry:
            raise InputError(f"{path}: dataset entry {case_id!r} needs 'images' and 'label'")
        files = tuple((folder / str(p)) for p in entry["images"])
        label = folder / str(entry["label"])
        for f in (*files, label):
            if not f.is_file():
                raise InputError(f"case {case_id!r}: missing file {f}")
        cases.append(NnunetCase(str(case_id), files, label))
    return cases


def read_nnunet_case(case: NnunetCase) -> tuple[Volume, Volume]:
    """The image (channel 0) and label map of ``case``.

    Raises:
        InputError: the case has more than one channel (kneescope trains on one), or a file
            cannot be read.
    """
    from kneescope.io.readers import read_volume

    if len(case.images) != 1:
        raise InputError(
            f"case {case.case_id!r} has {len(case.images)} channels; kneescope trains on "
            "single-channel images: export one channel into its own dataset"
        )
    return read_volume(case.images[0]), read_volume(case.label)
