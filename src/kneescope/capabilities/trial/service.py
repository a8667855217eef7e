"""One trial analysis from a config file to its output folder: what ``kneescope trial`` runs."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kneescope.capabilities.trial.analysis import analyse
from kneescope.capabilities.trial.config import TrialConfig
from kneescope.capabilities.trial.data import load_data
from kneescope.capabilities.trial.outputs import write_outputs
from kneescope.errors import InputError
from kneescope.io.folder_writer import folder_writer

if TYPE_CHECKING:
    from kneescope.catalog.view import CatalogView

OUR_FILES = ("trial_*.csv", "trial_*.parquet", "trial_*.json", "trajectories_*.png", "forest_*.png")
"""File-name patterns of a trial's output folder (anything else there is someone else's)."""


def check_output_folder(folder: Path, overwrite: bool) -> None:
    """Refuse a file, a folder holding other files, or an earlier trial without ``overwrite``.

    Raises:
        InputError: with what to do.
    """
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output {folder} is a file; give a folder with -o")
    if not folder.is_dir():
        return
    entries = sorted(p.name for p in folder.iterdir())
    foreign = [e for e in entries if not any(fnmatch.fnmatch(e, p) for p in OUR_FILES)]
    if foreign:
        raise InputError(
            f"{folder} holds other files ({', '.join(foreign[:3])}); give a new or empty "
            "folder with -o"
        )
    if entries and not overwrite:
        raise InputError(
            f"{folder} holds an earlier trial analysis ({', '.join(entries[:3])}); add "
            "--overwrite to replace it, or give another folder with -o"
        )


def run_trial(
    config: TrialConfig,
    folder: Path,
    *,
    workspace_root: Path,
    view: CatalogView | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Load the data, analyse every endpoint and write the outputs into ``folder`` (all files
    or none: written into a temporary sibling folder, then renamed into place).

    Args:
        config: the trial config (a relative ``data.table`` already resolved).
        folder: the output folder (checked by :func:`check_output_folder` first).
        workspace_root: the workspace (its ``runs/`` for ``data.run``).
        view: the workspace's catalog (arms and clinical covariates of a run), or None.
        settings: what the summary records about the call (trial name, config file...).

    Returns:
        The summary document (``trial_summary.json``) with ``output`` and absolute ``files``.

    Raises:
        InputError, NotFoundError, ConfigError: bad config or data (nothing written).
    """
    from kneescope.io.atomic import atomic_write_dir

    if config.data.run is not None and view is None:
        raise InputError(
            f"workspace {workspace_root} has no catalog: the arms of run {config.data.run!r} "
            "come from its clinical tables; ingest them (kneescope ingest) or give a table"
        )
    data = load_data(config, workspace_root, view)
    result = analyse(data, config)
    result.settings.update(settings)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write_dir(folder) as tmp:
        document = write_outputs(result, folder_writer(tmp))
    document["files"] = {k: str(folder / v) for k, v in document["files"].items()}
    document["output"] = str(folder)
    return document
