"""``kneescope plan``: fit a network's training (or inference) step into a memory budget."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kneescope.cli.common import CatalogOpt, JsonOpt, WorkspaceOpt, emit
from kneescope.errors import InputError


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


def plan(
    model: Annotated[str, typer.Option("--model", "-m", help="Network preset name.")],
    input_shape: Annotated[
        str, typer.Option("--input", "-i", help="Target volume in voxels, e.g. 160x384x384.")
    ],
    budget: Annotated[
        str, typer.Option("--budget", "-b", help="11GB, 80GB, 10GiB, or host (free RAM).")
    ] = "11GB",
    spacing: Annotated[
        str | None, typer.Option("--spacing", help="Voxel spacing in mm, e.g. 0.7x0.365x0.365.")
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="train or infer.")] = "train",
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd, adam or adamw.")] = "adam",
    device: Annotated[
        str | None,
        typer.Option("--device", help="cuda or cpu kernels (default: cpu for host, else cuda)."),
    ] = None,
    precision: Annotated[
        list[str] | None,
        typer.Option("--precision", help="Precisions to try, in order (default bf16 then fp32)."),
    ] = None,
    workspace: WorkspaceOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank configurations (patch, batch, precision, checkpointing, offload, accumulation)
    that fit the budget, and say whether the whole volume fits."""
    from kneescope.memory.budget import parse_budget
    from kneescope.memory.planner import plan_training
    from kneescope.models import preset

    if mode not in ("train", "infer"):
        raise InputError(f"--mode {mode!r}: expected train or infer")
    if optimizer not in ("sgd", "adam", "adamw"):
        raise InputError(f"--optimizer {optimizer!r}: expected sgd, adam or adamw")
    precisions = tuple(precision or ("bf16", "fp32"))
    for p in precisions:
        if p not in ("fp32", "bf16", "fp16"):
            raise InputError(f"--precision {p!r}: expected fp32, bf16 or fp16")
    dev = device or ("cpu" if budget.strip().lower() == "host" else "cuda")
    if dev not in ("cpu", "cuda"):
        raise InputError(f"--device {dev!r}: expected cuda or cpu")
    shape = _parse_shape(input_shape, "--input")
    spacing_mm = _parse_shape(spacing, "--spacing", float) if spacing else None
    budget_bytes = parse_budget(budget)
    network = preset(model, shape)
    result = plan_training(
        network,
        shape,
        spacing_mm,
        budget_bytes,
        optimizer=optimizer,  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        device=dev,  # type: ignore[arg-type]
        precisions=precisions,  # type: ignore[arg-type]
    )
    payload = {"model": model, **result.model_dump(mode="json")}

    def render(console: Console) -> None:
        console.print(
            f"[bold]{model}[/bold] ({result.network}), target {input_shape} "
            f"(padded {'x'.join(map(str, result.padded_shape_vox))}), budget "
            f"{_gb(budget_bytes)} GB, {mode}, {dev} kernels, {optimizer}"
            f"{' foreach' if result.foreach else ''}; planned in {result.seconds:.1f} s"
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
            console.print(
                "Whole volume: does [bold red]not[/bold red] fit with any precision, "
                "checkpointing or offload tried; train on the patches above."
            )
        else:
            console.print(
                "Whole volume, batch 1: [bold green]fits[/bold green] with "
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
