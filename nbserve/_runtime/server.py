"""`Server`: one Tornado `HTTPServer` per service, on its own thread and event loop
(`nbserve.serve()`, in handle.py, makes one and returns its handle).

Why its own thread and loop (jupyter.md §0.1): a server on the kernel's loop stops answering
while any cell runs. Here the kernel's main thread can sit in `time.sleep` or a minute-long
training step and the service still answers; sync APIs run in the deployment's thread pool,
async ones on this loop.

The socket is bound in `Server.__init__`, in the caller's thread, so `port=0` resolves and a
port already in use raises at once; the service's `__init__` and `on_startup` then run on the
server's loop while the server already answers probes (`/livez` 200, `/readyz` 503), so
`serve()` returns at once even when loading a model takes minutes. Requests that arrive during
the start wait for it (within `traffic.timeout`).

A request reads `server.deployment` once, when it starts (`APIHandler.post`), and keeps it: a
hot swap assigns a new deployment while requests that started on the old one finish there.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import re
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from nbserve._runtime.deployment import Deployment
from nbserve._runtime.execution.composition import DependencyMode, check_mode
from nbserve._runtime.handle import DEFAULT_MAX_BODY_SIZE, ServiceHandle
from nbserve._runtime.http.application import Application
from nbserve._runtime.http.connections import ConnectionLimits, HTTPServer
from nbserve._runtime.logs import ServiceLog, capture_output, route_output
from nbserve._runtime.loops import call, close_loop, new_event_loop, running_loop
from nbserve._runtime.sockets import bind_sockets

if TYPE_CHECKING:
    from nbserve._sdk.service import Service

__all__ = ["DEFAULT_MAX_BODY_SIZE", "ConnectionLimits", "Server", "ServiceHandle", "State"]

State = Literal["starting", "running", "stopping", "stopped", "failed"]
_HEADER_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")
_RUNNING: weakref.WeakSet[Server] = weakref.WeakSet()


class Server:
    """One HTTP server, bound once (its port never changes), serving one deployment at a time."""

    def __init__(
        self,
        service: Service[Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int | None = None,
        token: str | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        name: str | None = None,
        debug: bool = False,
        limits: ConnectionLimits | None = None,
        admin_secret: str | None = None,
        on_admin_stop: Callable[[], None] | None = None,
        dependencies: DependencyMode = "auto",
    ) -> None:
        self.dependencies = check_mode(dependencies)
        if (
            isinstance(max_body_size, bool)
            or not isinstance(max_body_size, int)
            or max_body_size < 1
        ):
            msg = f"max_body_size={max_body_size!r} must be a positive number of bytes, e.g. 100 * 2**20"
            raise ValueError(msg)
        if token is not None and (not isinstance(token, str) or not token):
            msg = f"token={token!r} must be a non-empty string (clients send it as 'Authorization: Bearer <token>')"
            raise ValueError(msg)
        self.name = name or service.name
        self.host = host
        self.token = token
        self.admin_secret = admin_secret
        """Enables `/_nbserve/admin/*` (admin.py) for whoever holds it: the Jupyter server extension."""
        self.on_admin_stop = on_admin_stop
        """Called (on a thread of its own) when the admin stop route is asked; else the server stops itself."""
        self.max_body_size = max_body_size
        self.debug = debug
        """A 500's body names the exception's type and message (errors.py); never the traceback."""
        self.limits = limits or ConnectionLimits()
        self.workers = workers
        self.server_header = _server_header(service)
        self._sockets = bind_sockets(port, host)  # port in use: raises here
        self.port: int = self._sockets[0].getsockname()[1]
        self.log = ServiceLog(self.name)
        try:
            self.deployment = Deployment(
                service, log=self.log, workers=workers, debug=debug, dependencies=dependencies
            )
        except BaseException:
            self.log.close()
            for sock in self._sockets:
                sock.close()
            raise
        self.state: State = "starting"
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: HTTPServer | None = None
        self._starting: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._draining: set[Deployment] = set()
        self._changed = threading.Condition()
        self._finished = threading.Event()
        self._on_started: Callable[[BaseException | None], None] | None = None
        self._opened = threading.Event()
        self._swap_lock: asyncio.Lock | None = None

    # --- properties read from any thread --------------------------------------------------------
    @property
    def service(self) -> Service[Any]:
        return self.deployment.service

    @property
    def routes(self) -> list[str]:
        return list(self.deployment.api_routes)

    @property
    def url(self) -> str:
        """Base URL clients use, path prefix included (BentoML's client reads /readyz under it)."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{self.deployment.prefix}"

    # --- running --------------------------------------------------------------------------------
    def start(self) -> None:
        """Serve from a daemon thread with its own event loop; returns at once."""
        self._thread = threading.Thread(
            target=self._run_in_thread, name=f"nbserve-server-{self.name}", daemon=True
        )
        self._thread.start()

    def _run_in_thread(self) -> None:
        # In a kernel, print() from a service's code would land in a later cell: its threads'
        # output becomes log lines instead (logs.py). The CLI's main thread prints normally.
        route_output(self.log.logger)
        with capture_output():
            self.run()

    def run(
        self,
        *,
        stop_signals: tuple[int, ...] = (),
        graceful_timeout: float = 30.0,
        on_started: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Serve on the calling thread until stopped (the CLI's main thread).

        `stop_signals` (e.g. SIGINT, SIGTERM) stop the server gracefully; main thread only.
        `on_started(error)` is called on this thread once the service has started (error None)
        or failed to.
        """
        self._on_started = on_started
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        _RUNNING.add(self)
        try:
            try:
                loop.run_until_complete(self._open())
            finally:
                self._opened.set()
            for signum in stop_signals:
                loop.add_signal_handler(signum, self._on_signal, graceful_timeout)
            loop.run_forever()
        finally:
            _RUNNING.discard(self)
            try:
                close_loop(loop)
            finally:
                asyncio.set_event_loop(None)
                self._finished.set()

    async def _open(self) -> None:
        app = Application(self)
        self._http = HTTPServer(
            app,
            limits=self.limits,
            logger=self.log.logger,
            max_body_size=self.max_body_size,
            max_buffer_size=max(self.max_body_size + 2**16, 100 * 2**20),
        )
        self._http.add_sockets(self._sockets)
        self._starting = asyncio.get_running_loop().create_task(self._start(self.deployment))

    async def _start(self, deployment: Deployment) -> None:
        try:
            await deployment.start()
        except (Exception, asyncio.CancelledError) as exc:
            # Kept for wait_ready() and answered as 503s; the server stays up for a swap.
            if self.state in ("stopping", "stopped"):  # stop() gave up on a slow __init__
                self.log.logger.info("%s: start abandoned by stop()", deployment.service.name)
                return
            self.log.logger.error("%s failed to start", deployment.service.name, exc_info=exc)
            self._set_state("failed", exc)
            if self._on_started is not None:
                self._on_started(exc)
            return
        if self.state == "starting":
            self._set_state("running")
        if self._on_started is not None:
            self._on_started(None)

    def _set_state(self, state: State, error: BaseException | None = None) -> None:
        with self._changed:
            self.state = state
            self.error = error
            self._changed.notify_all()

    def wait_ready(self, timeout: float | None = 30.0) -> None:
        """Block until running; raise the start error if it failed, TimeoutError if too slow."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self.state == "starting":
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    msg = f"{self.name} did not start within {timeout}s (its __init__ / on_startup are still running); wait longer with handle.wait_ready(timeout=...)"
                    raise TimeoutError(msg)
                self._changed.wait(remaining)
        if self.state == "failed" and self.error is not None:
            raise self.error
        if self.state != "running":
            msg = f"{self.name} is {self.state}, not running"
            raise RuntimeError(msg)

    # --- stopping -------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, let in-flight requests finish (≤ timeout), run on_shutdown, free the port."""
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._opened.wait(timeout)  # stop() right after start(): let the thread open first
        loop = self._loop
        if loop is None or self._finished.is_set():
            self._close_unstarted()
            return
        if threading.current_thread() is self._thread or running_loop() is loop:
            # Called from a request on this server's own loop: it cannot wait for itself.
            loop.call_soon(self.request_stop, timeout)
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._shutdown(timeout), loop)
        except RuntimeError:  # the loop closed in the meantime
            self._finished.wait(timeout)
            return
        try:
            future.result(timeout + 10.0)
        except concurrent.futures.CancelledError:
            pass  # a concurrent stop() finished first and closed the loop under this one
        finally:
            self._finished.wait(10.0)
            if self._thread is not None:
                self._thread.join(10.0)

    def _close_unstarted(self) -> None:
        for sock in self._sockets:
            sock.close()
        if self.state not in ("stopped", "failed"):
            self._set_state("stopped")

    def _on_signal(self, timeout: float) -> None:
        if self._stopping is None:
            self.request_stop(timeout)
            return
        # A second Ctrl-C: the user does not want to wait for in-flight requests.
        self.log.logger.warning("%s: second stop signal; stopping without waiting", self.name)
        self._stopping.cancel()
        asyncio.get_running_loop().stop()

    def request_stop(self, timeout: float = 30.0) -> None:
        """Begin a graceful stop without waiting for it; call on the server's own thread."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._shutdown(timeout))

    async def _shutdown(self, timeout: float) -> None:
        if self._stopping is not None and self._stopping is not asyncio.current_task():
            await asyncio.shield(self._stopping)
            return
        self._stopping = asyncio.current_task()
        deadline = time.monotonic() + timeout
        self._set_state("stopping")
        if self._http is not None:
            self._http.stop()  # closes the listening sockets: the port is free from here on
        if self._starting is not None and not self._starting.done():
            await asyncio.wait({self._starting}, timeout=max(deadline - time.monotonic(), 0.1))
            if not self._starting.done():  # __init__ still running: its thread finishes alone
                self._starting.cancel()
                await asyncio.wait({self._starting}, timeout=1.0)
        deployments = [self.deployment, *self._draining]
        remaining = max(deadline - time.monotonic(), 0.0)
        await asyncio.gather(*(d.stop(remaining) for d in deployments), return_exceptions=True)
        if self._http is not None:
            try:
                await asyncio.wait_for(self._http.close_all_connections(), 5.0)
            except asyncio.TimeoutError:
                self.log.logger.warning(
                    "%s: connections still open after stop; leaving them", self.name
                )
        self._set_state("stopped")
        self.log.logger.info("%s stopped", self.name)
        self.log.close()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    # --- hot swap -------------------------------------------------------------------------------
    def swap(self, service: Service[Any], timeout: float = 30.0) -> None:
        """Start `service` fully, switch to it atomically, then drain and stop the old version.

        If the new version fails to start, its error is raised and the old one keeps serving.
        """
        loop = self._loop
        if loop is None or self.state in ("stopping", "stopped"):
            msg = f"{self.name} is {self.state}; start a new server with nbserve.serve() instead of swapping"
            raise RuntimeError(msg)
        if running_loop() is loop:
            msg = "swap() blocks until the new version runs; call it from another thread, not from a request of this server"
            raise RuntimeError(msg)
        asyncio.run_coroutine_threadsafe(self._swap(service, timeout), loop).result()

    async def _swap(self, service: Service[Any], timeout: float) -> None:
        if self._swap_lock is None:
            self._swap_lock = asyncio.Lock()
        async with self._swap_lock:  # one swap at a time: each drains the version before it
            await self._swap_locked(service, timeout)

    async def _swap_locked(self, service: Service[Any], timeout: float) -> None:
        if self._starting is not None and not self._starting.done():
            await asyncio.wait({self._starting})
        new = Deployment(
            service,
            log=self.log,
            workers=self.workers,
            debug=self.debug,
            dependencies=self.dependencies,
        )
        await new.start()  # raises on failure, and the old deployment stays current
        old, self.deployment = self.deployment, new
        self.server_header = _server_header(service)
        self._set_state("running")
        self.log.logger.info("%s swapped in", service.name)
        self._draining.add(old)
        try:
            await old.stop(timeout)
        finally:
            self._draining.discard(old)

    # --- reporting ------------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, float | int]]:
        loop = self._loop
        if loop is None or self._finished.is_set() or running_loop() is loop:
            return self.deployment.stats_summary()
        # Read on the loop so the latency deques are not mutated while being copied.
        future = asyncio.run_coroutine_threadsafe(call(self.deployment.stats_summary), loop)
        try:
            return future.result(5.0)  # type: ignore[no-any-return]
        except Exception:
            return self.deployment.stats_summary()


def _server_header(service: Service[Any]) -> str:
    """The `Server` header: `nbserve/<service name>`, with header-unsafe characters replaced."""
    return "nbserve/" + _HEADER_UNSAFE.sub("_", service.name)


def stop_threaded_servers(timeout: float = 5.0) -> None:
    """Stop every server `serve()` started on a background thread in this process."""
    for server in list(_RUNNING):
        if server._thread is not None:  # the CLI's server stops itself on its signals
            with contextlib.suppress(Exception):  # best effort: stop the others regardless
                server.stop(timeout=timeout)


@atexit.register
def _stop_all_at_exit() -> None:
    # A kernel or script that exits with services still up runs their on_shutdown hooks.
    stop_threaded_servers()
