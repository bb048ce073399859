"""The kernel-wide registry of services served from this kernel, keyed by name.

Each name maps to a `LiveService` (`live.py`): the runtime's `ServiceHandle` plus what only the
notebook knows (versions, options, token, display id, discovery file). Re-serving a name swaps the new version into
the running server (same port, no failed request: the runtime drains the old deployment), or,
when an option that fixes the server changed (`--host`, `--port`, `--workers`, `--token`,
`--dependencies`),
stops it and starts a new one. `rollback()` swaps back to the previous version.

Threads: anything here may be called from the kernel's main thread, a widget callback on a
subshell thread (ipykernel 7) or the control thread during kernel shutdown. `_lock` guards the
dict for instant reads; `_ops` serialises the slow operations (start, swap, stop), so a
`services()` call never waits for a swap. Nothing here prints or displays: the magics and
`nbserve.*` functions do, on the thread running the user's code.

Cleanup: `stop_all()` runs from `atexit` (interpreter exit), from the shell's `exit_now`
observer (kernel shutdown, which sets it before ipykernel terminates child processes, so
workers still get their `on_shutdown`) and from `%unload_ext nbserve`; each stops the server,
frees the port and removes the discovery file.
"""

from __future__ import annotations

import atexit
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbserve._notebook import discovery
from nbserve._notebook.live import LiveService, ServeOptions, TokenMode, Version

if TYPE_CHECKING:
    from nbserve._runtime.server import ServiceHandle
    from nbserve._sdk.service import Service

__all__ = ["REGISTRY", "Registry", "RollbackError", "UnknownServiceError"]

log = logging.getLogger("nbserve.notebook")

Progress = Callable[[list[dict[str, Any]]], None]
"""Told each worker's status (`ServiceHandle.workers()`) while a server starts, when it changes."""
_PROGRESS_POLL_S = 0.2

# Kernel shutdown: jupyter_client kills a kernel that has not exited 5 s after the shutdown
# request (`shutdown_wait_time`), so every service together gets less than that.
SHUTDOWN_BUDGET_S = 3.0


class UnknownServiceError(KeyError):
    """No service of that name in this kernel; the message lists the ones there are."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0])


class RollbackError(ValueError):
    """A rollback with no previous version to go back to."""


def _start(
    service: Service[Any],
    name: str,
    options: ServeOptions,
    token: str | None,
    port: int,
    admin_secret: str,
    on_admin_stop: Callable[[], None],
    on_progress: Progress | None = None,
) -> ServiceHandle:
    from nbserve._runtime.handle import serve

    handle = serve(
        service,
        host=options.host,
        port=port,
        workers=options.workers,
        dependencies=options.dependencies,
        token=token,
        name=name,
        # The Jupyter server extension's way in (status, logs, stop), read from the discovery file.
        admin_secret=admin_secret,
        on_admin_stop=on_admin_stop,
    )
    try:
        # No timeout: the cell runs until the model has loaded, as a plain loading cell would,
        # and an interrupt (KeyboardInterrupt) stops the half-started server here.
        _wait_ready(handle, on_progress)
    except BaseException:
        handle.stop(timeout=5)
        raise
    return handle


def _wait_ready(handle: ServiceHandle, on_progress: Progress | None) -> None:
    """`handle.wait_ready()`, telling `on_progress` how the workers get on meanwhile (this thread)."""
    if on_progress is None:
        handle.wait_ready(timeout=None)
        return
    shown: list[dict[str, Any]] | None = None
    while True:
        workers = handle.workers()
        if workers and workers != shown:
            on_progress(workers)
            shown = workers
        try:
            handle.wait_ready(timeout=_PROGRESS_POLL_S)
        except TimeoutError:
            continue
        break
    workers = handle.workers()
    if workers and workers != shown:
        on_progress(workers)


def _new_token(mode: TokenMode) -> str | None:
    return secrets.token_urlsafe(32) if mode == "auto" else None


class Registry:
    """Services served from this kernel, by name. One per process: `REGISTRY`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops = threading.RLock()
        self._services: dict[str, LiveService] = {}
        self._atexit_registered = False

    # --- reading ----------------------------------------------------------------------------
    def services(self) -> dict[str, LiveService]:
        """A snapshot: name → `LiveService`, in the order they were first served."""
        with self._lock:
            return dict(self._services)

    def get(self, name: str) -> LiveService:
        with self._lock:
            entry = self._services.get(name)
            names = list(self._services)
        if entry is None:
            there = ", ".join(repr(n) for n in names) or "none"
            msg = f"no nbserve service named {name!r} in this kernel (running: {there}); see %serve list"
            raise UnknownServiceError(msg)
        return entry

    # --- serving ----------------------------------------------------------------------------
    def serve(
        self,
        service: Service[Any],
        *,
        name: str | None = None,
        source: str | None = None,
        options: ServeOptions | None = None,
        on_progress: Progress | None = None,
    ) -> LiveService:
        """Start `service` as `name`, or swap it into the running service of that name.

        `on_progress` is told each worker's status while a new server starts (see `_wait_ready`).
        """
        name = name or service.name
        options = options or ServeOptions()
        with self._ops:
            self.install_atexit()
            entry = self.services().get(name)
            if entry is None:
                return self._start_new(service, name, source, options, on_progress)
            token = (
                entry.token if options.token == entry.options.token else _new_token(options.token)
            )
            if entry.state in ("running", "starting") and not entry.options.restarts(
                options, entry.port
            ):
                entry.handle.swap(service)  # raises if the new version fails; the old one serves on
            else:
                self._restart(entry, service, options, token, on_progress)
            entry.options, entry.token = options, token
            number = entry._versions[-1].number + 1
            entry._versions.append(Version(number, source, service, time.time()))
            self._advertise(entry)
            log.info("served %s version %d on port %d", name, number, entry.port)
            return entry

    def _start_new(
        self,
        service: Service[Any],
        name: str,
        source: str | None,
        options: ServeOptions,
        on_progress: Progress | None = None,
    ) -> LiveService:
        token = _new_token(options.token)
        secret = secrets.token_urlsafe(32)
        handle = _start(
            service,
            name,
            options,
            token,
            options.port,
            secret,
            self._admin_stopper(name),
            on_progress,
        )
        try:
            entry = LiveService(
                name, handle, Version(1, source, service, time.time()), options, token, self
            )
            entry.admin_secret = secret
        except BaseException:  # e.g. a malformed NBSERVE_PUBLIC_URL: no server left behind
            handle.stop(timeout=5)
            raise
        with self._lock:
            self._services[name] = entry
        self._advertise(entry)
        log.info("served %s on port %d", name, entry.port)
        return entry

    def _restart(
        self,
        entry: LiveService,
        service: Service[Any],
        options: ServeOptions,
        token: str | None,
        on_progress: Progress | None = None,
    ) -> None:
        """Replace `entry`'s server with a new one, on the same port unless another was asked for.

        Keeping the port keeps the URL the user copied working; if it was taken meanwhile (the
        old server was stopped), a free port is used. If the new server fails, the entry stays,
        stopped and unadvertised, until the cell is re-run or the service stopped.
        """
        port = options.port or entry.port
        entry.handle.stop(timeout=30)
        try:
            admin = (entry.admin_secret, self._admin_stopper(entry.name))
            try:
                handle = _start(service, entry.name, options, token, port, *admin, on_progress)
            except OSError:
                if options.port:
                    raise
                handle = _start(service, entry.name, options, token, 0, *admin, on_progress)
            try:
                entry.use(handle)
            except BaseException:
                handle.stop(timeout=5)
                raise
        except BaseException:
            discovery.remove(entry.discovery_file)
            raise

    def rollback(self, name: str) -> LiveService:
        """Swap the previous version of `name` back in (same port) and forget the current one."""
        with self._ops:
            entry = self.get(name)
            if len(entry._versions) < 2:
                msg = f"service {name!r} has only one version; there is nothing to roll back to (re-run an edited %%serve cell first)"
                raise RollbackError(msg)
            previous = entry._versions[-2]
            if entry.state in ("running", "starting"):
                entry.handle.swap(previous.service)
            else:
                self._restart(entry, previous.service, entry.options, entry.token)
            entry._versions.pop()
            self._advertise(entry)
            log.info("rolled %s back to version %d", name, previous.number)
            return entry

    def stop(self, name: str, timeout: float = 30) -> LiveService:
        """Stop `name`, free its port, remove its discovery file and forget it."""
        with self._ops:
            entry = self.get(name)
            try:
                entry.handle.stop(timeout=timeout)
            finally:
                discovery.remove(entry.discovery_file)
                with self._lock:
                    if self._services.get(name) is entry:
                        del self._services[name]
            log.info("stopped %s", name)
            return entry

    def stop_all(self, timeout: float = 30) -> list[LiveService]:
        """Stop every service, all within about `timeout` seconds; raise once if any failed."""
        deadline = time.monotonic() + timeout
        stopped = []
        errors: list[Exception] = []
        with self._ops:
            for name in list(self.services()):
                try:
                    stopped.append(self.stop(name, timeout=max(0.1, deadline - time.monotonic())))
                except Exception as exc:  # stop the others; report every failure at the end
                    errors.append(exc)
        if errors:
            msg = f"stopping {len(errors)} service(s) failed: " + "; ".join(
                f"{type(e).__name__}: {e}" for e in errors
            )
            raise RuntimeError(msg) from errors[0]
        return stopped

    def shutdown(self) -> None:
        """`stop_all` for exit paths: bounded by `SHUTDOWN_BUDGET_S`, never raises."""
        try:
            self.stop_all(timeout=SHUTDOWN_BUDGET_S)
        except Exception:
            log.exception("stopping nbserve services at shutdown failed")

    # --- helpers ----------------------------------------------------------------------------
    def _admin_stopper(self, name: str) -> Callable[[], None]:
        """What the service's admin stop route calls (the Services panel's Stop button)."""

        def stop() -> None:
            try:
                entry = self.get(name)
            except UnknownServiceError:
                return  # stopped from the notebook meanwhile
            try:
                entry.stop()  # forgets it, removes the discovery file, refreshes its status output
            except Exception:
                log.exception("stopping %s from the Jupyter server extension failed", name)

        return stop

    def _advertise(self, entry: LiveService) -> None:
        """(Re)write the discovery file; failing to write it must not fail serving."""
        record = discovery.record(
            name=entry.name,
            host=entry.host,
            port=entry.port,
            url=entry.url,
            routes=entry.routes,
            token=entry.token,
            admin_secret=entry.admin_secret,
            mode=entry.mode,
            version=entry.versions[-1].number,
        )
        try:
            discovery.write(entry.discovery_file, record)
        except OSError:
            log.warning("could not write discovery file %s", entry.discovery_file, exc_info=True)

    def install_atexit(self) -> None:
        """Stop every service at interpreter exit (registered once).

        Registered after the runtime's own exit hook (importing the server module registers
        it), so this one runs first (atexit is LIFO) and removes the discovery files within
        the shutdown budget before the runtime's hook gives each server several seconds.
        """
        import nbserve._runtime.server  # noqa: F401 - for its atexit hook's position only

        if not self._atexit_registered:
            atexit.register(self.shutdown)
            self._atexit_registered = True


REGISTRY = Registry()
