"""The server's handle on one worker process: start it, talk to it, learn how it ended.

Why `subprocess` and not `multiprocessing`'s spawn context: both start a fresh interpreter
(fork + exec; never a bare fork of a kernel that may hold CUDA, threads and locks), but spawn
also re-imports the parent's `__main__` script in the child. A script that calls
`nbserve.serve()` without an `if __name__ == "__main__":` guard would then start servers from
its workers. Here the child runs the package's own entry module and gets the class over the
pipe (by value for notebook classes), so nothing of the user's `__main__` runs twice.

File descriptors: the child inherits exactly two pipe ends (`pass_fds`) plus stdout/stderr,
which are one more pipe whose lines become log records of the service, so a worker never
writes to the kernel's stdout (in a notebook that output lands in whatever cell runs next,
reference/jupyter.md finding 2). Everything is read on the server's event loop.

CPU threads: numeric libraries start one thread per core in every process (OpenMP, MKL,
OpenBLAS, and torch's intra-op pool, which follows `OMP_NUM_THREADS`), so N workers on C cores
would run N × C threads fighting for C cores: on 2 cores, 2 torch workers answered slower than
one inline instance (issue 8). Each worker gets its share instead (`cpu_threads_per_worker`):
`resources.cpu` when the service sets it, else the cores this process may use ÷ workers, at
least 1. A variable the user set (in the environment or the service's `envs`) is kept, and
its value is used for the others.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbserve
from nbserve._runtime.execution.placement import WorkerPlacement
from nbserve._runtime.execution.workers.transport import (
    FrameReader,
    InitMsg,
    ToServer,
    ToWorker,
    encode,
)

__all__ = [
    "CPU_THREAD_VARS",
    "WorkerProcess",
    "available_cores",
    "cpu_threads_per_worker",
    "exit_reason",
]

CPU_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Read once at import by OpenMP (and torch's intra-op pool), MKL and OpenBLAS."""


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def cpu_threads_per_worker(
    cpu: str | int | float | None, workers: int, cores: int | None = None
) -> int:
    """Threads for each worker's numeric libraries: `resources.cpu`, else cores ÷ workers; at least 1.

    `cpu` is Kubernetes' notation, as in BentoML's `resources`: `2`, `"2"`, `1.5` or `"500m"`.
    It is capped at the cores there are: more threads than cores never help (torch caps its
    intra-op pool there too).
    """
    total = cores if cores is not None else available_cores()
    if cpu is not None and not isinstance(cpu, bool):
        text = str(cpu).strip()
        try:
            amount = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            amount = 0.0
        if amount > 0:
            return max(1, min(math.floor(amount), total))
    return max(1, total // max(1, workers))


_LEVELS = {
    name: getattr(logging, name) for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
}
_SIGNAL_HINTS = {
    signal.SIGKILL: "; the kernel's out-of-memory killer also sends this signal",
    signal.SIGSEGV: "; a crash in native code, the worker's log has the Python stack",
}


def exit_reason(worker: int, pid: int | None, code: int | None) -> str:
    """E.g. "worker 1 (pid 4242) was killed by SIGKILL (exit -9; ...)"."""
    who = f"worker {worker}" + (f" (pid {pid})" if pid else "")
    if code is None:
        return f"{who} stopped answering"
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"{who} was killed by signal {-code} (exit {code})"
        return f"{who} was killed by {sig.name} (exit {code}{_SIGNAL_HINTS.get(sig, '')})"
    return f"{who} exited with code {code}"


class _Messages(asyncio.Protocol):
    def __init__(self, reader: FrameReader, on_eof: Callable[[], None]) -> None:
        self._reader = reader
        self._on_eof = on_eof

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_eof()


class _Lines(asyncio.Protocol):
    """The worker's stdout + stderr, line by line, into the service's logger."""

    def __init__(self, worker: WorkerProcess) -> None:
        self._worker = worker
        self._partial = b""

    def data_received(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._worker.log_line(line.decode(errors="replace").rstrip())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._partial:
            self._worker.log_line(self._partial.decode(errors="replace").rstrip())


class WorkerProcess:
    """One started worker process. `on_message(msg)` gets its replies; `on_eof()` fires when it is gone."""

    def __init__(
        self,
        index: int,
        placement: WorkerPlacement,
        *,
        on_message: Callable[[ToServer], None],
        on_eof: Callable[[], None],
        logger: logging.Logger,
        env: dict[str, str] | None = None,
        cpu_threads: int | None = None,
    ) -> None:
        self.index = index
        self.placement = placement
        self._on_message = on_message
        self._on_eof = on_eof
        self._logger = logger
        self._env = env or {}
        self.cpu_threads = cpu_threads
        """Threads for the numeric libraries (None: leave their defaults)."""
        self.thread_env: dict[str, str] = {}
        """`CPU_THREAD_VARS` as the worker sees them (set here or by the user)."""
        self.loading = False
        """The worker has its instructions and is loading the class and running `__init__`."""
        self.proc: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self.output: collections.deque[str] = collections.deque(maxlen=50)
        """The last lines the worker printed (for crash reports)."""
        self.init_error: str | None = None
        """What `__init__` / `on_startup` raised, when the worker reported it."""
        self.init_traceback: str | None = None
        """Its traceback, as text (the frames were in the worker)."""
        self.reaping = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def child_env(self) -> dict[str, str]:
        env = {**os.environ, **self._env, **self.placement.env}
        env["PYTHONUNBUFFERED"] = "1"  # prints reach the log as they happen
        if self.cpu_threads is not None:
            # The user's own setting wins, and sets the others too: torch reads MKL's variable
            # as well as OpenMP's, so a lone OMP_NUM_THREADS=1 next to our MKL_NUM_THREADS=4
            # would give it 4 threads.
            user = next((env[name] for name in CPU_THREAD_VARS if env.get(name)), None)
            for name in CPU_THREAD_VARS:
                env.setdefault(name, user or str(self.cpu_threads))
        self.thread_env = {name: env[name] for name in CPU_THREAD_VARS if name in env}
        # The worker imports nbserve before it learns the server's sys.path: make sure it can,
        # even when the server found nbserve through a sys.path edit (a checkout in a notebook).
        # Never for an installed nbserve: site-packages ahead of the standard library could
        # shadow it with a backport.
        root = Path(nbserve.__file__).resolve().parents[1]  # the directory holding nbserve/
        if root.name not in ("site-packages", "dist-packages"):
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(root), env.get("PYTHONPATH", "")) if p
            )
        return env

    async def start(self, init: InitMsg) -> None:
        """Spawn the process and send it `init`."""
        loop = asyncio.get_running_loop()
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        log_r, log_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nbserve._runtime.execution.workers.entry",
                    str(cmd_r),
                    str(res_w),
                    str(os.getpid()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_w,
                stderr=log_w,
                pass_fds=(cmd_r, res_w),
                env=self.child_env(),
                close_fds=True,
            )
        except BaseException:
            for fd in (cmd_w, res_r, log_r):
                os.close(fd)
            raise
        finally:
            for fd in (cmd_r, res_w, log_w):  # the child's ends: ours must close for EOF to work
                os.close(fd)
        writer, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(cmd_w, "wb", buffering=0)
        )
        self._writer = writer
        reader, _ = await loop.connect_read_pipe(
            lambda: _Messages(FrameReader(self._on_message), self._on_eof),
            os.fdopen(res_r, "rb", buffering=0),
        )
        lines, _ = await loop.connect_read_pipe(
            lambda: _Lines(self), os.fdopen(log_r, "rb", buffering=0)
        )
        self._transports = [writer, reader, lines]
        self.send(init)

    def send(self, message: ToWorker) -> bool:
        """Queue `message` for the worker; False when it can no longer be reached."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        for piece in encode(message):
            writer.write(piece)
        return True

    def log_line(self, line: str) -> None:
        self.output.append(line)
        level_name, _, rest = line.partition(" ")
        level = _LEVELS.get(level_name)
        if level is None:  # a print, or a line of a traceback
            self._logger.info("[worker %d] %s", self.index, line)
        else:
            self._logger.log(level, "[worker %d] %s", self.index, rest)

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code once the process has ended; kills it after `timeout` s (then -9)."""
        proc = self.proc
        if proc is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.002
        while proc.poll() is None:  # bounded: the kill below ends it
            if loop.time() >= deadline:
                proc.kill()
                deadline = loop.time() + 5.0
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        self.close()
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._writer = None

    def __repr__(self) -> str:
        return f"<WorkerProcess {self.index} pid={self.pid} on {self.placement.describe()}>"
