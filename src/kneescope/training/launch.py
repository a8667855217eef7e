"""Start the ranks of a data-parallel training: N local processes, or N Slurm tasks via srun.

``kneescope train --nproc N ...`` runs :func:`launch_local`: it starts N copies of the same
``kneescope train ...`` command (without ``--nproc``), each with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT`` in its environment (what
:func:`kneescope.training.distributed.world_from_env` reads), and watches them:

- rank 0's output is the command's output (its progress bar and result); the other ranks'
  output is kept back and shown only when that rank fails;
- the first rank that fails stops the others and the launcher prints one line naming it;
- Ctrl-C (or SIGTERM) stops every rank; rerunning the command resumes from the last checkpoint.

``kneescope train --launcher slurm --nproc N ...`` runs :func:`launch_slurm`: ``srun`` starts one
task per rank (inside an allocation from ``salloc``/``sbatch``, or a new one), with
``--kill-on-bad-exit`` so that one failing task stops the step. Running ``srun -n N kneescope
train ...`` yourself does the same.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO

from kneescope.errors import ConfigError, InputError

#: Exit code of a rank that stopped because another rank went away (not the cause itself).
RANK_LOST_EXIT = 75
#: Set by kneescope's local launcher in each rank's environment.
LAUNCHER_ENV = "KNEESCOPE_LAUNCHER"
#: Seconds a rank has to exit after SIGTERM before it is killed.
TERMINATE_GRACE_S = 10.0
#: Rank 0's output is held back this long so that, when another rank fails first, rank 0's
#: own report of the lost connection is dropped (the launcher names the rank that failed).
HOLD_BACK_S = 0.5
_TAIL_BYTES = 64 * 1024
#: Seconds to wait for the rank that caused others to lose contact, before reporting anyway.
LOST_GRACE_S = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (for the rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def rank_env(
    base: Mapping[str, str], rank: int, size: int, port: int, *, threads: int | None = None
) -> dict[str, str]:
    """Environment of local rank ``rank`` of ``size`` (rendezvous on 127.0.0.1:``port``).

    ``OMP_NUM_THREADS`` is set to ``threads`` (default: this machine's cores split over the
    ranks) unless the caller set it, so that N ranks do not each start one thread per core.
    """
    env = {k: v for k, v in base.items() if not k.startswith("SLURM_")}
    env.update(
        RANK=str(rank),
        WORLD_SIZE=str(size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    env[LAUNCHER_ENV] = "local"
    if "OMP_NUM_THREADS" not in base:
        env["OMP_NUM_THREADS"] = str(threads or max(1, (os.cpu_count() or 1) // size))
    return env


class _Rank:
    """One child process and its stderr: forwarded (rank 0, held back ``HOLD_BACK_S``) or
    kept as a tail for the failure report (other ranks)."""

    def __init__(self, rank: int, proc: subprocess.Popen[bytes], forward: IO[bytes] | None):
        self.rank = rank
        self.proc = proc
        self.tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        self._forward = forward
        self._held: collections.deque[tuple[float, bytes]] = collections.deque()
        self._lock = threading.Lock()
        self.muted = False
        self.exit_time: float | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        self.proc.wait()
        self.exit_time = time.monotonic()

    def _read(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        fd = stream.fileno()
        while chunk := os.read(fd, 65536):
            with self._lock:
                self.tail.append(chunk)
                self._tail_size += len(chunk)
                while self._tail_size > _TAIL_BYTES and len(self.tail) > 1:
                    self._tail_size -= len(self.tail.popleft())
                if self._forward is not None:
                    self._held.append((time.monotonic(), chunk))

    def pump(self, *, hold_s: float = HOLD_BACK_S) -> None:
        """Write rank 0's output that has been held back at least ``hold_s`` seconds."""
        if self._forward is None:
            return
        now = time.monotonic()
        with self._lock:
            while self._held and (now - self._held[0][0] >= hold_s):
                chunk = self._held.popleft()[1]
                if not self.muted:
                    with contextlib.suppress(OSError):
                        self._forward.write(chunk)
                        self._forward.flush()

    def drain(self) -> None:
        """Wait for the stream to close and write everything still held back."""
        self._reader.join(timeout=5)
        self.pump(hold_s=0.0)

    def close(self) -> None:
        """Close the pipe once the process is gone."""
        self._reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def last_line(self) -> str:
        """The last non-empty line this rank wrote to stderr ('' when none)."""
        self._reader.join(timeout=5)
        with self._lock:
            text = b"".join(self.tail).decode("utf-8", "replace")
        lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
        # torch prefixes a rank's traceback lines with "[rankN]: "
        return re.sub(r"^\[rank\d+\]:\s*", "", lines[-1]) if lines else ""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the launcher dies (no orphaned ranks)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(ranks: Sequence[_Rank]) -> None:
    """SIGTERM every rank still running, then SIGKILL those that outlive the grace period."""
    for r in ranks:
        if r.proc.poll() is None:
            with contextlib.suppress(OSError):
                r.proc.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for r in ranks:
        try:
            r.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                r.proc.kill()
            r.proc.wait()


def _describe_failure(r: _Rank, size: int) -> str:
    code = r.proc.returncode
    if code == RANK_LOST_EXIT:
        return (
            f"error: rank {r.rank} of {size} lost contact with the other ranks and no rank "
            "said why; every rank was stopped: run again to resume"
        )
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        last = r.last_line()
        if last.startswith("error: "):
            return f"error: rank {r.rank} of {size}: {last[len('error: ') :]}"
        why = f"failed with exit code {code}" + (f": {last}" if last else "")
    return (
        f"error: rank {r.rank} of {size} {why}; the other ranks were stopped: "
        "fix the cause and run the same command again to resume"
    )


def kneescope_command(args: Sequence[str]) -> list[str]:
    """``python -m kneescope ARGS`` with this interpreter (one rank's command line)."""
    return [sys.executable, "-m", "kneescope", *args]


def launch_local(
    args: Sequence[str],
    nproc: int,
    *,
    env: Mapping[str, str] | None = None,
    threads: int | None = None,
    poll_s: float = 0.05,
    program: Sequence[str] | None = None,
) -> int:
    """Run ``kneescope ARGS`` as ``nproc`` local ranks and return the exit code.

    Args:
        args: the command line of one rank, e.g. ``["train", "-c", "train.toml"]`` (no
            ``--nproc``).
        program: run ``program + args`` instead of ``kneescope ARGS`` (any command that
            reads the rank variables).
        nproc: number of ranks (>= 1).
        env: base environment (default ``os.environ``).
        threads: CPU threads per rank (``OMP_NUM_THREADS``); default cores / nproc.
        poll_s: how often the ranks are checked (s).

    Returns:
        0 when every rank succeeded; else the failing rank's exit code (128 + signal number
        when it was killed by a signal).

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM, after every rank was stopped.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc} is not a number of processes; use 1 or more")
    base = dict(os.environ if env is None else env)
    port = free_port()
    ranks: list[_Rank] = []
    err_out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
    try:
        for rank in range(nproc):
            child_env = rank_env(base, rank, nproc, port, threads=threads)
            if rank == 0 and sys.stderr.isatty():
                # rank 0's stderr is a pipe: let its progress bar draw as on the terminal
                size = shutil.get_terminal_size()
                child_env.update(TTY_COMPATIBLE="1", TTY_INTERACTIVE="1")
                child_env.setdefault("COLUMNS", str(size.columns))
                child_env.setdefault("LINES", str(size.lines))
            proc = subprocess.Popen(
                [*program, *args] if program is not None else kneescope_command(args),
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=None if rank == 0 else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the ranks
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
            ranks.append(_Rank(rank, proc, err_out if rank == 0 else None))
        return _watch(ranks, poll_s)
    except KeyboardInterrupt:
        if ranks:
            ranks[0].pump(hold_s=0.0)
        for r in ranks:
            r.muted = True
        _stop(ranks)
        raise  # every rank is stopped; the caller reports the interruption
    finally:
        _stop(ranks)
        for r in ranks:
            r.close()


def _watch(ranks: Sequence[_Rank], poll_s: float) -> int:
    """Wait for the ranks; on the first failure stop the others and report it in one line.

    A rank that exits with ``RANK_LOST_EXIT`` only noticed that another rank went away: the
    launcher waits up to ``LOST_GRACE_S`` for the rank that caused it before reporting.
    """
    size = len(ranks)
    lost_since: float | None = None
    with _sigterm_as_interrupt():
        while True:
            for r in ranks:
                r.pump()
            codes = [r.proc.returncode if r.exit_time is not None else None for r in ranks]
            if all(c == 0 for c in codes):
                ranks[0].drain()
                return 0
            failed = [r for r, c in zip(ranks, codes, strict=True) if c not in (None, 0)]
            causes = [r for r in failed if r.proc.returncode != RANK_LOST_EXIT]
            if failed and not causes:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > LOST_GRACE_S or all(
                    c is not None for c in codes
                ):
                    causes = failed
            if causes:
                # the rank that failed first; the others usually failed because it did
                first = min(causes, key=lambda r: (r.exit_time or 0.0, r.rank))
                return _report(ranks, first, size)
            time.sleep(poll_s)


def _report(ranks: Sequence[_Rank], first: _Rank, size: int) -> int:
    """Stop every rank, say which one failed (unless rank 0 said it itself); its exit code."""
    if first.rank != 0:
        ranks[0].muted = True
    _stop(ranks)
    code = first.proc.returncode
    if first.rank == 0 and code not in (RANK_LOST_EXIT,) and code > 0:
        first.drain()
        if first.last_line():
            return code  # it said what went wrong itself
    ranks[0].muted = True
    sys.stderr.write(_describe_failure(first, size) + "\n")
    return code if code > 0 else 128 - code


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the ranks run, SIGTERM to the launcher stops them like Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def srun_command(args: Sequence[str], nproc: int, srun_args: Sequence[str] = ()) -> list[str]:
    """The ``srun`` command line that starts ``kneescope ARGS`` as ``nproc`` Slurm tasks."""
    return [
        "srun",
        f"--ntasks={nproc}",
        "--kill-on-bad-exit=1",
        *srun_args,
        *kneescope_command(args),
    ]


def launch_slurm(args: Sequence[str], nproc: int, srun_args: Sequence[str] = ()) -> int:
    """Run ``kneescope ARGS`` as ``nproc`` Slurm tasks via ``srun``; return srun's exit code.

    Raises:
        InputError: ``srun`` is not installed.
        KeyboardInterrupt: Ctrl-C, after srun was stopped.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc} is not a number of processes; use 1 or more")
    if shutil.which("srun") is None:
        raise InputError(
            "srun not found: --launcher slurm needs Slurm's client tools; "
            "install them or use --launcher local"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.Popen(srun_command(args, nproc, srun_args), env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # srun forwards the first Ctrl-C to the tasks; make sure they are gone
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
