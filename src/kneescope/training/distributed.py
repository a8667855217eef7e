"""Data-parallel training across processes: who this process is (its rank) and the few
collective operations the training engine needs.

A *world* is the set of processes that train one model together: ``size`` ranks, each holding a
full copy of the network (PyTorch DistributedDataParallel). The engine draws the same global
batch on every rank and keeps its own slice ``[rank * b, (rank + 1) * b)``, so N ranks see
exactly the samples one rank sees; DDP averages the gradients. Only rank 0 writes files.

Where the ranks come from (:func:`world_from_env`):

- ``kneescope train --nproc N`` (:mod:`kneescope.training.launch`) and ``torchrun`` set
  ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
- ``srun -n N kneescope train ...`` (Slurm, one task per rank) sets ``SLURM_PROCID``,
  ``SLURM_STEP_NUM_TASKS`` (or ``SLURM_NTASKS``) and ``SLURM_LOCALID``; the rendezvous address is
  ``MASTER_ADDR`` when set, else the first node of the step, and the port ``MASTER_PORT`` when
  set, else one derived from the job and step ids (the same on every rank).

The backend is NCCL when the process sees a CUDA device, gloo otherwise (CPU).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist

from kneescope.errors import ConfigError, InputError, RunError
from kneescope.training.launch import LAUNCHER_ENV, RANK_LOST_EXIT

Backend = Literal["none", "gloo", "nccl"]

#: How long the rendezvous and each collective operation may wait for the other ranks (s):
#: long enough for rank 0's validation while the others wait. ``KNEESCOPE_DIST_TIMEOUT_S``
#: overrides it.
DEFAULT_TIMEOUT_S = 1800.0
TIMEOUT_ENV = "KNEESCOPE_DIST_TIMEOUT_S"
_PEER_LOST = re.compile(
    r"closed by peer|reset by peer|broken pipe|remote worker|connection refused|timed out"
    r"|timeout|nccl.*(abort|error|remote)",
    re.IGNORECASE,
)


class RankLostError(RunError):
    """A collective operation failed because another rank stopped (crashed, killed, failed)."""

    exit_code = RANK_LOST_EXIT


@dataclass(frozen=True)
class World:
    """This process's place among the ranks that train one model.

    Attributes:
        rank: this process's rank, ``0 <= rank < size``.
        size: number of ranks (1 = not distributed).
        local_rank: rank among the processes on this node (selects the GPU ``cuda:local_rank``,
            or ``cuda:0`` when the process sees one GPU only, as under ``srun
            --gpus-per-task=1``).
        backend: ``"none"`` (one rank, no process group), ``"gloo"`` (CPU) or ``"nccl"`` (GPU).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one rank that logs results and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when there is more than one rank (a process group is up)."""
        return self.size > 1

    def device(self) -> torch.device:
        """The device this rank trains on: its GPU under NCCL (``cuda:local_rank``, or
        ``cuda:0`` when it sees one GPU only), else CPU (or the CUDA device when not
        distributed and one is present)."""
        if self.backend == "nccl":
            return torch.device("cuda", _gpu_index(self.local_rank))
        if self.backend == "gloo":
            return torch.device("cpu")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def shard(self, global_batch: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's slice of a global batch of ``global_batch`` samples.

        Raises:
            ConfigError: when the global batch does not split evenly over the ranks.
        """
        if global_batch % self.size:
            raise ConfigError(
                f"batch_size {global_batch} does not split evenly over {self.size} ranks; "
                f"use a batch_size that is a multiple of {self.size}"
            )
        per_rank = global_batch // self.size
        return self.rank * per_rank, (self.rank + 1) * per_rank


SINGLE = World()


def _gpu_index(local_rank: int) -> int:
    """The visible GPU of a rank: ``local_rank``, or 0 when the rank sees a single GPU."""
    return 0 if torch.cuda.device_count() == 1 else local_rank


def _int_env(env: Mapping[str, str], name: str) -> int:
    raw = env[name]
    try:
        return int(raw)
    except ValueError:
        raise InputError(
            f"environment variable {name}={raw!r} is not a whole number; "
            "unset it or start the ranks with kneescope train --nproc N"
        ) from None


def first_host(nodelist: str) -> str:
    """First host name of a Slurm node list (``"node[03-05,9],gpu1"`` -> ``"node03"``),
    without calling ``scontrol``."""
    match = re.match(r"([^,\[]*)(?:\[([^\],-]+))?", nodelist.strip())
    if match is None or not (match.group(1) or match.group(2)):
        raise InputError(
            f"cannot read the Slurm node list {nodelist!r}; set MASTER_ADDR to rank 0's host"
        )
    return match.group(1) + (match.group(2) or "")


def _slurm_rendezvous(env: Mapping[str, str]) -> tuple[str, int]:
    """Rendezvous (address, port) for ranks started by srun: the same on every rank."""
    addr = env.get("MASTER_ADDR")
    if not addr:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")
        if nodelist:
            addr = first_host(nodelist)
        else:
            addr = env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")
    if "MASTER_PORT" in env:
        return addr, _int_env(env, "MASTER_PORT")
    job = int(env.get("SLURM_JOB_ID", "0") or 0)
    step = int(env.get("SLURM_STEP_ID", "0") or 0)
    return addr, 20000 + (job * 7 + step) % 20000


def ranks_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int, int, str, int]:
    """``(rank, size, local_rank, master_addr, master_port)`` from the environment, without
    starting anything; ``(0, 1, 0, "", 0)`` when this process was started alone.

    Raises:
        InputError: inconsistent variables (rank outside ``[0, size)``, missing rendezvous
            address), or a Slurm allocation of several tasks entered without ``srun``.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env or "RANK" in env:
        if "RANK" not in env or "WORLD_SIZE" not in env:
            raise InputError(
                "only one of RANK and WORLD_SIZE is set; set both, "
                "or start the ranks with kneescope train --nproc N"
            )
        rank, size = _int_env(env, "RANK"), _int_env(env, "WORLD_SIZE")
        local = _int_env(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        addr = env.get("MASTER_ADDR", "127.0.0.1")
        port = _int_env(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500
    elif "SLURM_PROCID" in env and ("SLURM_STEP_NUM_TASKS" in env or "SLURM_NTASKS" in env):
        rank = _int_env(env, "SLURM_PROCID")
        key = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
        size = _int_env(env, key)
        local = _int_env(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        if size > 1 and "SLURM_STEP_ID" not in env:
            raise InputError(
                f"this Slurm job has {size} tasks but kneescope was started once, not by srun; "
                f"start one rank per task: srun kneescope train ..."
            )
        addr, port = _slurm_rendezvous(env) if size > 1 else ("", 0)
    else:
        return 0, 1, 0, "", 0
    if size < 1 or not 0 <= rank < size or local < 0:
        raise InputError(
            f"rank {rank} of world size {size} (local rank {local}) is not a valid rank; "
            "check RANK/WORLD_SIZE/LOCAL_RANK (or Slurm's task variables)"
        )
    return rank, size, local, addr, port


def default_backend() -> Backend:
    """NCCL when this process sees a CUDA device (and torch has NCCL), gloo otherwise."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def world_from_env(
    env: Mapping[str, str] | None = None,
    *,
    backend: Backend | None = None,
    timeout_s: float | None = None,
) -> World:
    """This process's :class:`World`, starting the process group when there are several ranks.

    Args:
        env: the environment to read (default ``os.environ``).
        backend: ``"gloo"`` or ``"nccl"``; default :func:`default_backend` (NCCL on GPU).
        timeout_s: how long the rendezvous and each collective may wait for the other ranks
            (s); default ``$KNEESCOPE_DIST_TIMEOUT_S``, else ``DEFAULT_TIMEOUT_S``.

    Returns:
        ``World()`` (one rank, backend ``"none"``) when started alone; otherwise the rank's
        world with the default process group initialised (call :func:`shutdown` at the end).

    Raises:
        InputError: inconsistent rank variables; a NCCL world whose local rank has no GPU.
    """
    if dist.is_available() and dist.is_initialized():
        return World(
            rank=dist.get_rank(),
            size=dist.get_world_size(),
            local_rank=int((os.environ if env is None else env).get("LOCAL_RANK", 0)),
            backend=str(dist.get_backend()),
        )
    rank, size, local, addr, port = ranks_from_env(env)
    if size == 1:
        return World()
    if not dist.is_available():
        raise InputError(
            "this torch build has no torch.distributed; install a standard torch build "
            "(see docs/training.md) or train with one process"
        )
    chosen: Backend = backend or default_backend()
    if chosen == "nccl":
        if _gpu_index(local) >= torch.cuda.device_count():
            raise InputError(
                f"local rank {local} has no GPU ({torch.cuda.device_count()} visible); "
                "start at most one rank per GPU on each node"
            )
        torch.cuda.set_device(_gpu_index(local))
    wait_s = _timeout(timeout_s, env)
    try:
        dist.init_process_group(
            backend=chosen,
            init_method=f"tcp://{_host_for_url(addr)}:{port}",
            rank=rank,
            world_size=size,
            timeout=datetime.timedelta(seconds=wait_s),
        )
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunError(
            f"rank {rank} of {size} could not join the others at {addr}:{port} within "
            f"{wait_s:g} s ({first[:200]}); start every rank (kneescope train --nproc N, "
            "srun or torchrun) and check MASTER_ADDR and MASTER_PORT"
        ) from None
    # a rank that exits early (sys.exit after one error line) must not leave the process
    # group to C++ destructors at interpreter teardown: gloo can abort there (SIGABRT), and
    # the launcher would then report a crash instead of the rank's exit code and message
    atexit.register(_destroy_at_exit)
    return World(rank=rank, size=size, local_rank=local, backend=chosen)


def _destroy_at_exit() -> None:
    """Tear the default process group down if it is still up (at interpreter exit)."""
    with contextlib.suppress(Exception):
        if dist.is_initialized():
            dist.destroy_process_group()


def _timeout(timeout_s: float | None, env: Mapping[str, str] | None) -> float:
    if timeout_s is not None:
        return timeout_s
    raw = (os.environ if env is None else env).get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise InputError(
            f"{TIMEOUT_ENV}={raw!r} is not a positive number of seconds; fix or unset it"
        )
    return value


def _host_for_url(addr: str) -> str:
    return f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr


def all_reduce_mean(value: float, world: World) -> float:
    """Mean of ``value`` over all ranks (every rank gets the result); ``value`` on one rank."""
    if not world.is_distributed:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=world.device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / world.size


def all_reduce_max(value: float, world: World) -> float:
    """Maximum of ``value`` over all ranks (e.g. a stop flag: 1.0 on any rank stops all)."""
    if not world.is_distributed:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=world.device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def broadcast_object(obj: Any, world: World, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable objects, e.g. a resume decision)."""
    if not world.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(world: World) -> None:
    """Wait until every rank gets here (no-op on one rank)."""
    if not world.is_distributed:
        return
    if world.backend == "nccl":
        dist.barrier(device_ids=[_gpu_index(world.local_rank)])
    else:
        dist.barrier()


def shutdown(world: World) -> None:
    """Tear the process group down (no-op on one rank or when already down)."""
    if world.is_distributed and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def rank_guard(world: World) -> Iterator[None]:
    """Around a rank's training: a collective that fails because another rank went away
    becomes :class:`RankLostError` (one line, exit code ``RANK_LOST_EXIT``), not a torch
    traceback; under kneescope's own launcher the rank exits with that code silently (the
    launcher reports the rank that failed first)."""
    try:
        yield
    except RuntimeError as exc:
        if not world.is_distributed or isinstance(exc, RunError):
            raise
        if not _PEER_LOST.search(str(exc)):
            raise
        if os.environ.get(LAUNCHER_ENV):
            raise SystemExit(RANK_LOST_EXIT) from None
        raise RankLostError(
            f"rank {world.rank} of {world.size} lost contact with another rank, which "
            "stopped first (its own error says why); fix that and run again to resume"
        ) from None
