"""``kneescope plan``: fit a network's training (or inference) step into a memory budget."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit, stderr
from kneescope.errors import InputError, KneescopeError, NotFoundError, ResourceError


def _parse_shape(text: str, what: str, kind: type = int) -> tuple[Any, ...]:
    try:
        values = tuple(kind(v) for v in text.lower().replace(",", "x").split("x") if v)
    except ValueError:
        raise InputError(f"{what} {text!r} is not like 160x384x384") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{what} {text!r} must be positive sizes like 160x384x384")
    return values


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f}"


def _network(
    model: str | None,
    network_name: str | None,
    shape: tuple[int, ...],
    workspace_dir: Any,
    catalog: str | None,
) -> tuple[str, Any, tuple[float, ...] | None]:
    """(label, network config, spacing of a trained model) from --model or --network."""
    from kneescope.models import PRESETS, preset

    if (model is None) == (network_name is None):
        raise InputError(
            "give either --network PRESET (one of " + ", ".join(NETWORKS) + ") or "
            "--model TRAINED_MODEL, not both or neither"
        )
    if network_name is not None:
        return network_name.lower(), preset(network_name.lower(), shape), None
    assert model is not None
    path = _trained_model_path(model, workspace_dir, catalog)
    if path is None:
        if model in PRESETS:
            stderr().print(
                f"note: {model} is a network preset; write --network {model} "
                "(--model now names a trained model)",
                markup=False,
                highlight=False,
            )
            return model, preset(model, shape), None
        raise NotFoundError(
            f"no network preset {model!r} and no trained model {model!r} (looked for the file "
            "and in WORKSPACE/models/); give --network one of " + ", ".join(NETWORKS) + " or "
            "--model MODEL_FILE"
        )
    from kneescope.inference.segmentation_model import load_model

    spec = load_model(path).spec
    return str(path), spec.network, tuple(float(v) for v in spec.spacing_mm)


def _trained_model_path(model: str, workspace_dir: Any, catalog: str | None) -> Path | None:
    """The model file ``model`` names, resolved as ``segment --model`` does (a file, else
    ``WORKSPACE/models/NAME`` or ``NAME.pt``); None when there is none."""
    from kneescope.cli.common import workspace as resolve_workspace

    try:
        return resolve_workspace(workspace_dir, catalog).resolve_model(model)
    except KneescopeError:
        return None


def _smallest_need(
    network: Any,
    shape: tuple[int, ...],
    mode: str,
    optimizer: str,
    device: str,
    precisions: tuple[str, ...],
) -> tuple[tuple[int, ...], str, int]:
    """(patch, precision, bytes with margin) of the cheapest step the planner could propose."""
    from kneescope.memory import StepConfig, predict_step
    from kneescope.models import divisor

    if network.name == "vgg_classifier":
        patch = tuple(shape)
    else:
        patch = tuple(2 * d for d in divisor(network))
    precision = next((p for p in ("bf16", "fp16") if p in precisions), precisions[-1])
    step = StepConfig(
        input_shape_vox=patch,
        batch_size=1,
        precision=precision,  # type: ignore[arg-type]
        optimizer=optimizer,  # type: ignore[arg-type]
        checkpointing="off" if mode == "infer" else "per_block",
        offload=mode != "infer",
        mode=mode,  # type: ignore[arg-type]
        device=device,  # type: ignore[arg-type]
        foreach=device == "cuda",
    )
    return patch, precision, predict_step(network, step).required_bytes


def _slab_sizes(slabs: int | None, network: Any, mode: str) -> tuple[int, ...]:
    """``--slabs`` as the planner's ``slabs`` (empty without it); bad values in one line."""
    if slabs is None:
        return ()
    if slabs % 2:
        raise InputError(f"--slabs {slabs}: give an even number of slices, e.g. --slabs 16")
    if mode != "train":
        raise InputError("--slabs plans training steps; drop it or use --mode train")
    if network.name != "dynunet":
        raise InputError(
            f"--slabs needs a DynUNet (e.g. --network unet3d-nnunet), not {network.name}"
        )
    return (slabs,)


class PrecisionName(StrEnum):
    """Number formats the planner tries (``--precision``)."""

    bf16 = "bf16"
    fp32 = "fp32"
    fp16 = "fp16"


# The network presets of kneescope.models.PRESETS, listed here so that `--help` needs no torch
# import (tests/cli/test_grammar.py checks that the two lists agree).
NETWORKS = ("basic-unet3d", "unet2d-small", "unet3d-nnunet", "unet3d-small", "vgg19-2d", "vgg19-3d")


def plan(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Trained model (a file written by `kneescope train`, or its name in "
            "WORKSPACE/models/): plan for its network and spacing. A network preset name "
            "here still works (with a note); prefer --network.",
            show_default=False,
        ),
    ] = None,
    network_name: Annotated[
        Literal[
            "basic-unet3d", "unet2d-small", "unet3d-nnunet", "unet3d-small", "vgg19-2d", "vgg19-3d"
        ]
        | None,
        typer.Option(
            "--network",
            help="Network preset to plan for (instead of --model): unet3d-nnunet "
            "(nnU-Net-size 3D U-Net), unet3d-small, basic-unet3d, unet2d-small (slice-wise), "
            "vgg19-2d / vgg19-3d (grade classifiers).",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    input_shape: Annotated[
        str,
        typer.Option(
            "--shape",
            "-i",
            "--input",
            help="Size of the whole image in voxels, e.g. 160x384x384 (--input is the old name).",
            show_default=False,
        ),
    ] = "",
    budget: Annotated[
        str,
        typer.Option(
            "--budget",
            "-b",
            help="Memory to fit in, with a unit: 11GB, 80GB (decimal), 10GiB (binary), 512MB, "
            "or host (the free RAM of this machine).",
        ),
    ] = "11GB",
    spacing: Annotated[
        str | None,
        typer.Option(
            "--spacing",
            help="Voxel spacing in mm, e.g. 0.7x0.365x0.365 (default: the model's, else 1 mm); "
            "patches are kept roughly cubic in mm.",
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        Literal["train", "infer"],
        typer.Option(
            "--mode",
            help="Plan a training step (train) or a prediction step (infer).",
            case_sensitive=False,
        ),
    ] = "train",
    optimizer: Annotated[
        Literal["sgd", "adam", "adamw"],
        typer.Option(
            "--optimizer",
            help="Training optimizer (adam and adamw keep two extra copies of the weights).",
            case_sensitive=False,
        ),
    ] = "adam",
    device: Annotated[
        Literal["cuda", "cpu"] | None,
        typer.Option(
            "--device",
            help="Kernels the memory is predicted for (default: cpu for a host budget, else cuda).",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    precision: Annotated[
        list[PrecisionName] | None,
        typer.Option(
            "--precision",
            help="Number formats to try, in order (repeat; default bf16 then fp32). bf16 and "
            "fp16 need half the memory of fp32.",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="Plan for one of this many training processes (kneescope train --nproc): "
            "each keeps its own copy of the gradients for the exchange, the batch is split.",
        ),
    ] = 1,
    slabs: Annotated[
        int | None,
        typer.Option(
            "--slabs",
            min=2,
            help="When no plain step fits the whole volume, try computing the full-resolution "
            "stage in slabs of this many slices (even; exact, ~3x the FLOPs; unet3d-nnunet "
            "and other DynUNets; train with slab_vox = N). Each try traces the whole volume: "
            "seconds to a minute.",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank configurations that fit a memory budget: patch (the part of the image one step
    sees), batch, precision, checkpointing (recompute activations instead of keeping them),
    offload (park activations in host RAM) and accumulation (several small batches per
    update); and say whether the whole volume fits.

    Exit codes: 0 a plan, 1 nothing fits the budget, 2 bad option, 3 model not found.
    """
    from kneescope.memory.budget import parse_budget
    from kneescope.memory.planner import plan_training

    if not input_shape:
        raise InputError("give the image size with --shape, e.g. --shape 160x384x384")
    precisions = tuple(p.value for p in precision) if precision else ("bf16", "fp32")
    dev = (device or ("cpu" if budget.strip().lower() == "host" else "cuda")).lower()
    shape = _parse_shape(input_shape, "--shape")
    spacing_mm = _parse_shape(spacing, "--spacing", float) if spacing else None
    budget_bytes = parse_budget(budget)
    label, network, model_spacing = _network(model, network_name, shape, workspace, catalog)
    if spacing_mm is None and model_spacing is not None and len(model_spacing) == len(shape):
        spacing_mm = model_spacing
    result = plan_training(
        network,
        shape,
        spacing_mm,
        budget_bytes,
        optimizer=optimizer,
        mode=mode,
        device=dev,  # type: ignore[arg-type]
        precisions=precisions,  # type: ignore[arg-type]
        world_size=nproc,
        slabs=_slab_sizes(slabs, network, mode),
    )
    if not result.candidates and result.full_volume is None:
        need = _smallest_need(network, shape, mode, optimizer, dev, precisions)
        sharding = result.sharding
        shard = f"; {sharding.message}" if sharding is not None and sharding.ranks else ""
        raise ResourceError(
            f"nothing fits {_gb(budget_bytes)} GB: the smallest configuration of {label} "
            f"(patch {'x'.join(map(str, need[0]))}, batch 1, {need[1]}, all memory savers on) "
            f"needs {_gb(need[2] + result.ddp_bucket_bytes)} GB with margin{shard}; raise "
            f"--budget (e.g. -b {max(1, math.ceil((need[2] + result.ddp_bucket_bytes) / 1e9))}GB) "
            "or choose a smaller --network"
        )
    payload = {"model": label, **result.model_dump(mode="json")}
    model = label

    def render(console: Console) -> None:
        console.print(
            f"[bold]{model}[/bold] ({result.network}), target {input_shape} "
            f"(padded {'x'.join(map(str, result.padded_shape_vox))}), budget "
            f"{_gb(budget_bytes)} GB, {mode}, {dev} kernels, {optimizer}"
            f"{' foreach' if result.foreach else ''}; planned in {result.seconds:.1f} s"
        )
        if result.world_size > 1:
            console.print(
                f"Per process of {result.world_size} (data parallel): each need includes "
                f"{_gb(result.ddp_bucket_bytes)} GB of gradient buckets; batch AxB is per process."
            )
        table = Table(title="Feasible configurations, best first (GB = 1e9 B)")
        for col in ("#", "patch", "batch", "prec", "ckpt", "offload", "need GB", "peak GB",
                    "act GB", "Mvox/s"):  # fmt: skip
            table.add_column(col, justify="right", no_wrap=True)
        for i, c in enumerate(result.candidates, 1):
            table.add_row(
                str(i),
                "x".join(map(str, c.patch_size)),
                f"{c.batch_size}x{c.accumulation}" if c.accumulation > 1 else str(c.batch_size),
                c.precision,
                c.checkpointing,
                "host" if c.offload else "no",
                _gb(c.required_bytes),
                _gb(c.peak_bytes),
                _gb(c.breakdown_bytes["activations"]),
                f"{c.throughput_vox_per_s / 1e6:.1f}",
            )
        console.width = max(console.width, 104)  # the table needs ~100 columns
        console.print(table)
        full = result.full_volume
        if full is None:
            tried = f", offload or slabs of {slabs} slices" if slabs else " or offload"
            hint = ""
            if not slabs and mode == "train" and network.name == "dynunet":
                hint = " (or try --slabs 16: the full-resolution stage in slabs)"
            console.print(
                "Whole volume: does [bold red]not[/bold red] fit with any precision, "
                f"checkpointing{tried} tried; train on the patches above{hint}."
            )
        else:
            slab_text = f" in slabs of {full.slab_vox} slices" if full.slab_vox else ""
            console.print(
                f"Whole volume, batch 1: [bold green]fits[/bold green]{slab_text} with "
                f"{full.precision}, checkpointing {full.checkpointing}, offload "
                f"{'of saved activations to host' if full.offload else 'none'}: peak "
                f"{_gb(full.peak_bytes)} GB, need {_gb(full.required_bytes)} GB with margin"
                + (f", {_gb(full.host_offload_bytes)} GB host RAM per step" if full.offload else "")
            )
        console.print(
            "need = predicted peak + 10 % + 0.54 GB margin (allocator, workspaces, CUDA "
            "context); batch AxB = A per step, B accumulation steps; Mvox/s from FLOPs at "
            "nominal speed (ranking only)."
        )

    emit(payload, as_json, render)
