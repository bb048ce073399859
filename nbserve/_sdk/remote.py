"""`RemoteService`: what `depends(url=...)`, `depends(deployment=...)` and a depended service
running in its own worker pool resolve to.

Its methods are the remote service's APIs, read from its `/schema.json` by nbserve's
`SyncHTTPClient` (created on first use, so declaring a dependency never touches the network);
`.to_async` gives the same APIs as awaitables (or async iterators for streams) through an
`AsyncHTTPClient`, one per event loop, because an httpx async client belongs to the loop that
made it (a service's own loop, a worker's loop, a test's loop).

`resolve_deployment(name)` finds a live nbserve service by name: first this kernel's registry
(`nbserve.services()`, which knows the token), then the discovery files kernels write
(`nbserve/_notebook/discovery.py`, mode 0600, which hold each service's token; for files of
older versions, which kept only a hash, `NBSERVE_TOKEN` gives it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbserve.exceptions import NotFound

if TYPE_CHECKING:
    from nbserve._client import AsyncHTTPClient, SyncHTTPClient

__all__ = [
    "ENDPOINTS_ENV",
    "Endpoint",
    "RemoteService",
    "deployment_key",
    "register_endpoint",
    "resolve_deployment",
    "service_endpoint",
    "unregister_endpoint",
]

ENDPOINTS_ENV = "NBSERVE_DEPENDENCY_ENDPOINTS"
"""JSON `{service name: {"url": ..., "token": ...}}`: how worker processes (spawned after the
depended pools started, so they inherit it) find the depended services' internal servers."""


DEFAULT_TIMEOUT_S = 60.0
"""How long a call to a remote service may take: BentoML's default `traffic.timeout`. A depended
service in its own pool uses its own `traffic.timeout` (plus a margin: its server answers 504
first)."""


@dataclass(frozen=True)
class Endpoint:
    """Where a service answers: its URL and the bearer token it wants (if any)."""

    url: str
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S


_endpoints: dict[str, Endpoint] = {}
_endpoints_lock = threading.Lock()


def register_endpoint(name: str, endpoint: Endpoint) -> None:
    """Route `depends(<service name>)` to `endpoint` in this process and in workers started later."""
    with _endpoints_lock:
        _endpoints[name] = endpoint
        _write_env()


def unregister_endpoint(name: str, endpoint: Endpoint) -> None:
    """Undo `register_endpoint`, unless a newer deployment registered another endpoint since."""
    with _endpoints_lock:
        if _endpoints.get(name) == endpoint:
            del _endpoints[name]
            _write_env()


def _write_env() -> None:
    if _endpoints:
        os.environ[ENDPOINTS_ENV] = json.dumps(
            {
                name: {"url": e.url, "token": e.token, "timeout": e.timeout}
                for name, e in _endpoints.items()
            }
        )
    else:
        os.environ.pop(ENDPOINTS_ENV, None)


def deployment_key(name: str) -> str:
    """The endpoint table's key for `depends(deployment=name)` (apart from service names)."""
    return f"deployment:{name}"


def service_endpoint(name: str) -> Endpoint | None:
    """The internal endpoint of depended service `name`, if it runs in its own worker pool."""
    with _endpoints_lock:
        found = _endpoints.get(name)
    if found is not None:
        return found
    raw = os.environ.get(ENDPOINTS_ENV)  # in a worker process: inherited from the server
    if not raw:
        return None
    return _parsed(raw).get(name)


@functools.lru_cache(maxsize=4)
def _parsed(raw: str) -> dict[str, Endpoint]:
    """`NBSERVE_DEPENDENCY_ENDPOINTS` read once per value (it is looked up on every access)."""
    try:
        table = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(table, dict):
        return {}
    return {
        name: Endpoint(
            entry["url"], entry.get("token"), float(entry.get("timeout", DEFAULT_TIMEOUT_S))
        )
        for name, entry in table.items()
        if isinstance(entry, dict) and isinstance(entry.get("url"), str)
    }


class RemoteService:
    """A depended service reached over HTTP: `proxy.api(...)`, `await proxy.to_async.api(...)`."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        _quiet_httpx()
        self.url = url
        self.timeout = timeout
        self.token = token
        self.name = name or url
        self._sync: SyncHTTPClient | None = None
        self._lock = threading.Lock()
        self.to_async = AsyncRemoteView(self)
        self.to_sync = self

    @property
    def client(self) -> SyncHTTPClient:
        """The blocking client (made on first use: it waits for the server and reads its schema)."""
        with self._lock:
            if self._sync is None:
                from nbserve._client import SyncHTTPClient

                self._sync = SyncHTTPClient(self.url, token=self.token, timeout=self.timeout)
            return self._sync

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        client = self.client
        if name not in client.endpoints:
            msg = f"the service {self.name} at {self.url} has no API {name!r}; its APIs: {', '.join(client.endpoints) or 'none'}"
            raise AttributeError(msg)
        call = client.call

        def method(*args: Any, **kwargs: Any) -> Any:
            return call(name, *args, **kwargs)

        method.__name__ = name
        return method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.client(*args, **kwargs)

    def close(self) -> None:
        """Close the blocking client (the async ones: `aclose`)."""
        with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None

    async def aclose(self) -> None:
        """Close every client: this loop's directly, other running loops' on their own loop."""
        self.close()
        await self.to_async.aclose()

    def __repr__(self) -> str:
        return f"<RemoteService {self.name} at {self.url}>"


def _quiet_httpx() -> None:
    """httpx logs every request at INFO; a worker forwards INFO to the service log, where one
    line per dependency call would bury the lines that matter. Left alone if the user set a
    level."""
    httpx_logger = logging.getLogger("httpx")
    if httpx_logger.level == logging.NOTSET:
        httpx_logger.setLevel(logging.WARNING)


class AsyncRemoteView:
    """`proxy.to_async`: the remote APIs as awaitables, one `AsyncHTTPClient` per event loop."""

    def __init__(self, remote: RemoteService) -> None:
        self._remote = remote
        self._clients: dict[asyncio.AbstractEventLoop, asyncio.Future[AsyncHTTPClient]] = {}
        self._lock = threading.Lock()

    async def client(self) -> AsyncHTTPClient:
        """This loop's client, set up once (concurrent first calls share the setup)."""
        from nbserve._client import AsyncHTTPClient

        loop = asyncio.get_running_loop()
        with self._lock:
            future = self._clients.get(loop)
            if future is None or (future.done() and future.exception() is not None):
                for other in [o for o in self._clients if o.is_closed()]:
                    del self._clients[other]  # loops that ended (a finished test, a swap)
                future = loop.create_future()
                self._clients[loop] = future
                owner = True
            else:
                owner = False
        if owner:
            try:
                remote = self._remote
                made = await AsyncHTTPClient.from_url(
                    remote.url, token=remote.token, timeout=remote.timeout
                )
            except BaseException as exc:
                future.set_exception(exc)
                raise
            future.set_result(made)
        return await asyncio.shield(future)

    async def aclose(self) -> None:
        current = asyncio.get_running_loop()
        with self._lock:
            clients, self._clients = self._clients, {}
        for loop, future in clients.items():
            if not future.done() or future.exception() is not None:
                continue
            client = future.result()
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                done = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                await asyncio.wrap_future(done)

    def __getattr__(self, name: str) -> Callable[..., PendingCall]:
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> PendingCall:
            return PendingCall(self, name, args, kwargs)

        method.__name__ = name
        return method


class PendingCall:
    """One remote call: `await` it for a result, or `async for` over it for a streaming API."""

    def __init__(
        self, view: AsyncRemoteView, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._view, self._name, self._args, self._kwargs = view, name, args, kwargs

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    async def _result(self) -> Any:
        client = await self._view.client()
        outcome = client.call(self._name, *self._args, **self._kwargs)
        if hasattr(outcome, "__aiter__"):
            return outcome  # a stream: the caller iterates
        return await outcome

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._items()

    async def _items(self) -> AsyncIterator[Any]:
        client = await self._view.client()
        outcome = client.call(self._name, *self._args, **self._kwargs)
        if not hasattr(outcome, "__aiter__"):
            outcome.close()
            msg = (
                f"{self._name} is not a streaming API; use `await proxy.to_async.{self._name}(...)`"
            )
            raise TypeError(msg)
        async for item in outcome:
            yield item


def resolve_deployment(name: str) -> RemoteService:
    """A live nbserve service named `name`: this kernel's registry, then the discovery files."""
    looked: list[str] = []
    try:
        from nbserve._notebook.registry import REGISTRY

        live = REGISTRY.services().get(name)
    except ImportError:  # the notebook layer's dependencies are absent: skip it
        live = None
    looked.append("this kernel's services (nbserve.services())")
    if live is not None and live.state in ("running", "starting"):
        return RemoteService(live.url, token=live.token, name=name)
    try:
        from nbserve._notebook import discovery

        folder = discovery.discovery_dir()
    except ImportError:
        folder = None
    if folder is not None:
        looked.append(f"the discovery files in {folder}")
        candidates = sorted(folder.glob("*.json"), key=_mtime, reverse=True)
        for path in candidates:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record.get("name") != name or not _alive(record.get("pid")):
                continue
            # Discovery files (mode 0600) hold the service's bearer token since schema 2.
            token = record.get("token") or os.environ.get("NBSERVE_TOKEN")
            return RemoteService(str(record["url"]), token=token, name=name)
    msg = f"depends(deployment={name!r}): no live nbserve service named {name!r}; looked in {' and '.join(looked)}. Serve it first (%%serve or nbserve.serve in a kernel), or use depends(url='http://host:port')"
    raise NotFound(msg)


def _mtime(path: Any) -> float:
    try:
        return float(path.stat().st_mtime)
    except OSError:
        return 0.0


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
