"""`LiveService`: one service served from this kernel, as `nbserve.services()` returns it.

It wraps the runtime's `ServiceHandle` (URL, port, state, routes, stats, logs, client; all read
from the handle, so they stay right across swaps and restarts) and adds what only the notebook
knows: the versions the cell went through (for `rollback()`), the options it was served with,
its bearer token, its display id and its discovery file. The registry (`registry.py`) creates
and changes these; user code reads them and calls `rollback()` / `stop()`.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nbserve._notebook import discovery
from nbserve._notebook.display import ServiceStatus, route_lines, worker_lines
from nbserve._notebook.urls import public_url

if TYPE_CHECKING:
    import pandas as pd

    from nbserve._client import SyncHTTPClient
    from nbserve._notebook.registry import Registry
    from nbserve._notebook.tester.widget import RequestTester
    from nbserve._runtime.execution.composition import DependencyMode
    from nbserve._runtime.server import ServiceHandle
    from nbserve._sdk.service import Service

__all__ = ["LiveService", "ServeOptions", "TokenMode", "Version"]

TokenMode = Literal["auto", "none"]


@dataclass(frozen=True)
class ServeOptions:
    """The server-level options of `%%serve`; changing one of them restarts the server."""

    host: str = "127.0.0.1"
    port: int = 0
    workers: int | None = None
    token: TokenMode = "none"
    dependencies: DependencyMode = "auto"

    def restarts(self, other: ServeOptions, bound_port: int) -> bool:
        """Whether serving with `other` needs a new server instead of a swap into this one."""
        if other.port not in (0, bound_port):
            return True
        mine = (self.host, self.workers, self.token, self.dependencies)
        return (other.host, other.workers, other.token, other.dependencies) != mine


@dataclass(frozen=True)
class Version:
    """One version of a service, as a `%%serve` run produced it."""

    number: int
    source: str | None
    service: Service[Any]
    started_at: float


class LiveService:
    """A service served from this kernel: the runtime handle plus its notebook history.

    ```python
    svc = nbserve.services()["Echo"]
    svc.url, svc.public_url, svc.state, svc.routes, svc.stats(), svc.logs(20)
    with svc.client() as client: client.shout(text="hi")
    svc.rollback(); svc.stop()
    ```
    """

    def __init__(
        self,
        name: str,
        handle: ServiceHandle,
        version: Version,
        options: ServeOptions,
        token: str | None,
        registry: Registry,
    ) -> None:
        self.name = name
        self.options = options
        self.token = token
        """The bearer token clients must send (`--token auto`), else None."""
        self.display_id = f"nbserve-{uuid.uuid4().hex}"
        self.discovery_file = discovery.discovery_path(name)
        self.admin_secret = ""
        """Unlocks the server's admin routes; written to the discovery file only (registry.py)."""
        self._versions = [version]
        self._registry = registry
        self.use(handle)

    def use(self, handle: ServiceHandle) -> None:
        """Point at `handle` (a restart made a new server). Raises on a bad NBSERVE_PUBLIC_URL."""
        self._public_url = public_url(handle.port, handle.host, name=self.name)
        self.handle = handle

    # --- what the runtime handle knows ------------------------------------------------------
    @property
    def url(self) -> str:
        """The URL for clients in this kernel (loopback for a loopback bind)."""
        return str(self.handle.url)

    @property
    def public_url(self) -> str:
        """The URL for the user's browser (JupyterHub/Binder proxy, base_url, NBSERVE_PUBLIC_URL)."""
        prefix = self.service.path_prefix.strip("/")
        return self._public_url.rstrip("/") + f"/{prefix}/" if prefix else self._public_url

    @property
    def host(self) -> str:
        host: str = self.handle.host
        return host

    @property
    def port(self) -> int:
        port: int = self.handle.port
        return port

    @property
    def state(self) -> str:
        """`starting`, `running`, `stopping`, `stopped` or `failed`."""
        return str(self.handle.state)

    @property
    def routes(self) -> list[str]:
        return list(self.handle.routes)

    @property
    def mode(self) -> str:
        """`inline`, or `N workers` (--workers, else the service's own `workers` option)."""
        workers = self.options.workers
        if workers is None:
            workers = self.service.config.worker_count
        if not workers:
            return "inline"
        return f"{workers} worker" + ("s" if workers != 1 else "")

    def stats(self) -> dict[str, Any]:
        """Per route: count, errors and p50/p95/p99 latency in ms (since the last swap)."""
        return dict(self.handle.stats())

    def logs(self, n: int = 50) -> list[str]:
        """The last `n` records of the service's log (a record may span several lines)."""
        return [str(line) for line in self.handle.logs(n)]

    def client(self) -> SyncHTTPClient:
        """A `SyncHTTPClient` for this service, sending the bearer token when there is one."""
        from nbserve._client import SyncHTTPClient

        return SyncHTTPClient(self.url, token=self.token)

    # --- what only the notebook knows -------------------------------------------------------
    @property
    def service(self) -> Service[Any]:
        """The `Service` serving now."""
        return self._versions[-1].service

    @property
    def versions(self) -> tuple[Version, ...]:
        """Every version `rollback()` can still reach, oldest first; the last one is serving."""
        return tuple(self._versions)

    @property
    def source(self) -> str | None:
        """The cell source of the version serving now."""
        return self._versions[-1].source

    def status(self) -> ServiceStatus:
        """A snapshot for display (deterministic `text/plain`, detailed HTML)."""
        try:
            stats = route_lines(self.handle.stats())
        except Exception:  # a stopped or failed server may have no numbers: show none
            stats = []
        try:
            workers = worker_lines(self.handle.workers())
        except Exception:  # a server torn down meanwhile: no workers to show
            workers = []
        return ServiceStatus(
            name=self.name,
            state=self.state,
            mode=self.mode,
            routes=self.routes,
            url=self.public_url,
            local_url=self.url,
            version=self._versions[-1].number,
            token_required=self.token is not None,
            stats=stats,
            workers=workers,
        )

    def refresh_display(self) -> None:
        """Re-render this service's outputs in the notebook (a no-op outside a kernel)."""
        if "IPython" in sys.modules:
            from nbserve._notebook.display import update

            update(self.status(), self.display_id)

    def rollback(self) -> LiveService:
        """Serve the previous version of the cell again, on the same port."""
        self._registry.rollback(self.name)
        self.refresh_display()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Stop serving: finish in-flight requests, run `on_shutdown`, free the port."""
        self._registry.stop(self.name, timeout=timeout)
        self.refresh_display()

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

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return self.status()._repr_mimebundle_()

    def __repr__(self) -> str:
        return f"<LiveService {self.status().text()}>"
