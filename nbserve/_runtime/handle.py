"""`nbserve.serve()` and what it returns: `ServiceHandle`, a thread-safe view of one running server.

Every method may be called from any thread (a notebook cell, a widget callback on a kernel
subshell, a test): the handle forwards to its `Server`, which does the work on its own loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    import pandas as pd

    from nbserve._client import SyncHTTPClient
    from nbserve._notebook.tester.widget import RequestTester
    from nbserve._runtime.execution.composition import DependencyMode
    from nbserve._runtime.http.connections import ConnectionLimits
    from nbserve._runtime.server import Server, State
    from nbserve._sdk.service import Service

__all__ = ["DEFAULT_MAX_BODY_SIZE", "ServiceHandle", "as_service", "serve"]

DEFAULT_MAX_BODY_SIZE = 100 * 2**20


class ServiceHandle:
    """What `serve()` returns: a running service you can query, swap and stop from any thread.

    ```python
    handle = nbserve.serve(Echo)          # returns at once
    handle.url                            # 'http://127.0.0.1:53917'
    handle.client().shout(text="hi")
    handle.stop()
    ```
    """

    def __init__(self, server: Server) -> None:
        self._server = server

    @property
    def name(self) -> str:
        return self._server.name

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def service(self) -> Service[Any]:
        """The service being served now (the newest one after a swap)."""
        return self._server.service

    @property
    def state(self) -> State:
        return self._server.state

    @property
    def routes(self) -> list[str]:
        """The API routes, path prefix included."""
        return self._server.routes

    @property
    def token(self) -> str | None:
        return self._server.token

    def wait_ready(self, timeout: float | None = 30.0) -> ServiceHandle:
        """Block until the service has started; re-raises its `__init__` / `on_startup` error."""
        self._server.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests, run `on_shutdown`, free the port. Idempotent."""
        self._server.stop(timeout)

    def swap(self, service: Service[Any], timeout: float = 30.0) -> None:
        """Replace the service on the same port without failing a request (see `Server.swap`)."""
        self._server.swap(as_service(service), timeout)

    def get_client(self, **options: Any) -> SyncHTTPClient:
        """BentoML's name for `client()`."""
        return self.client(**options)

    def client(self, **options: Any) -> SyncHTTPClient:
        """A `SyncHTTPClient` for this service (with the handle's token)."""
        from nbserve._client import SyncHTTPClient

        if self.token is not None:
            options.setdefault("token", self.token)
        return SyncHTTPClient(self.url, **options)

    def stats(self) -> dict[str, dict[str, float | int]]:
        """Per route: count, errors, p50/p95/p99 latency in ms (over the last 2048 requests).

        Depended services running in their own worker pools add their routes as
        `"<Service> <route>"`.
        """
        return {**self._server.stats(), **self._server.deployment.dependencies.stats()}

    def dependencies(self) -> dict[str, dict[str, Any]]:
        """Depended services running in their own worker pools: url, state, workers, routes."""
        return self._server.deployment.dependencies.describe()

    def workers(self) -> list[dict[str, Any]]:
        """Each worker process of the current version: index, state, `phase` (started / loading /
        ready while starting), pid, devices, `cpu_threads`, restarts, last error. Empty inline."""
        status = getattr(self._server.deployment.executor, "status", None)
        return list(status()) if callable(status) else []

    def logs(self, n: int = 50) -> list[str]:
        """The last `n` lines of the service's log (errors with request ids, lifecycle events)."""
        return self._server.log.tail(n)

    # --- trying it from the notebook (nbserve._notebook.tester) -----------------------------
    def tester(self) -> RequestTester:
        """A request-tester widget for this service (one tab per API; see `nbserve.tester`)."""
        from nbserve._notebook.tester import tester

        return tester(self)

    def dashboard(self) -> RequestTester:
        """A live dashboard widget: requests, errors, percentiles, batch sizes, workers."""
        from nbserve._notebook.tester import dashboard

        return dashboard(self)

    def load_test(self, route: str | None = None, **options: Any) -> pd.DataFrame:
        """Load-test `route` over real HTTP from a separate process; one DataFrame row per
        request (options: concurrency, duration, requests, body, bodies, progress, show)."""
        from nbserve._notebook.tester import load_test

        return load_test(self, route, **options)

    def __enter__(self) -> ServiceHandle:
        # BentoML's `with bentoml.serve(...) as server:` gives a server that answers already.
        return self.wait_ready()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ServiceHandle {self.name} {self.state} at {self.url}>"


def serve(
    service: Service[Any] | type | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    workers: int | None = None,
    token: str | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    name: str | None = None,
    debug: bool | None = None,
    limits: ConnectionLimits | None = None,
    working_dir: str | None = None,
    admin_secret: str | None = None,
    on_admin_stop: Callable[[], None] | None = None,
    dependencies: DependencyMode = "auto",
) -> ServiceHandle:
    """Serve `service` over HTTP from a background thread and return its handle at once.

    `service` is a service class, or a target as `nbserve serve` takes it (`"service:Name"`,
    a bento), found in `working_dir`. `port=0` picks a free port (`handle.port`).
    `workers=None` runs the instance in this process; `token` requires
    `Authorization: Bearer <token>` on every route but the probes; bodies over
    `max_body_size` bytes get a 413; `limits` sets the connection timeouts and the cap on open
    connections (`ConnectionLimits`). `debug`: a 500 tells the client the exception's type and
    message (never the traceback); by default, only inside a Jupyter kernel, where the client
    is the person who wrote the service. As a context manager the handle waits until the
    service is ready and stops it on exit (`with nbserve.serve("service:Echo") as handle: ...`).
    `admin_secret` / `on_admin_stop` open the admin routes the Jupyter server extension uses
    (the notebook registry passes them; see admin.py). `dependencies`: `"workers"` gives
    depended services that declare `workers`/`resources` their own worker pools also in a
    notebook, `"inline"` keeps them all in this process, `"auto"` (the default) does the former
    outside a notebook and the latter in one (or what `$NBSERVE_DEPENDENCIES` says).
    """
    if debug is None:
        from nbserve._kernel import in_kernel

        debug = in_kernel()
    if isinstance(service, str):
        from nbserve._sdk.loading import load

        service = load(service, working_dir=working_dir)
    from nbserve._runtime.server import Server

    server = Server(
        as_service(service),
        host=host,
        port=port,
        workers=workers,
        token=token,
        max_body_size=max_body_size,
        name=name,
        debug=debug,
        limits=limits,
        admin_secret=admin_secret,
        on_admin_stop=on_admin_stop,
        dependencies=dependencies,
    )
    server.start()
    return ServiceHandle(server)


def as_service(value: Any) -> Service[Any]:
    from nbserve._sdk.service import Service, service

    if isinstance(value, Service):
        return value
    if isinstance(value, type):
        return service(value)
    msg = f"serve() takes a class decorated with @nbserve.service, got {value!r}"
    raise TypeError(msg)
