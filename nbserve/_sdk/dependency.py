"""`depends(on=Service)`, `depends(url=...)`, `depends(deployment=...)`: use another service.

What the attribute resolves to, decided at each access (so a hot swap or a stop is followed):
- `url=`: a `RemoteService` (`_sdk/remote.py`) whose methods are the remote APIs, read from its
  `/schema.json`; `.to_async` gives awaitable versions.
- `deployment=`: the live nbserve service of that name (this kernel's `nbserve.services()`, else
  the discovery files kernels write), as a `RemoteService`; a clear `NotFound` otherwise.
- a service class that runs in its own worker pool (`_runtime/execution/composition.py` decides and
  registers its internal endpoint, in this process and, by environment, in the workers): a
  `RemoteService` to that pool, so its batching and placement apply.
- any other service class: an in-process instance (what BentoML does in development mode),
  created on first access and shared by the instances of one process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from nbserve.exceptions import ServiceDefinitionError

if TYPE_CHECKING:
    from nbserve._sdk.remote import RemoteService
    from nbserve._sdk.service import Service

__all__ = ["Dependency", "depends"]

T = TypeVar("T")


class Dependency(Generic[T]):
    """A class attribute that resolves to the dependency (see the module docstring)."""

    def __init__(
        self,
        on: Service[T] | None = None,
        *,
        url: str | None = None,
        deployment: str | None = None,
    ) -> None:
        self.on = on
        self.url = url
        self.deployment = deployment
        self._inline: Any = None
        self._remote: dict[tuple[str, str | None], RemoteService] = {}
        self._lock = threading.Lock()
        self._deployments = 0  # started deployments whose service declares this dependency

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    @overload
    def __get__(self, instance: None, owner: type) -> Dependency[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object | None, owner: type) -> Any:
        if instance is None:
            return self
        return self.get()

    def get(self) -> Any:
        from nbserve._sdk.remote import (
            RemoteService,
            deployment_key,
            resolve_deployment,
            service_endpoint,
        )

        if self.url is not None:
            return self._remote_for(self.url, None, lambda: RemoteService(self.url or ""))
        if self.deployment is not None:
            # Looked up once per process: the registry and discovery files are not read per call.
            with self._lock:
                found = next(iter(self._remote.values()), None)
            if found is not None:
                return found
            # Resolved by the server at start (with the token a kernel's registry knows), for
            # its workers; else looked up here.
            known = service_endpoint(deployment_key(self.deployment))
            if known is not None:
                name = self.deployment
                return self._remote_for(
                    known.url,
                    known.token,
                    lambda: RemoteService(known.url, token=known.token, name=name),
                )
            remote = resolve_deployment(self.deployment)
            return self._remote_for(remote.url, remote.token, lambda: remote)
        assert self.on is not None
        endpoint = service_endpoint(self.on.name)
        if endpoint is not None:
            return self._remote_for(
                endpoint.url,
                endpoint.token,
                lambda: RemoteService(
                    endpoint.url,
                    token=endpoint.token,
                    name=self.on_name,
                    timeout=endpoint.timeout,
                ),
            )
        with self._lock:
            if self._inline is None:
                # `.inner()`, not `on()`: a dependency is not the service this process serves
                # (`get_current_service()` stays the outer one).
                self._inline = self.on.inner()
            return self._inline

    def acquire(self) -> None:
        """A deployment using this dependency starts (see `release_if_unused`)."""
        with self._lock:
            self._deployments += 1

    async def release_if_unused(self) -> None:
        """A deployment stops: close the clients once no other one (a hot swap's) uses them."""
        with self._lock:
            self._deployments = max(self._deployments - 1, 0)
            unused = self._deployments == 0
        if unused:
            await self.release()

    async def release(self, url: str | None = None) -> None:
        """Close and forget the clients to `url` (every client without one): a server stops."""
        with self._lock:
            gone = [key for key in self._remote if url is None or key[0] == url]
            remotes = [self._remote.pop(key) for key in gone]
        for remote in remotes:
            await remote.aclose()

    @property
    def on_name(self) -> str:
        return self.on.name if self.on is not None else (self.deployment or self.url or "")

    def _remote_for(self, url: str, token: str | None, make: Any) -> RemoteService:
        with self._lock:
            remote = self._remote.get((url, token))
            if remote is None:
                remote = make()
                self._remote[(url, token)] = remote
            return remote


def depends(
    on: Service[T] | None = None,
    *,
    url: str | None = None,
    deployment: str | None = None,
    **kwargs: Any,
) -> Dependency[T]:
    """Declare a dependency on another service: `encoder = nbserve.depends(Encoder)`.

    `depends(url="http://host:port")` reaches a running service over HTTP;
    `depends(deployment="Name")` the live nbserve service of that name.
    """
    from nbserve._sdk.service import Service

    if kwargs:
        msg = f"depends(): {', '.join(sorted(kwargs))} not supported by nbserve (BentoCloud options); use on=Service, url='http://host:port' or deployment='ServiceName'"
        raise ServiceDefinitionError(msg)
    given = [x for x in (on, url, deployment) if x is not None]
    if len(given) != 1:
        msg = "depends() takes exactly one of on=<a @service class>, url='http://host:port' or deployment='ServiceName'"
        raise ServiceDefinitionError(msg)
    if on is not None and not isinstance(cast(object, on), Service):
        msg = f"depends(on={on!r}): expected a class decorated with @nbserve.service"
        raise ServiceDefinitionError(msg)
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        msg = f"depends(url={url!r}): expected an http(s) URL such as 'http://127.0.0.1:3000'"
        raise ServiceDefinitionError(msg)
    if deployment is not None and (not isinstance(deployment, str) or not deployment):
        msg = f"depends(deployment={deployment!r}): expected the name of a running nbserve service, e.g. deployment='Encoder'"
        raise ServiceDefinitionError(msg)
    return Dependency(on, url=url, deployment=deployment)
