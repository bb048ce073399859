"""`ProcessExecutor`: the `Executor` interface (docs/internals.md) over a pool of worker processes.

- **Start**: `on_deployment` hooks run once, here, then every worker starts at once, each on the
  devices `plan_placement` gave it. `start()` returns as soon as one worker is ready (that is
  when `/readyz` turns 200); the others join as they finish `__init__`.
- **Calls** are routed by `routing.Router` (least-loaded worker, `threads` sync calls each).
- **Crashes**: a worker that dies (exception in `__init__`, segfault, OOM kill, kill -9) is
  logged with its exit reason; its in-flight calls fail at once with a 503 that names the
  reason, and it is started again after a backoff (0.1 s, doubling, at most 10 s). A worker
  whose `__init__` fails `MAX_INIT_FAILURES` times in a row is not started again, and when no
  worker is left, every call fails with the `__init__` error instead of waiting.
- **Stop**: workers finish their calls, run `on_shutdown` and exit; one that does not is killed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

from nbserve._runtime.execution.invoke import Signature
from nbserve._runtime.execution.placement import (
    Device,
    WorkerPlacement,
    detect_gpus,
    match_gpu_type,
    plan_placement,
)
from nbserve._runtime.execution.workers.calls import Router, WorkerSlot
from nbserve._runtime.execution.workers.process import (
    WorkerProcess,
    cpu_threads_per_worker,
    exit_reason,
)
from nbserve._runtime.execution.workers.shipping import pack_service
from nbserve._runtime.execution.workers.transport import InitMsg, StopMsg, ToServer
from nbserve.exceptions import WorkerError

if TYPE_CHECKING:
    from nbserve._runtime.execution.executor import Probe
    from nbserve._sdk.context import Context
    from nbserve._sdk.method import APIMethod
    from nbserve._sdk.service import Service

__all__ = ["MAX_INIT_FAILURES", "ProcessExecutor"]

MAX_INIT_FAILURES = 3
_BACKOFF_S, _MAX_BACKOFF_S = 0.1, 10.0
_STABLE_S = 30.0
"""A worker that served this long before crashing starts its backoff from the beginning again."""
_HOOKS = ("__is_ready__", "__is_alive__", "__metrics__")


class ProcessExecutor:
    """Run a service in `workers` worker processes (see the module docstring).

    `devices` replaces GPU detection (tests, or a deliberate subset); `strict_gpu` makes a
    missing GPU an error rather than a warning (default: when `resources.gpu_type` is set).
    """

    def __init__(
        self,
        service: Service[Any],
        *,
        workers: int | Literal["cpu_count"] | None = None,
        threads: int | None = None,
        strict_gpu: bool | None = None,
        devices: list[Device] | None = None,
        logger: logging.Logger | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        count = workers if workers is not None else service.config.workers
        if count == "cpu_count":
            count = os.cpu_count() or 1
        if count is None or isinstance(count, bool) or not isinstance(count, int) or count < 1:
            msg = f"workers={count!r} must be a positive integer or 'cpu_count'"
            raise WorkerError(msg)
        self.service = service
        self.workers = count
        self.threads = threads if threads is not None else service.config.threads
        resources = service.config.resources
        self.cpu_threads = cpu_threads_per_worker(resources.get("cpu"), count)
        """OMP/MKL/OpenBLAS (and so torch) threads per worker, unless the user set them."""
        self.strict_gpu = strict_gpu if strict_gpu is not None else bool(resources.get("gpu_type"))
        self._devices = devices
        self.logger = logger or logging.getLogger(f"nbserve.service.{service.name}")
        self.stop_timeout = stop_timeout
        self.ready = False
        self.batch_slots = 1
        """How many batches may be in flight: one per ready worker (at least 1, to wait for one)."""
        self.capacity_listeners: list[Callable[[], None]] = []
        """Called when a worker becomes ready or goes away (batch dispatchers re-check)."""
        self.router = Router(self.threads, self.logger, self._unavailable)
        self._init: InitMsg | None = None
        self._first_ready: asyncio.Future[None] | None = None
        self._closing = False
        self._hooks: dict[str, Signature] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def slots(self) -> list[WorkerSlot]:
        return self.router.slots

    # --- reporting ------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """One entry per worker: index, state, pid, devices, restarts, last error, calls in flight."""
        return [
            {
                "index": s.index,
                "state": s.state,
                "pid": s.process.pid if s.process is not None and s.state != "stopped" else None,
                "devices": s.placement.describe(),
                "cuda_visible_devices": s.placement.env.get("CUDA_VISIBLE_DEVICES"),
                "restarts": s.restarts,
                "error": s.error,
                "in_flight": len(s.calls),
                **_start_progress(s),
            }
            for s in self.slots
        ]

    def metrics_lines(self) -> str:
        """Prometheus lines for `/metrics`: each worker's state, pid and devices, and its restarts."""
        name = _label(self.service.name)
        info = [
            "# HELP nbserve_worker_info A worker process of the service: 1 per worker, its details in labels.",
            "# TYPE nbserve_worker_info gauge",
        ]
        restarts = [
            "# HELP nbserve_worker_restarts_total How many times the worker was started again after it ended.",
            "# TYPE nbserve_worker_restarts_total counter",
        ]
        for s in self.status():
            labels = f'service_name="{name}",worker_index="{s["index"]}"'
            details = f'state="{s["state"]}",pid="{s["pid"] or ""}",devices="{_label(s["devices"])}",cuda_visible_devices="{_label(s["cuda_visible_devices"] or "")}"'
            info.append(f"nbserve_worker_info{{{labels},{details}}} 1")
            restarts.append(f"nbserve_worker_restarts_total{{{labels}}} {s['restarts']}")
        return "\n".join([*info, *restarts, ""])

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for hook in self.service.deployment_hooks:  # once, before any worker exists
            result = await loop.run_in_executor(None, hook)
            if inspect.isawaitable(result):
                await result
        placements = await self._plan(loop)
        self._init = self._init_message()
        self._first_ready = loop.create_future()
        # Retrieved here, so that a failure after start() returned is never "never retrieved".
        self._first_ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.router.slots = [WorkerSlot(p.worker, p) for p in placements]
        for slot in self.slots:
            self.logger.info("starting worker %d on %s", slot.index, slot.placement.describe())
        await asyncio.gather(*(self._spawn(slot) for slot in self.slots))
        await asyncio.shield(self._first_ready)  # the __init__ error when every worker gave up

    async def _plan(self, loop: asyncio.AbstractEventLoop) -> list[WorkerPlacement]:
        gpu = self.service.config.gpu
        devices: list[Device] = []
        if gpu > 0:
            if self._devices is not None:
                devices = self._devices
            else:  # NVML or nvidia-smi: may take a moment, never on the loop
                devices = await loop.run_in_executor(None, detect_gpus)
            gpu_type = self.service.config.resources.get("gpu_type")
            if gpu_type and devices:
                matching = match_gpu_type(devices, gpu_type)
                if not matching:
                    names = ", ".join(d.describe() for d in devices)
                    msg = f"resources.gpu_type={gpu_type!r} matches none of the visible GPUs ({names}); fix gpu_type or drop it"
                    raise WorkerError(msg)
                devices = matching
        return plan_placement(gpu, self.workers, devices, self.strict_gpu, warn=self.logger.warning)

    def _init_message(self) -> InitMsg:
        apis = {api.name: Signature.of(api) for api in self.service.apis.values()}
        # Probes and __metrics__ run on the worker's loop thread, never queued behind API calls;
        # `__metrics__(text)` takes the text positionally, as a root input does.
        self._hooks = {
            name: Signature(
                attr=name,
                is_async=True,
                is_stream=False,
                ctx_param=None,
                root="text" if name == "__metrics__" else None,
            )
            for name in _HOOKS
            if callable(getattr(self.service.inner, name, None))
        }
        return InitMsg(
            kind="init",
            service=pack_service(self.service),
            apis={**apis, **self._hooks},
            startup=list(self.service.startup_hooks),
            shutdown=list(self.service.shutdown_hooks),
            sys_path=[p for p in sys.path if isinstance(p, str)],
            worker=0,
            threads=self.threads,
            name=self.service.name,
        )

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def _spawn(self, slot: WorkerSlot) -> None:
        slot.respawn = None
        if self._closing:
            return
        assert self._init is not None
        slot.state = "starting" if slot.restarts == 0 else "restarting"
        process = WorkerProcess(
            slot.index,
            slot.placement,
            on_message=lambda msg: self._on_message(slot, process, msg),
            on_eof=lambda: self._on_eof(slot, process),
            logger=self.logger,
            env={e["name"]: e["value"] for e in self.service.config.envs if "value" in e},
            cpu_threads=self.cpu_threads,
        )
        slot.process = process
        try:
            await process.start({**self._init, "worker": slot.index})
        except OSError as exc:  # could not even start an interpreter: too many processes or fds
            slot.error = f"worker {slot.index} could not be started: {exc}"
            self.logger.error("%s", slot.error)
            slot.state = "failed"
            self._settle()
            return
        if self._stopping():  # stop() ran while this one was being started
            process.kill()

    async def stop(self) -> None:
        self._closing = True
        self.ready = False
        waits = []
        for slot in self.slots:
            if slot.respawn is not None:
                slot.respawn.cancel()
                slot.respawn = None
            process = slot.process
            if process is None or slot.state in ("failed", "stopped"):
                slot.state = "stopped"
                continue
            # A ready worker drains and runs on_shutdown; one still in __init__ has nothing to shut.
            if slot.state != "ready" or not process.send(
                StopMsg(kind="stop", timeout=self.stop_timeout)
            ):
                process.kill()
            slot.state = "stopping"
            waits.append(self._await_stop(slot, process))
        await asyncio.gather(*waits)
        self.router.fail_waiters(WorkerError(f"{self.service.name} is stopping"))

    async def _await_stop(self, slot: WorkerSlot, process: WorkerProcess) -> None:
        await process.wait_exit(self.stop_timeout + 5.0)
        slot.state = "stopped"

    # --- what the workers say -------------------------------------------------------------------
    def _on_message(self, slot: WorkerSlot, process: WorkerProcess, msg: ToServer) -> None:
        if slot.process is not process:
            return  # a late message from a process already replaced
        if (
            msg["kind"] == "loading"
        ):  # start progress: the worker is loading the class, __init__ next
            process.loading = True
        elif msg["kind"] == "ready":
            slot.state = "stopping" if self._closing else "ready"
            slot.ready_at = asyncio.get_running_loop().time()
            slot.init_failures = 0
            slot.error = None
            self.logger.info(
                "worker %d ready (pid %d) on %s", slot.index, msg["pid"], slot.placement.describe()
            )
            self._settle()
        elif msg["kind"] == "init_failed":
            process.init_error = (
                f"{self.service.name}.__init__ failed in worker {slot.index}: {msg['error']}"
            )
            self.logger.error("%s\n%s", process.init_error, msg["traceback"].rstrip())
            process.init_traceback = msg["traceback"].rstrip()
        elif msg["kind"] != "stopped":  # result, error, item or end: the answer to a call
            self.router.deliver(slot, msg)

    def _on_eof(self, slot: WorkerSlot, process: WorkerProcess) -> None:
        if slot.process is process and not process.reaping:
            process.reaping = True
            self._background(self._reap(slot, process))

    async def _reap(self, slot: WorkerSlot, process: WorkerProcess) -> None:
        """The worker's pipe closed: learn its exit code, fail its calls, start it again or give up."""
        code = await process.wait_exit(5.0)
        was_ready = slot.state in ("ready", "stopping")
        reason = exit_reason(slot.index, process.pid, code)
        self.router.fail_calls(slot, reason)
        if self._closing or slot.state in ("stopping", "stopped"):
            slot.state = "stopped"
            self._settle()
            return
        loop = asyncio.get_running_loop()
        if was_ready:
            stable = loop.time() - slot.ready_at > _STABLE_S
            slot.crashes = 1 if stable else slot.crashes + 1
            slot.error = reason
            tail = "\n".join(process.output)
            self.logger.error(
                "%s; restarting it%s", reason, f"\nlast output:\n{tail}" if tail else ""
            )
        else:  # an exception in __init__ (reported), or a death there (segfault, OOM kill)
            slot.init_failures += 1
            slot.error = process.init_error or f"{reason} during {self.service.name}.__init__"
            if process.init_error is None:
                self.logger.error("%s", slot.error)
        if not was_ready and slot.init_failures >= MAX_INIT_FAILURES:
            slot.state = "failed"
            slot.error = f"{slot.error} (gave up after {slot.init_failures} attempts; fix __init__ and start the service again)"
            self.logger.error("worker %d: %s", slot.index, slot.error)
            self._settle()
            return
        attempt = slot.crashes if was_ready else slot.init_failures
        delay = min(_BACKOFF_S * 2 ** max(attempt - 1, 0), _MAX_BACKOFF_S)
        slot.state = "restarting"
        slot.restarts += 1
        slot.respawn = loop.call_later(delay, lambda: self._background(self._spawn(slot)))
        self._settle()

    def _settle(self) -> None:
        """Recompute readiness after a worker changed state; wake whoever waits on it."""
        ready = sum(1 for s in self.slots if s.state == "ready")
        self.ready = not self._closing and ready > 0
        self.batch_slots = max(1, ready)
        first = self._first_ready
        if self.ready:
            if first is not None and not first.done():
                first.set_result(None)
            self.router.wake_all()
        elif all(s.state in ("failed", "stopped") for s in self.slots):
            error = WorkerError(self._failure_text())
            _note_init_traceback(error, self.slots)
            if first is not None and not first.done():
                first.set_exception(error)
            self.router.fail_waiters(WorkerError(str(error)))
        for listener in self.capacity_listeners:
            listener()

    def _failure_text(self) -> str:
        errors = sorted({s.error for s in self.slots if s.error})
        return f"{self.service.name}: no worker is running: " + ("; ".join(errors) or "all stopped")

    def _stopping(self) -> bool:
        return self._closing

    def _unavailable(self) -> str | None:
        """Why a call cannot even wait for a worker, or None."""
        if self._closing:
            return f"{self.service.name} is stopping; retry against the new deployment"
        if not self.slots:
            return f"{self.service.name} has not started its workers yet"
        if all(s.state in ("failed", "stopped") for s in self.slots):
            return self._failure_text()
        return None

    # --- the Executor interface -----------------------------------------------------------------
    async def call(self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context) -> Any:
        # Arguments are bound in the worker (invoke.Signature.bind), as the inline executor does.
        return await self.router.call(
            api.name, not api.is_async, kwargs, ctx if api.ctx_param else None
        )

    def stream(
        self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context
    ) -> AsyncIterator[Any]:
        return self.router.stream(
            api.name, not api.is_async, kwargs, ctx if api.ctx_param else None
        )

    async def check(self, probe: Probe) -> bool:
        if not self.ready:
            return False
        if probe not in self._hooks:
            return True
        return bool(await self.router.call(probe, False, {}, None))

    async def metrics_text(self, text: str) -> str:
        text += self.metrics_lines()
        if "__metrics__" not in self._hooks or not self.ready:
            return text
        return str(await self.router.call("__metrics__", False, {"text": text}, None))

    def __repr__(self) -> str:
        states = ", ".join(f"{s.index}:{s.state}" for s in self.slots)
        return f"<ProcessExecutor {self.service.name} [{states}]>"


def _note_init_traceback(error: WorkerError, slots: list[WorkerSlot]) -> None:
    """Attach the worker's `__init__` traceback (text: its frames are in another process), so
    whoever shows the error (the notebook trims it to the user's frames) can show the cause."""
    for slot in slots:
        process = slot.process
        if process is not None and process.init_traceback and hasattr(error, "add_note"):
            error.add_note(f"{process.init_error or 'in the worker'}:\n{process.init_traceback}")
            return


def _start_progress(slot: WorkerSlot) -> dict[str, Any]:
    """For the notebook's start display: `phase` (started / loading / ready, or the slot's
    state otherwise) and the worker's CPU threads (`OMP_NUM_THREADS` as the worker sees it)."""
    process = slot.process
    phase: str = slot.state
    if slot.state in ("starting", "restarting"):  # spawned or being spawned: "started"
        phase = "loading" if process is not None and process.loading else "started"
    threads = process.thread_env.get("OMP_NUM_THREADS") if process is not None else None
    return {"phase": phase, "cpu_threads": int(threads) if threads and threads.isdigit() else None}


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


if TYPE_CHECKING:
    from nbserve._runtime.execution.executor import Executor

    def _is_an_executor(executor: ProcessExecutor) -> Executor:
        return executor  # mypy checks ProcessExecutor against the protocol here
