"""Write segmentation results: NIfTI label maps and (on request) probability maps, and plan
their file names so that no output lands outside its folder or replaces another.

``kneescope segment`` writes, per input named ``NAME`` (see :func:`file_output_names` and
:func:`kneescope.catalog.output_names.series_stem`), into the output folder:
``NAME_seg.nii.gz`` (label map), ``NAME_seg.json`` (side, provenance, label names),
``NAME_seg.ctbl`` (3D Slicer colour table), ``NAME_seg.itksnap.txt`` (ITK-SNAP label
descriptions) and, with probabilities, ``NAME_prob.nii.gz``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kneescope.core import Volume
from kneescope.core.volume import label_map_problem
from kneescope.errors import InputError
from kneescope.io import atomic_write_path, write_nifti
from kneescope.io.colour_table import colour_table_paths, label_map_stem
from kneescope.io.sidecar import read_sidecar, sidecar_path


def output_stem(path: Path) -> str:
    """File name without .nii.gz/.nii/.mha/... (a folder keeps its name)."""
    return label_map_stem(path)


def file_output_names(paths: Sequence[Path]) -> list[str]:
    """A file-name-safe output name per input path: its stem (``a/image.nii.gz`` ->
    ``image``), prefixed by as many parent folders as it takes to tell apart inputs that
    share a stem (``a/image.nii.gz``, ``b/image.nii.gz`` -> ``a_image``, ``b_image``).

    Names are :func:`~kneescope.catalog.output_names.safe_token` s joined by ``_``; compared
    case-insensitively (macOS and Windows file systems). Names that still clash (inputs
    whose folders differ only in characters a file name cannot hold) are left equal for
    :func:`check_output_plan` to refuse.
    """
    from kneescope.catalog.output_names import safe_token

    bases = [safe_token(output_stem(p)) for p in paths]
    names = list(bases)
    groups: dict[str, list[int]] = {}
    for i, base in enumerate(bases):
        groups.setdefault(base.casefold(), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        parents = [list(paths[i].parent.parts[1:]) for i in members]
        deepest = max(len(p) for p in parents)
        depth = 1
        while depth < deepest:  # fewest folders whose (raw) names tell the inputs apart
            tails = {tuple(q.casefold() for q in p[len(p) - min(depth, len(p)) :]) for p in parents}
            if len(tails) == len(members):
                break
            depth += 1
        names_here = {
            i: "_".join([*(safe_token(q) for q in p[len(p) - min(depth, len(p)) :]), bases[i]])
            for p, i in zip(parents, members, strict=True)
        }
        for i in members:
            names[i] = names_here[i]
    return names


def segment_output_paths(out_dir: Path, name: str, *, probabilities: bool) -> dict[str, Path]:
    """Every file ``kneescope segment`` writes for the input named ``name``, by role:
    ``labels``, ``sidecar``, ``colours_slicer``, ``colours_itksnap`` (and ``probabilities``).
    """
    labels = out_dir / f"{name}_seg.nii.gz"
    slicer, itksnap = colour_table_paths(labels)
    paths = {
        "labels": labels,
        "sidecar": sidecar_path(labels),
        "colours_slicer": slicer,
        "colours_itksnap": itksnap,
    }
    if probabilities:
        paths["probabilities"] = out_dir / f"{name}_prob.nii.gz"
    return paths


def finished_outputs(paths: Mapping[str, Path], fingerprint: Mapping[str, Any]) -> bool:
    """True when an earlier ``segment`` finished this input with the same model and options.

    Args:
        paths: role -> output path of one input (:func:`segment_output_paths`).
        fingerprint: what the result depends on (``source`` path, ``model_sha256``,
            ``options``), as recorded in the sidecar.

    The sidecar is written last, so its presence with an equal ``fingerprint`` and every
    other output present means the input is done: a rerun after Ctrl-C skips it.
    """
    recorded = read_sidecar(paths["labels"])
    if recorded is None or any(recorded.get(k) != v for k, v in fingerprint.items()):
        return False
    return all(os.path.isfile(p) for p in paths.values())


def check_output_plan(
    out_dir: Path, plan: Sequence[tuple[str, Mapping[str, Path]]], *, overwrite: bool
) -> None:
    """Refuse, before anything is written, an output plan that would lose data.

    Args:
        out_dir: the output folder.
        plan: ``(input description, role -> output path)`` per input.
        overwrite: existing outputs may be replaced.

    Raises:
        InputError: ``out_dir`` is a file; an output path outside ``out_dir``; two inputs
            that would write the same file (compared case-insensitively); a ``sidecar`` role
            path that holds a file kneescope did not write (never replaced); without
            ``overwrite``, an output that exists (the message names the first and how many
            more).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output folder {out_dir} is a file; give a folder")
    root = out_dir.resolve()
    owner: dict[str, str] = {}
    existing: list[Path] = []
    for source, paths in plan:
        for role, path in paths.items():
            if path.name in ("", ".", "..") or path.parent.resolve() != root:
                raise InputError(
                    f"output {path} of {source} would lie outside the output folder {out_dir}; "
                    "rename the input"
                )
            key = path.name.casefold()
            if key in owner and owner[key] != source:
                raise InputError(
                    f"inputs {owner[key]} and {source} would both write {path.name}; "
                    "segment them in separate calls or rename one"
                )
            owner[key] = source
            if os.path.lexists(path):
                existing.append(path)
                if role == "sidecar" and read_sidecar(paths["labels"]) is None:
                    raise InputError(
                        f"{path} exists and was not written by kneescope; move it or choose "
                        "another --output folder (--overwrite does not replace it)"
                    )
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise InputError(
            f"output {existing[0]} already exists{more}; nothing was written: pass "
            "--overwrite to replace, or choose another --output folder"
        )


def write_labels(labels: Volume, path: Path, *, description: str = "") -> Path:
    """Write a uint8 label map with its exact affine (sform and qform)."""
    if not labels.is_label:
        problem = label_map_problem(labels.array) or "is an image, not a label map"
        raise InputError(f"not a label map: it {problem}")
    return write_nifti(labels, path, description=description)


def write_probabilities(probabilities: npt.NDArray[np.uint8], like: Volume, path: Path) -> Path:
    """Write class probabilities (I, J, K, C) uint8 (x 255) as a 4D NIfTI.

    The header's ``scl_slope`` is 1/255, so viewers and nibabel read probabilities in [0, 1]
    while the file stays one byte per voxel and class.
    """
    import importlib

    nib: Any = importlib.import_module("nibabel")

    if probabilities.shape[:3] != like.shape:
        raise InputError(
            f"probabilities {probabilities.shape[:3]} are not on the image grid {like.shape}"
        )
    img = nib.Nifti1Image(np.asarray(probabilities, dtype=np.uint8), like.affine_ras)
    img.set_data_dtype(np.uint8)
    img.header.set_xyzt_units(xyz="mm")
    img.set_sform(like.affine_ras, code=1)
    img.set_qform(like.affine_ras, code=1)
    img.header.set_slope_inter(1.0 / 255.0, 0.0)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_write_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)
    return path
