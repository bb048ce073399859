"""A `Deployment` is one started version of a service: the service, its executor, its traffic gate,
metrics and route table.

The server holds exactly one current deployment and reads it once per request (in its router),
so a hot swap is an attribute assignment: requests that started on the old deployment finish on
it, new ones go to the new one, and the old one is stopped once it has drained. Everything a
request needs (routes, metric label children, traffic limits) is built here, once, at start.

Every API request goes through `call()` / `stream()`; a batchable API's call goes through its
`APIBatcher` (`batchers`, keyed by API name).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from nbserve._runtime.execution.batching.api_batcher import APIBatcher, batchers_for
from nbserve._runtime.execution.command import CommandProcess, has_command
from nbserve._runtime.execution.composition import DependencyMode, DependencyPools
from nbserve._runtime.execution.executor import Executor, InlineExecutor
from nbserve._runtime.execution.task_store import TaskStore, task_concurrency
from nbserve._runtime.execution.traffic import RouteStats, Traffic
from nbserve._runtime.http.asgi import Lifespan
from nbserve._runtime.http.system import SystemHandler, system_routes
from nbserve._runtime.http.tasks import TaskRoute, task_routes
from nbserve._runtime.metrics import ServiceMetrics
from nbserve._sdk.asgi import MountedApp
from nbserve.exceptions import ServiceUnavailable

if TYPE_CHECKING:
    from nbserve._runtime.logs import ServiceLog
    from nbserve._sdk.context import Context
    from nbserve._sdk.method import APIMethod
    from nbserve._sdk.service import Service

__all__ = ["Deployment", "DeploymentState", "executor_for"]

DeploymentState = Literal["created", "starting", "running", "failed", "stopping", "stopped"]
# A request admitted while its deployment drains ("stopping") still runs: it entered before the
# switch, and the executor stays up until the drain ends.
_NOT_STARTED = frozenset({"created", "starting", "failed", "stopped"})


def executor_for(
    service: Service[Any], workers: int | None, logger: logging.Logger | None = None
) -> Executor:
    """`InlineExecutor` without workers; worker processes (`nbserve._runtime.execution.workers`) with.

    `workers` (from `serve(workers=...)` / `--workers`) overrides the service's own `workers`.
    """
    if workers is None:
        workers = service.config.worker_count
    if workers is None or has_command(service):  # a command service: the command is the worker
        return InlineExecutor(service)
    import importlib

    # Looked up by name: the worker pool is built separately and may be absent from a build.
    process_executor = getattr(
        importlib.import_module("nbserve._runtime.execution.workers"), "ProcessExecutor", None
    )
    if process_executor is None:
        msg = f"workers={workers!r}: worker processes are not available in this nbserve build; serve without workers (the instance runs in this process)"
        raise ServiceUnavailable(msg)
    executor: Executor = process_executor(service, workers=workers, logger=logger)
    return executor


class Deployment:
    """One started version of a service (see the module docstring)."""

    def __init__(
        self,
        service: Service[Any],
        *,
        log: ServiceLog,
        executor: Executor | None = None,
        workers: int | None = None,
        debug: bool = False,
        dependencies: DependencyMode = "auto",
    ) -> None:
        config = service.config
        self.service = service
        self.log = log
        self.executor = (
            executor if executor is not None else executor_for(service, workers, log.logger)
        )
        self.prefix = config.path_prefix
        # Depended services with their own workers/resources: their own pools (composition.py).
        self.dependencies = DependencyPools(service, log.logger, dependencies)
        # `cmd=` / `__command__`: the command runs as the worker, other paths proxy to it.
        self.command = CommandProcess(service, log.logger) if has_command(service) else None
        self.state: DeploymentState = "created"
        self.error: BaseException | None = None
        self.shared: dict[str, Any] = {}
        """`ctx.state`: one dict per deployment, shared by its requests."""
        self.traffic = Traffic(
            timeout=config.timeout,
            max_concurrency=config.max_concurrency,
            on_cleanup_failure=self._log_cleanup_failure,
        )
        self.api_routes: dict[str, APIMethod[..., Any]] = {
            self.prefix + api.route: api for api in service.apis.values()
        }
        self.stats: dict[str, RouteStats] = {route: RouteStats() for route in self.api_routes}
        self.metrics = ServiceMetrics(
            service.bento_name,
            api_names=list(self.api_routes),
            max_batch_size={
                api.name: api.max_batch_size for api in service.apis.values() if api.batchable
            },
            runner_name=service.name,
        )
        self.batchers: dict[str, APIBatcher] = dict(
            batchers_for(service, self.executor, self.metrics, log.logger)
        )
        self.system_routes: dict[str, type[SystemHandler]] = system_routes(self.prefix)
        self.system_cache: dict[str, bytes] = {}
        """Bodies of the system routes that never change (schema, OpenAPI, docs page)."""
        # `@task` APIs: their extra routes and the store of submitted tasks (http/tasks.py, execution/task_store.py).
        self.task_routes: dict[str, TaskRoute] = task_routes(self.prefix, service.apis.values())
        self.tasks = TaskStore(
            self.call,
            concurrency=task_concurrency(service, workers),
            logger=log.logger,
            expose_errors=debug,
        )
        # ASGI apps mounted on the service (`asgi_app`), under the prefix, with their lifespan.
        self.mounts = [
            MountedApp(m.app, self.prefix + m.path, m.name) for m in service.mounted_apps
        ]
        self.lifespan = Lifespan(self.mounts)
        self._started: asyncio.Future[None] | None = None
        self.started_at: float | None = None

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.executor.ready

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """`__init__` and `on_startup`; on failure the executor is stopped and the error re-raised."""
        self._started = asyncio.get_running_loop().create_future()
        self.state = "starting"
        began = time.perf_counter()
        try:
            # First: the workers inherit the pools' endpoints (and the GPUs they leave).
            await self.dependencies.start(self.executor)
            await self.executor.start()
            await self.lifespan.startup()
            if self.command is not None:
                await self.command.start(getattr(self.executor, "instance", None))
        except BaseException as exc:
            self.state = "failed"
            self.error = exc
            self._started.set_result(None)
            try:
                await self.executor.stop()
            except Exception:
                self.log.logger.exception(
                    "%s: stopping after a failed start also failed", self.service.name
                )
            if self.command is not None:
                await self.command.stop()
            await self.dependencies.stop()
            raise
        if self._stopped_meanwhile():  # stop() came while __init__ / on_startup ran
            await self.executor.stop()
            await self.dependencies.stop()
            self._started.set_result(None)
            return
        self.state = "running"
        self.started_at = time.time()
        self._started.set_result(None)
        self.log.logger.info("%s started in %.3fs", self.service.name, time.perf_counter() - began)

    def _stopped_meanwhile(self) -> bool:
        return self.state in ("stopping", "stopped")

    async def wait_started(self) -> None:
        """For requests that arrive while starting: wait, or 503 if the start failed."""
        if self.state == "running":
            return
        if self._started is not None and self.state == "starting":
            await asyncio.shield(self._started)
        if not self.ready:
            reason = (
                f": {type(self.error).__name__}: {self.error}" if self.error is not None else ""
            )
            msg = f"Service {self.service.name} is not running ({self.state}{reason}); see handle.logs() or the server log"
            raise ServiceUnavailable(msg)

    async def stop(self, timeout: float) -> bool:
        """Wait up to `timeout` s for in-flight work, then `on_shutdown`; False if work remained."""
        if self.state in ("stopping", "stopped"):
            return True
        was_running = self.state == "running"
        self.state = "stopping"
        deadline = time.monotonic() + timeout
        drained = await self.traffic.wait_idle(timeout)
        if not drained:
            self.log.logger.warning(
                "%s: %d request(s) still running after %.1fs; stopping anyway",
                self.service.name,
                self.traffic.active,
                timeout,
            )
        await self.tasks.stop(max(deadline - time.monotonic(), 0.0))  # pending ones: canceled
        for batcher in self.batchers.values():
            await batcher.stop()
        try:
            await self.lifespan.shutdown()
        except Exception:
            self.log.logger.exception("%s: a mounted app's shutdown failed", self.service.name)
        if was_running:
            try:
                await asyncio.wait_for(self.executor.stop(), max(deadline - time.monotonic(), 1.0))
            except asyncio.TimeoutError:
                self.log.logger.warning(
                    "%s: on_shutdown did not finish in time; stopping anyway", self.service.name
                )
            except Exception:
                self.log.logger.exception("%s: on_shutdown failed", self.service.name)
        if self.command is not None:
            await self.command.stop()
        await self.dependencies.stop(max(deadline - time.monotonic(), 1.0))
        self.state = "stopped"
        return drained

    # --- requests -------------------------------------------------------------------------------
    async def call(self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context) -> Any:
        if self.state in _NOT_STARTED:
            await self.wait_started()
        if self.batchers:
            batcher = self.batchers.get(api.name)
            if batcher is not None:
                return await batcher.submit(kwargs, ctx)
        return await self.executor.call(api, kwargs, ctx)

    async def stream(
        self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context
    ) -> AsyncIterator[Any]:
        if self.state in _NOT_STARTED:
            await self.wait_started()
        return self.executor.stream(api, kwargs, ctx)

    # --- reporting ------------------------------------------------------------------------------
    def stats_summary(self) -> dict[str, dict[str, float | int]]:
        return {route: stats.summary() for route, stats in self.stats.items()}

    def _log_cleanup_failure(self) -> None:
        self.log.logger.exception("%s: cleaning up after a request failed", self.service.name)

    def __repr__(self) -> str:
        return f"<Deployment {self.service.name} {self.state}>"
