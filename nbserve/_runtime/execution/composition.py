"""Composition across processes: a depended service with its own `workers`/`resources` runs in
its own worker pool inside the same server, and is called through it with batching intact.

How it is wired (chosen for robustness: nothing new on the worker wire protocol, and the call
path is the one every client already uses):
- When a deployment starts, before its own executor, each depended service (`depends(Svc)`)
  that runs apart gets an internal server: a normal nbserve `Server` on 127.0.0.1, port 0, with
  a fresh random bearer token, serving that service with its own worker pool (placement, so its
  own GPUs) and its own dispatchers for its batchable APIs. Its own dependencies compose the
  same way, recursively.
- Its URL and token are registered by service name (`_sdk/remote.py`): in this process's
  table, read by `depends()` on the inline instance, and in the environment variable
  `NBSERVE_DEPENDENCY_ENDPOINTS`, which the main service's worker processes inherit because
  they are spawned after the depended pools started. So `self.dep.api(...)` (sync, blocking
  client) and `await self.dep.to_async.api(...)` (async client on the caller's loop) reach the
  pool over loopback HTTP from the inline instance and from inside workers alike.
- The depended pools show in `handle.stats()` (their routes, as `"<Service> <route>"`),
  `handle.dependencies()` (URL, workers with pids and devices) and the main `/metrics` (their
  series merged into the same metric families; labels keep the services apart).
- They stop after the main executor stopped (its `on_shutdown` may still call them).

A depended service runs apart when it declares `workers=` or `resources=`, except in a notebook
kernel, where the in-process instance stays (fast edit-run loops, no extra processes) unless
asked: `serve(..., dependencies="workers")` (`%%serve --dependencies workers`) or
`NBSERVE_DEPENDENCIES=workers`. `"inline"` keeps every dependency in process. The argument wins
over the environment variable, which applies when the argument is `"auto"` (the default).
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
from typing import TYPE_CHECKING, Any, Literal, get_args

from nbserve._kernel import in_kernel
from nbserve._sdk.remote import Endpoint, register_endpoint, unregister_endpoint

if TYPE_CHECKING:
    import logging

    from nbserve._runtime.execution.placement import Device
    from nbserve._runtime.server import Server
    from nbserve._sdk.service import Service

__all__ = [
    "DependencyMode",
    "DependencyPools",
    "check_mode",
    "devices_needed",
    "merge_metrics",
    "runs_apart",
    "share_devices",
]

MODE_ENV = "NBSERVE_DEPENDENCIES"
DependencyMode = Literal["auto", "inline", "workers"]
_MODES: tuple[str, ...] = get_args(DependencyMode)
START_TIMEOUT_S = 300.0


def check_mode(mode: object) -> DependencyMode:
    """`mode` if it is one of the modes, else a ValueError naming the value and the choices."""
    if mode not in _MODES:
        msg = f"dependencies={mode!r}: use 'auto' (own worker pools for depended services that declare workers or resources, except in a notebook), 'workers' (also in a notebook) or 'inline' (every dependency in this process)"
        raise ValueError(msg)
    return mode  # type: ignore[return-value]  # checked against the Literal's values above


def runs_apart(service: Service[Any], mode: DependencyMode = "auto") -> bool:
    """Whether depended `service` gets its own worker pool (see the module docstring)."""
    if mode == "auto":
        mode = check_mode(os.environ.get(MODE_ENV, "").strip().lower() or "auto")
    if mode == "inline":
        return False
    config = service.config
    if config.workers is None and not config.resources:
        return False
    return mode == "workers" or not in_kernel()


def devices_needed(gpu_per_worker: float, workers: int) -> int:
    """How many devices `plan_placement` uses for this many workers at this share (0: none)."""
    if gpu_per_worker <= 0:
        return 0
    if gpu_per_worker >= 1:
        return math.ceil(gpu_per_worker) * workers
    return math.ceil(workers / math.floor(1 / gpu_per_worker + 1e-6))


def share_devices(
    demands: list[int], devices: list[Device], main_need: int = 0
) -> tuple[list[list[Device] | None], list[Device] | None]:
    """Disjoint GPUs for the depended pools, taken from the end of the list; the rest for the
    main service (which needs `main_need`). None (plan over every device, as without
    composition) when they do not all fit."""
    if sum(demands) + main_need > len(devices) or not any(demands):
        return [None] * len(demands), None
    slices: list[list[Device] | None] = []
    end = len(devices)
    for need in demands:
        slices.append(devices[end - need : end] if need else None)
        end -= need
    return slices, list(devices[:end])


class DependencyPools:
    """The internal servers of one deployment's depended services that run apart."""

    def __init__(
        self, service: Service[Any], logger: logging.Logger, mode: DependencyMode = "auto"
    ) -> None:
        self.logger = logger
        self.services: list[Service[Any]] = []
        self._declared = list(service.dependencies.values())
        self._acquired = False
        seen: set[str] = set()
        for dependency in self._declared:
            on = dependency.on
            if on is not None and on.name not in seen and runs_apart(on, mode):
                seen.add(on.name)
                self.services.append(on)
        self.servers: dict[str, Server] = {}
        self._endpoints: dict[str, Endpoint] = {}

    async def start(self, main_executor: object = None) -> None:
        """Start every pool and register its endpoint; on a failure, stop the ones started.

        Pools asking for GPUs get disjoint devices, and `main_executor` (a worker pool) the
        rest, when they all fit; otherwise every pool plans over every device, as before.
        """
        for dependency in self._declared:
            dependency.acquire()
        self._acquired = True
        await self._resolve_deployments()
        if not self.services:
            return
        slices: list[list[Device] | None] = [None] * len(self.services)
        demands = [
            devices_needed(dep.config.gpu, dep.config.worker_count or 1) for dep in self.services
        ]
        if any(demands):
            from nbserve._runtime.execution.placement import detect_gpus

            devices = await asyncio.to_thread(detect_gpus)
            main_need = 0
            if _plans_devices(main_executor):
                main_service: Any = getattr(main_executor, "service", None)
                main_workers = getattr(main_executor, "workers", 1)
                if main_service is not None and isinstance(main_workers, int):
                    main_need = devices_needed(main_service.config.gpu, main_workers)
            slices, rest = share_devices(demands, devices, main_need)
            if rest is not None and _plans_devices(main_executor):
                # ProcessExecutor's `devices=` ("a deliberate subset"), set before it starts.
                main_executor._devices = rest  # type: ignore[attr-defined]
        try:
            for dep, devices_for_dep in zip(self.services, slices, strict=True):
                await self._start_one(dep, devices_for_dep)
        except BaseException:
            await self.stop()
            raise

    async def _resolve_deployments(self) -> None:
        """`depends(deployment=...)`: found here (this kernel's registry knows the token) and
        registered, so the main service's workers reach it too. Not found yet: looked up again
        on first use, which raises the error naming where it looked."""
        from nbserve._sdk.remote import deployment_key, resolve_deployment
        from nbserve.exceptions import NotFound

        for dependency in self._declared:
            name = dependency.deployment
            if name is None:
                continue
            try:
                remote = await asyncio.to_thread(resolve_deployment, name)
            except NotFound:
                continue
            endpoint = Endpoint(remote.url, remote.token, remote.timeout)
            self._endpoints[deployment_key(name)] = endpoint
            register_endpoint(deployment_key(name), endpoint)

    async def _start_one(self, dep: Service[Any], devices: list[Device] | None) -> None:
        from nbserve._runtime.server import Server

        workers = dep.config.worker_count or 1
        token = secrets.token_urlsafe(24)
        server = Server(dep, host="127.0.0.1", port=0, workers=workers, token=token)
        if devices is not None and _plans_devices(server.deployment.executor):
            server.deployment.executor._devices = devices  # type: ignore[attr-defined]
        self.servers[dep.name] = server
        self.logger.info(
            "starting depended service %s in its own pool of %d worker(s) at %s",
            dep.name,
            workers,
            server.url,
        )
        server.start()
        await asyncio.to_thread(server.wait_ready, START_TIMEOUT_S)
        # The pool's server answers 504 at its own traffic.timeout; the client waits a bit more.
        endpoint = Endpoint(server.url, token, dep.config.timeout + 5.0)
        self._endpoints[dep.name] = endpoint
        register_endpoint(dep.name, endpoint)

    async def stop(self, timeout: float = 30.0) -> None:
        stopped = list(self._endpoints.items())
        for name, endpoint in stopped:
            unregister_endpoint(name, endpoint)
        self._endpoints.clear()
        # The clients this process made: to this deployment's pools at once (they stop now);
        # to url=/deployment= services when no other deployment (a hot swap's) still uses them.
        acquired, self._acquired = self._acquired, False
        for dependency in self._declared:
            try:
                for name, endpoint in stopped:
                    if name in self.servers:  # a pool (not a deployment= service): it stops
                        await dependency.release(endpoint.url)
                if acquired:
                    await dependency.release_if_unused()
            except Exception:
                self.logger.exception(
                    "closing the clients of depends(%s) failed", dependency.on_name
                )
        servers, self.servers = list(self.servers.values()), {}
        for server in servers:
            try:
                await asyncio.to_thread(server.stop, timeout)
            except Exception:
                self.logger.exception("stopping depended service %s failed", server.name)

    # --- reporting ------------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, float | int]]:
        """Each pool's route stats, keyed `"<Service> <route>"`."""
        out: dict[str, dict[str, float | int]] = {}
        for name, server in self.servers.items():
            for route, numbers in server.stats().items():
                out[f"{name} {route}"] = numbers
        return out

    def describe(self) -> dict[str, dict[str, Any]]:
        """Per depended service that runs apart: url, state, workers (pid, devices, state)."""
        out: dict[str, dict[str, Any]] = {}
        for name, server in self.servers.items():
            executor = server.deployment.executor
            status = getattr(executor, "status", None)
            out[name] = {
                "url": server.url,
                "state": server.state,
                "workers": status() if callable(status) else [],
                "routes": server.routes,
            }
        return out

    def render_metrics(self, main: bytes) -> bytes:
        """The main `/metrics` body with the pools' series (and their workers') merged in."""
        bodies = [main]
        for server in list(self.servers.values()):
            deployment = server.deployment
            bodies.append(deployment.metrics.render()[0])
            worker_lines = getattr(deployment.executor, "metrics_lines", None)
            if callable(worker_lines):
                bodies.append(str(worker_lines()).encode())
        return merge_metrics(bodies) if len(bodies) > 1 else main


def _plans_devices(executor: object) -> bool:
    """A worker pool that has not been given devices (and so would detect every GPU)."""
    return executor is not None and getattr(executor, "_devices", False) is None


def merge_metrics(bodies: list[bytes]) -> bytes:
    """Prometheus text expositions merged family by family (one HELP/TYPE per metric name)."""
    from prometheus_client.core import Metric
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    for body in bodies:
        for family in text_string_to_metric_families(body.decode()):
            kept = families.get(family.name)
            if kept is None:
                families[family.name] = family
            else:
                kept.samples.extend(family.samples)

    class _Merged:
        def collect(self) -> list[Metric]:
            return list(families.values())

    return generate_latest(_Merged())
