"""``kneescope export --format nnunet --dataset-id N [-o RAW]``: the catalog's image/label
pairs as an nnU-Net v2 raw dataset ``RAW/DatasetNNN_kneescope`` (default RAW:
``WORKSPACE/exports/nnUNet_raw``); see :mod:`kneescope.catalog.export_nnunet`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kneescope.cli.common import emit
from kneescope.cli.export_request import ExportRequest
from kneescope.errors import InputError


def export_nnunet(request: ExportRequest) -> None:
    """Export as asked in ``request`` (``out`` is the nnU-Net raw folder)."""
    from kneescope.catalog.database import Catalog
    from kneescope.catalog.export_nnunet import export_nnunet_dataset

    if request.series is not None:
        raise InputError(
            "--format nnunet exports every image/label pair of the catalog; drop SERIES"
        )
    if request.dataset_id is None:
        raise InputError("--format nnunet needs --dataset-id N (1-999), e.g. --dataset-id 18")
    if request.run is not None or request.labels:
        raise InputError(
            "--format nnunet takes the catalog's label maps; --run and --labels do not apply"
        )
    raw_dir = request.out
    create = raw_dir is None
    if raw_dir is not None and not raw_dir.expanduser().is_dir():
        what = "is a file" if raw_dir.expanduser().is_file() else "does not exist"
        raise InputError(f"--out {raw_dir} {what}; give an existing nnU-Net raw folder")
    if raw_dir is None:
        raw_dir = request.workspace.exports_dir / "nnUNet_raw"
    cat = Catalog.for_workspace(request.workspace, create=False)
    try:
        result = export_nnunet_dataset(
            cat,
            raw_dir,
            request.dataset_id,
            overwrite=request.overwrite,
            create_raw_dir=create,
        )
    finally:
        cat.close()
    emit(result.to_json(), request.as_json, lambda console: _render(console, result))


def _render(console: Any, result: Any) -> None:
    console.print(
        f"wrote nnU-Net v2 dataset {result.folder}: {result.cases} training cases, "
        f"{len(result.labels) - 1} labels",
        markup=False,
    )
    if result.skipped_without_labels:
        console.print(
            f"{result.skipped_without_labels} series without a label map left out", markup=False
        )
    console.print(
        f"check it: nnUNet_raw={Path(result.folder).parent} "
        f"nnUNetv2_plan_and_preprocess -d {result.dataset_id} --verify_dataset_integrity",
        markup=False,
    )
