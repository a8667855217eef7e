"""Plan a training (or inference) configuration that fits a memory budget.

Search space: patch size (multiples of the network's divisor, shrinking first the axis with
the largest physical extent, so anisotropic spacing keeps patches roughly isotropic in mm),
batch size, precision, activation checkpointing, activation offload to host, and gradient
accumulation (to reach an effective batch). Each (precision, checkpointing, offload)
combination is traced twice in fake mode (at the target size, exact, and at a small size);
their :class:`~kneescope.memory.predict.PeakModel` then prices every patch and batch in
microseconds (exactly without checkpointing: both traces run the same ops). Candidates are
ranked by predicted throughput (voxels per second from FLOPs, recomputation included, and
host-link time of offloaded activations); checkpointed ones are re-predicted exactly, and
only those whose prediction (plus margin) fits are proposed.

Data parallel (``world_size > 1``): every rank holds the whole model, and PyTorch's
DistributedDataParallel keeps a flat copy of every gradient in its communication buckets
(default cap 25 MiB each; together the parameters' bytes), allocated when the model is wrapped
and alive for the whole step: :func:`ddp_bucket_bytes` is added to every candidate's need. When
nothing fits because one copy of the weights, gradients and optimizer state (plus the
smallest step) is too large for one device, :func:`sharding_advice` says by how much and over
how many ranks a sharded model (FSDP) would fit.
"""

from __future__ import annotations

import math
import time
from typing import Literal

from pydantic import BaseModel, Field

from kneescope.config import FROZEN
from kneescope.errors import InputError, ResourceError
from kneescope.memory.predict import MemoryEstimate, PeakModel, margin_for, peak_model, predict_step
from kneescope.memory.step import OptimizerName, Precision, StepConfig
from kneescope.models import (
    NetworkConfig,
    build_network,
    divisor,
    is_classifier,
    model_fingerprint,
)
from kneescope.models.checkpointing import Checkpointing
from kneescope.models.registry import count_parameters


class DeviceSpeed(BaseModel):
    """Nominal speeds used to rank candidates (only ratios matter for the ranking)."""

    model_config = FROZEN

    flops_per_s: dict[str, float] = Field(
        default_factory=lambda: {"fp32": 12e12, "bf16": 24e12, "fp16": 24e12}
    )
    host_link_bytes_per_s: float = 12e9


class PlanCandidate(BaseModel):
    """One configuration and its predicted cost. ``required_bytes`` = peak + safety margin."""

    model_config = FROZEN

    patch_size: tuple[int, ...]
    batch_size: int
    precision: Precision
    checkpointing: Checkpointing
    offload: bool
    accumulation: int
    peak_bytes: int
    required_bytes: int
    breakdown_bytes: dict[str, int]
    flops: int
    host_offload_bytes: int
    throughput_vox_per_s: float
    exact: bool
    """True when the figures come from an exact fake trace of this very configuration."""
    slab_vox: int = 0
    """``> 0``: the full-resolution stage runs in slabs of this many slices
    (:mod:`kneescope.memory.slabs`)."""


GIB = 2**30

DDP_BUCKET_CAP_BYTES = 25 * 2**20
"""DistributedDataParallel's default gradient bucket size (``bucket_cap_mb=25``)."""


class ShardingAdvice(BaseModel):
    """How much a replicated (data-parallel) model is short of a device, and how far sharding
    the weights, gradients and optimizer state over ranks (FSDP) would bring it.

    Bytes are per device. ``model_state_bytes`` is one full copy of the weights, gradients and
    optimizer state; ``step_bytes`` the rest of the smallest step's need (smallest patch, batch
    1, all memory savers on: inputs, activations, temporaries, margin); ``need_bytes`` that
    step's whole need replicated (plus ``ddp_bucket_bytes``, DDP's gradient buckets, in data
    parallel); ``ranks`` the fewest ranks whose FSDP shard fits (``None``: not even with
    ``max_ranks``) and ``per_rank_bytes`` one rank's need then: ``model_state / ranks`` + three
    units of the largest layer (the gathered weights and full gradient of the layer computed,
    the weights of the one prefetched; each layer its own unit) + the step's inputs,
    activations and temporaries, + the safety margin. An estimate: the temporaries of a peak in
    the optimizer step are counted whole, though FSDP's would be sharded.
    """

    model_config = FROZEN

    model_state_bytes: int
    step_bytes: int
    ddp_bucket_bytes: int
    need_bytes: int
    budget_bytes: int
    ranks: int | None
    per_rank_bytes: int | None
    largest_unit_bytes: int

    @property
    def short_bytes(self) -> int:
        """By how much the replicated need exceeds the budget (0: it fits)."""
        return max(0, self.need_bytes - self.budget_bytes)

    @property
    def message(self) -> str:
        """One sentence: what does not fit, by how much, and what FSDP would need per rank."""
        text = (
            f"weights + gradients + optimizer state need {self.model_state_bytes / GIB:.2f} GiB"
            + (
                f", DDP's gradient buckets {self.ddp_bucket_bytes / GIB:.2f} GiB"
                if self.ddp_bucket_bytes
                else ""
            )
            + f" and the smallest step {self.step_bytes / GIB:.2f} GiB more: "
            f"{self.need_bytes / GIB:.2f} GiB, budget {self.budget_bytes / GIB:.2f} GiB "
            f"(short by {self.short_bytes / GIB:.2f} GiB)"
        )
        if self.ranks is None or self.per_rank_bytes is None:
            return text + "; sharding the model over ranks (FSDP) would not make it fit"
        return text + (
            f"; FSDP over {self.ranks} ranks: {self.per_rank_bytes / GIB:.2f} GiB per rank"
        )


class Plan(BaseModel):
    """Ranked feasible configurations for a network, a target volume and a budget.

    ``world_size`` ranks train in data parallel (each one plans for its own device);
    ``ddp_bucket_bytes`` is included in every candidate's ``required_bytes``. ``sharding``
    is set when nothing fits: by how much, and what FSDP over how many ranks would need.
    """

    model_config = FROZEN

    network: str
    target_shape_vox: tuple[int, ...]
    padded_shape_vox: tuple[int, ...]
    spacing_mm: tuple[float, ...]
    budget_bytes: int
    device: Literal["cpu", "cuda"]
    mode: Literal["train", "infer"]
    optimizer: OptimizerName
    foreach: bool
    candidates: tuple[PlanCandidate, ...]
    full_volume: PlanCandidate | None
    full_volume_options: tuple[PlanCandidate, ...]
    seconds: float
    world_size: int = 1
    ddp_bucket_bytes: int = 0
    sharding: ShardingAdvice | None = None

    @property
    def best(self) -> PlanCandidate:
        """The top-ranked configuration.

        Raises:
            ResourceError: nothing fits the budget.
        """
        if not self.candidates:
            if self.sharding is not None and self.sharding.ranks is not None:
                raise ResourceError(
                    f"no configuration of {self.network} fits {self.budget_bytes / 1e9:.2f} GB: "
                    f"{self.sharding.message}; raise the budget or use a smaller network"
                )
            raise ResourceError(
                f"no configuration of {self.network} fits {self.budget_bytes / 1e9:.2f} GB; "
                "raise the budget or use a smaller network"
            )
        return self.candidates[0]


def ddp_bucket_bytes(network: NetworkConfig) -> int:
    """Bytes of DistributedDataParallel's gradient buckets on each rank: a flat fp32 copy of
    every trainable parameter's gradient (in buckets of at most ``DDP_BUCKET_CAP_BYTES``, a
    parameter larger than the cap in a bucket of its own), i.e. the parameters' bytes."""
    return 4 * count_parameters(network)


def largest_unit_bytes(network: NetworkConfig) -> int:
    """fp32 bytes of the layer (module, its own parameters) with the most parameters: what
    FSDP gathers at once when every layer is its own unit."""
    import torch

    with torch.device("meta"):
        net = build_network(network)
    sizes = [sum(p.numel() for p in m.parameters(recurse=False)) for m in net.modules()]
    return 4 * max(sizes, default=0)


def sharding_advice(
    network: NetworkConfig,
    budget_bytes: int,
    *,
    optimizer: OptimizerName = "adam",
    precision: Precision = "bf16",
    device: Literal["cpu", "cuda"] = "cuda",
    foreach: bool | None = None,
    min_patch_vox: tuple[int, ...] | None = None,
    world_size: int = 1,
    max_ranks: int = 65536,
) -> ShardingAdvice:
    """What one device needs to train ``network`` replicated, and the fewest FSDP ranks whose
    shard fits ``budget_bytes``.

    The smallest step (``min_patch_vox``, default two divisors per axis; a classifier's own
    input size; batch 1, checkpointing per block, activations offloaded) is traced in fake
    mode: its peak breakdown gives the weights and optimizer state exactly (gradients are the
    weights' size), the rest of its need (inputs, activations, temporaries, margin) is the
    ``step_bytes`` every rank needs besides the model state. ``foreach`` (default: on for
    cuda, as torch does) is the optimizer implementation assumed.
    """
    if network.name == "vgg_classifier":
        assert network.input_shape_vox is not None  # checked by NetworkConfig
        shape = tuple(network.input_shape_vox)
    elif is_classifier(network):
        shape = min_patch_vox or (32,) * network.spatial_dims  # global pooling: >= 32 per axis
    else:
        shape = min_patch_vox or tuple(2 * d for d in divisor(network))
    step = StepConfig(
        input_shape_vox=shape,
        precision=precision,
        optimizer=optimizer,
        foreach=device == "cuda" if foreach is None else foreach,
        checkpointing="per_block",
        offload=True,
        mode="train",
        device=device,
    )
    estimate = predict_step(network, step)
    b = estimate.breakdown_bytes
    model_state = 2 * b["weights"] + b["optimizer_state"]  # gradients: the weights' size
    other = max(0, estimate.peak_bytes - b["weights"] - b["gradients"] - b["optimizer_state"])
    ddp = ddp_bucket_bytes(network) if world_size > 1 else 0
    unit = largest_unit_bytes(network)
    gathered = 3 * unit  # the unit computed (weights, full gradient) and the one prefetched

    def need(ranks: int) -> int:
        peak = math.ceil(model_state / ranks) + gathered + other
        return peak + margin_for(peak)

    ranks: int | None = None
    if need(max_ranks) <= budget_bytes:
        low, high = 2, max_ranks  # the fewest ranks that fit (need falls with ranks)
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if need(mid) <= budget_bytes else (mid + 1, high)
        ranks = low
    return ShardingAdvice(
        model_state_bytes=model_state,
        step_bytes=estimate.required_bytes - model_state,
        ddp_bucket_bytes=ddp,
        need_bytes=estimate.required_bytes + ddp,
        budget_bytes=budget_bytes,
        ranks=ranks,
        per_rank_bytes=None if ranks is None else need(ranks),
        largest_unit_bytes=unit,
    )


def _with_ddp(candidate: PlanCandidate, ddp: int) -> PlanCandidate:
    """``candidate`` with DDP's gradient buckets added to its need and breakdown."""
    if not ddp:
        return candidate
    return candidate.model_copy(
        update={
            "required_bytes": candidate.required_bytes + ddp,
            "breakdown_bytes": {**candidate.breakdown_bytes, "ddp_buckets": ddp},
        }
    )


def padded_shape(shape_vox: tuple[int, ...], div: tuple[int, ...]) -> tuple[int, ...]:
    """``shape_vox`` rounded up to multiples of ``div`` per axis."""
    return tuple(math.ceil(n / d) * d for n, d in zip(shape_vox, div, strict=True))


def patch_ladder(
    shape_vox: tuple[int, ...],
    spacing_mm: tuple[float, ...],
    div: tuple[int, ...],
    min_vox: tuple[int, ...],
) -> list[tuple[int, ...]]:
    """Patch shapes from ``shape_vox`` down to ``min_vox``, largest first.

    Each step removes one divisor from the axis whose physical extent (voxels x spacing)
    is largest among those still above their minimum; every shape is a multiple of ``div``.
    """
    shape = list(shape_vox)
    out = [tuple(shape)]
    while True:
        axes = [a for a in range(len(shape)) if shape[a] - div[a] >= min_vox[a]]
        if not axes:
            return out
        a = max(axes, key=lambda i: (shape[i] * spacing_mm[i], shape[i]))
        shape[a] -= div[a]
        out.append(tuple(shape))


def _score(
    flops: int, offload_bytes: int, voxels: int, precision: str, speed: DeviceSpeed
) -> float:
    seconds = flops / speed.flops_per_s[precision] + 2 * offload_bytes / speed.host_link_bytes_per_s
    return voxels / seconds if seconds > 0 else 0.0


def _candidate(
    estimate: MemoryEstimate, accumulation: int, speed: DeviceSpeed, exact: bool
) -> PlanCandidate:
    step = estimate.step
    return PlanCandidate(
        patch_size=step.input_shape_vox,
        batch_size=step.batch_size,
        precision=step.precision,
        checkpointing=step.checkpointing,
        offload=step.offload,
        accumulation=accumulation,
        peak_bytes=estimate.peak_bytes,
        required_bytes=estimate.required_bytes,
        breakdown_bytes=estimate.breakdown_bytes,
        flops=estimate.flops,
        host_offload_bytes=estimate.host_offload_bytes,
        slab_vox=step.slab_vox,
        throughput_vox_per_s=_score(
            estimate.flops,
            estimate.host_offload_bytes,
            step.batch_size * math.prod(step.input_shape_vox),
            step.precision,
            speed,
        ),
        exact=exact,
    )


def _grad_bytes(estimate: MemoryEstimate) -> int:
    return estimate.breakdown_bytes["weights"]


def _model_candidate(
    exact: MemoryEstimate,
    step: StepConfig,
    peak: int,
    flops: int,
    off_bytes: int,
    accumulation: int,
    extra: int,
    speed: DeviceSpeed,
) -> PlanCandidate:
    """A candidate priced by the :class:`PeakModel` (exact for checkpointing off).

    The breakdown is approximate: size-independent parts (weights, gradients, optimizer
    state) from the exact trace at the target size, inputs and activations scaled by voxels,
    temporaries the rest of the peak.
    """
    ratio = (step.batch_size * math.prod(step.input_shape_vox)) / (
        exact.step.batch_size * math.prod(exact.step.input_shape_vox)
    )
    b = dict(exact.breakdown_bytes)
    b["inputs"] = int(b["inputs"] * ratio)
    b["activations"] = int(b["activations"] * ratio)
    fixed = sum(v for k, v in b.items() if k != "temporaries")
    b["temporaries"] = max(0, peak - fixed)
    voxels = step.batch_size * math.prod(step.input_shape_vox)
    return PlanCandidate(
        patch_size=step.input_shape_vox,
        batch_size=step.batch_size,
        precision=step.precision,
        checkpointing=step.checkpointing,
        offload=step.offload,
        accumulation=accumulation,
        peak_bytes=peak,
        required_bytes=peak + margin_for(peak) + extra,
        breakdown_bytes=b,
        flops=flops,
        host_offload_bytes=off_bytes,
        throughput_vox_per_s=_score(flops, off_bytes, voxels, step.precision, speed),
        exact=False,
    )


_PoolItem = tuple[float, int, StepConfig, int, PlanCandidate | None]


def _search_combo(
    network: NetworkConfig,
    base: StepConfig,
    exact: MemoryEstimate,
    ladder: list[tuple[int, ...]],
    batch_sizes: tuple[int, ...],
    min_vox: tuple[int, ...],
    classifier: bool,
    mode: str,
    effective_batch: int,
    limit_bytes: int,
    speed: DeviceSpeed,
) -> list[_PoolItem]:
    """For each batch size, the largest patch of ``ladder`` whose predicted need fits.

    Without checkpointing the model is exact (both traces run the same ops, every live
    tensor scales with the patch), so its figures are the candidate's; with checkpointing
    the candidate is left to be re-predicted exactly (``None``).
    """
    model: PeakModel | None = None
    if not classifier:
        try:
            model = peak_model(network, base, min_vox)
        except ValueError:
            model = None
    found: list[_PoolItem] = []
    for batch in batch_sizes:
        accumulation = max(1, math.ceil(effective_batch / batch)) if mode == "train" else 1
        extra = _grad_bytes(exact) if accumulation > 1 else 0
        for shape in ladder:
            step = base.model_copy(update={"input_shape_vox": shape, "batch_size": batch})
            if model is not None:
                peak = model.peak_bytes(batch, shape)
                flops = model.flops(batch, shape)
                off_bytes = model.host_offload_bytes(batch, shape)
            else:
                e = predict_step(network, step)
                peak, flops, off_bytes = e.peak_bytes, e.flops, e.host_offload_bytes
            if peak + margin_for(peak) + extra <= limit_bytes:
                voxels = batch * math.prod(shape)
                score = _score(flops, off_bytes, voxels, base.precision, speed)
                ready = None
                if model is not None and base.checkpointing == "off":
                    ready = _model_candidate(
                        exact, step, peak, flops, off_bytes, accumulation, extra, speed
                    )
                found.append((-score, -voxels, step, accumulation, ready))
                break  # the largest fitting patch for this batch
    return found


def _slab_full_volume(
    network: NetworkConfig,
    traced: list[tuple[StepConfig, MemoryEstimate]],
    slabs: tuple[int, ...],
    combos: list[tuple[Checkpointing, bool]],
    step_budget: int,
    effective_batch: int,
    speed: DeviceSpeed,
) -> list[PlanCandidate]:
    """The cheapest (checkpointing, offload) combination whose slab step fits the whole
    volume, for each slab thickness (thicker slabs first: less recomputation)."""
    base = traced[0][0]
    found: list[PlanCandidate] = []
    for slab_vox in sorted(slabs, reverse=True):
        for ck, off in combos:
            step = base.model_copy(
                update={"checkpointing": ck, "offload": off, "slab_vox": slab_vox}
            )
            exact = predict_step(network, step)
            if exact.required_bytes <= step_budget:
                found.append(_candidate(exact, effective_batch, speed, exact=True))
                break
    return found


def plan_training(
    network: NetworkConfig,
    input_shape_vox: tuple[int, ...],
    spacing_mm: tuple[float, ...] | None,
    budget_bytes: int,
    *,
    optimizer: OptimizerName = "adam",
    mode: Literal["train", "infer"] = "train",
    device: Literal["cpu", "cuda"] = "cuda",
    precisions: tuple[Precision, ...] = ("bf16", "fp32"),
    checkpointing: tuple[Checkpointing, ...] = ("off", "selective", "per_block"),
    offload: tuple[bool, ...] = (False, True),
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8),
    effective_batch: int = 2,
    min_patch_vox: tuple[int, ...] | None = None,
    verify_top: int = 2,
    search_combos: int = 1,
    max_candidates: int = 6,
    foreach: bool | None = None,
    speed: DeviceSpeed | None = None,
    world_size: int = 1,
    slabs: tuple[int, ...] = (),
) -> Plan:
    """Search configurations of ``network`` for a ``input_shape_vox`` volume within a budget.

    A classifier (``vgg_classifier``, ``resnet``) is planned on its whole input, never on
    patches: only batch, precision, checkpointing and offload vary. Precisions are tried in
    order; a later one (e.g. fp32, slower and larger than bf16) is
    searched only when no earlier one fits. (checkpointing, offload) combinations are traced
    at the full (padded) volume cheapest first, stopping at the first that fits (the
    ``full_volume`` answer); patches and batches are then searched in the first
    ``search_combos`` traced combinations (more when none of them fits anything). At most
    ``max_candidates`` are proposed: those without checkpointing priced by the (exact)
    linear model, the ``verify_top`` best with checkpointing re-predicted exactly; none
    whose prediction plus margin exceeds ``budget_bytes``. ``foreach`` (default: on for
    cuda, as torch does) is the optimizer implementation assumed. With ``accumulation > 1``
    the gradients live through every micro-step, so their bytes are added to the need.
    With ``world_size > 1`` (data parallel) each rank plans for its own device with
    ``budget_bytes``: ``effective_batch`` is the global batch (each rank accumulates its share)
    and DDP's gradient buckets (:func:`ddp_bucket_bytes`) are added to every need. When
    nothing fits, ``Plan.sharding`` says by how much and what FSDP would need per rank.
    ``slabs`` (slice counts, e.g. ``(16,)``; DynUNet only, opt-in because each trace of the
    whole volume takes seconds to a minute): when no plain combination fits the whole volume,
    its full-resolution stage is tried in slabs of each thickness
    (:mod:`kneescope.memory.slabs`), with the same combinations, cheapest first.

    Raises:
        InputError: shapes of the wrong length, or a classifier asked for another size.
    """
    start = time.perf_counter()
    dims = network.spatial_dims
    if len(input_shape_vox) != dims:
        raise InputError(f"input {input_shape_vox} needs {dims} sizes for a {dims}D network")
    spacing = tuple(spacing_mm) if spacing_mm is not None else (1.0,) * dims
    if len(spacing) != dims:
        raise InputError(f"spacing {spacing} needs {dims} values")
    speed = speed or DeviceSpeed()
    if world_size < 1:
        raise InputError(f"world size {world_size} is not a number of ranks; use 1 or more")
    ddp = ddp_bucket_bytes(network) if world_size > 1 else 0
    step_budget = budget_bytes - ddp  # what one rank's step may use besides the buckets
    effective_batch = max(1, math.ceil(effective_batch / world_size))  # per rank
    div = divisor(network)
    classifier = is_classifier(network)  # planned on its whole input: no patches
    if classifier:
        if network.name == "vgg_classifier" and tuple(input_shape_vox) != network.input_shape_vox:
            raise InputError(
                f"classifier is built for {network.input_shape_vox}, not {input_shape_vox}; "
                "size the preset for the input (preset(name, input_shape_vox))"
            )
        target = tuple(input_shape_vox)
    else:
        target = padded_shape(tuple(input_shape_vox), div)
    min_vox = min_patch_vox or tuple(2 * d for d in div)
    ladder = [target] if classifier else patch_ladder(target, spacing, div, min_vox)
    # Pruning slack: the linear model ignores per-sample norm statistics (a few kB).
    slack = max(step_budget // 200, 1 << 20)

    use_foreach = device == "cuda" if foreach is None else foreach
    combos = [(ck, off) for off in offload for ck in checkpointing]  # cheapest first
    if mode == "infer":
        combos = [("off", False)]
    pool: list[_PoolItem] = []  # (-score, -voxels, step, accumulation, model candidate)
    full: list[PlanCandidate] = []
    for precision in precisions:
        if pool or full:
            break  # an earlier (faster, smaller) precision already fits
        traced: list[tuple[StepConfig, MemoryEstimate]] = []
        for ck, off in combos:
            base = StepConfig(
                input_shape_vox=target,
                precision=precision,
                optimizer=optimizer,
                foreach=use_foreach,
                checkpointing=ck,
                offload=off,
                mode=mode,
                device=device,
            )
            exact = predict_step(network, base)
            traced.append((base, exact))
            if exact.required_bytes <= step_budget:
                full.append(_candidate(exact, effective_batch, speed, exact=True))
                break  # the cheapest way to fit the whole volume
        if not full and slabs and mode == "train" and network.name == "dynunet":
            full += _slab_full_volume(
                network, traced, slabs, combos, step_budget, effective_batch, speed
            )
        for n_searched, (base, exact) in enumerate(traced):
            if pool and n_searched >= search_combos:
                break
            pool += _search_combo(
                network,
                base,
                exact,
                ladder,
                batch_sizes,
                min_vox,
                classifier,
                mode,
                effective_batch,
                step_budget - slack,
                speed,
            )
    pool.sort(key=lambda item: (item[0], item[1]))
    proposed: list[PlanCandidate] = []
    n_verified = 0
    for _, _, step, accumulation, ready in pool:
        if len(proposed) >= max_candidates:
            break
        if ready is not None:
            if ready.required_bytes <= step_budget:
                proposed.append(ready)
            continue
        if n_verified >= verify_top:
            continue
        n_verified += 1
        exact = predict_step(network, step)
        extra = _grad_bytes(exact) if accumulation > 1 else 0
        if exact.required_bytes + extra <= step_budget:
            candidate = _candidate(exact, accumulation, speed, exact=True)
            proposed.append(
                candidate.model_copy(update={"required_bytes": candidate.required_bytes + extra})
            )
    proposed.sort(key=lambda c: (-c.throughput_vox_per_s, -c.batch_size * math.prod(c.patch_size)))
    full.sort(key=lambda c: -c.throughput_vox_per_s)
    proposed = [_with_ddp(c, ddp) for c in proposed]
    full = [_with_ddp(c, ddp) for c in full]
    sharding = None
    if not proposed and not full and mode == "train":
        sharding = sharding_advice(
            network,
            budget_bytes,
            optimizer=optimizer,
            precision=precisions[0],
            device=device,
            foreach=use_foreach,
            min_patch_vox=min_vox,
            world_size=world_size,
        )
    return Plan(
        network=model_fingerprint(network),
        target_shape_vox=tuple(input_shape_vox),
        padded_shape_vox=target,
        spacing_mm=spacing,
        budget_bytes=budget_bytes,
        device=device,
        mode=mode,
        optimizer=optimizer,
        foreach=use_foreach,
        candidates=tuple(proposed),
        full_volume=full[0] if full else None,
        full_volume_options=tuple(full),
        seconds=time.perf_counter() - start,
        world_size=world_size,
        ddp_bucket_bytes=ddp,
        sharding=sharding,
    )
