"""Training data from an nnU-Net v2 raw dataset: ``data_dir`` may name a ``DatasetNNN_Name``
folder (``dataset.json`` + ``imagesTr``/``labelsTr``), e.g. one ``kneescope export --format
nnunet`` wrote or one prepared for nnU-Net elsewhere.

Each training case (``imagesTr/<case>_0000``, ``labelsTr/<case>``) becomes one pair named by
its case id. Its knee side comes from dataset.json's ``kneescope`` entry (kneescope's export
records it) or a ``sides.csv`` (columns ``name,side``) in the dataset folder. Labels are matched
to the training scheme by name: a dataset labelled with kneescope's names and values is used
as is (and collapsed for ``labels = "oai-zib"`` as usual); a dataset whose label names are
all names of the training scheme is remapped by name (``tibia`` = 1 in the dataset becomes
kneescope's 3); anything else needs ``label_remap`` (dataset value -> training value).
"""

from __future__ import annotations

from pathlib import Path

from kneescope.capabilities.segmentation.training_config import SegmentationTrainConfig
from kneescope.core import KNEE_LABELS
from kneescope.errors import InputError
from kneescope.io.nnunet_dataset import NnunetDataset, is_nnunet_dataset, read_nnunet_dataset


def dataset_folder(config: SegmentationTrainConfig, base_dir: Path) -> Path | None:
    """The nnU-Net dataset folder ``data_dir`` names (relative to ``base_dir``), or None when
    ``data_dir`` is unset or a plain folder of pairs."""
    if config.data_dir is None:
        return None
    folder = config.data_dir if config.data_dir.is_absolute() else base_dir / config.data_dir
    return folder if is_nnunet_dataset(folder) else None


def read_training_dataset(folder: Path, config: SegmentationTrainConfig) -> NnunetDataset:
    """The dataset, checked for what kneescope's training takes: one channel, no tissue maps.

    Raises:
        InputError: see :func:`~kneescope.io.nnunet_dataset.read_nnunet_dataset`; more than
            one channel; ``domain_randomisation`` set (it needs a folder with tissues/).
    """
    dataset = read_nnunet_dataset(folder)
    if len(dataset.channel_names) != 1:
        channels = ", ".join(dataset.channel_names.values())
        raise InputError(
            f"{folder}: {len(dataset.channel_names)} channels ({channels}); kneescope trains "
            "on one: export a single-channel dataset"
        )
    if config.domain_randomisation is not None:
        raise InputError(
            "domain_randomisation needs data_dir with images/, labels/ and tissues/, not an "
            "nnU-Net dataset"
        )
    if not dataset.cases:
        raise InputError(f"{folder}: the dataset has no training cases")
    return dataset


def label_remap_by_name(dataset: NnunetDataset, scheme: str) -> dict[int, int] | None:
    """The dataset value -> training value table for training scheme ``scheme``, or None when
    the dataset already uses kneescope's values (the usual scheme conversion then applies).

    Raises:
        InputError: a label name the training scheme does not know (set ``label_remap``).
    """
    from kneescope.capabilities.segmentation.training_data import scheme_for

    names = dataset.label_names()
    if all(KNEE_LABELS.labels.get(v) == n for v, n in names.items()):
        return None
    target = scheme_for(scheme)
    unknown = sorted(n for n in names.values() if n not in target.labels.values())
    if unknown:
        raise InputError(
            f"{dataset.folder}: label(s) {', '.join(repr(n) for n in unknown)} are not in the "
            f"{target.name!r} scheme ({', '.join(target.labels.values())}); set label_remap "
            "(dataset value -> training value) in the training config"
        )
    return {v: target.value_of(n) for v, n in names.items()}
