"""`ServiceHandle`: what `nbserve.serve()` returns, a thread-safe view of one running server.

Every method may be called from any thread (a notebook cell, a widget callback on a kernel
subshell, a test): the handle forwards to its `Server`, which does the work on its own loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    import pandas as pd

    from nbserve._client import SyncHTTPClient
    from nbserve._notebook.tester.widget import RequestTester
    from nbserve._runtime.server import Server, State
    from nbserve._sdk.service import Service

__all__ = ["ServiceHandle"]


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
        from nbserve._runtime.server import as_service

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
