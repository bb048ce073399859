"""`depends(on=Service)`: use another service from this one.

For now the dependency is an in-process instance of the other service (what BentoML does in
development mode), created on first access and shared by the instances of one process.
`depends(url=...)` returns a `SyncHTTPClient` to a remote service.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from nbserve.exceptions import ServiceDefinitionError

if TYPE_CHECKING:
    from nbserve._sdk.service import Service

__all__ = ["Dependency", "depends"]

T = TypeVar("T")


class Dependency(Generic[T]):
    """A class attribute that resolves to the dependency's instance (or a client for `url`)."""

    def __init__(self, on: Service[T] | None = None, *, url: str | None = None) -> None:
        self.on = on
        self.url = url
        self._resolved: Any = None
        self._lock = threading.Lock()

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
        with self._lock:
            if self._resolved is None:
                if self.url is not None:
                    from nbserve._client import SyncHTTPClient

                    self._resolved = SyncHTTPClient(self.url)
                else:
                    assert self.on is not None
                    # `.inner()`, not `on()`: a dependency is not the service this process serves
                    # (`get_current_service()` stays the outer one).
                    self._resolved = self.on.inner()
            return self._resolved


def depends(
    on: Service[T] | None = None, *, url: str | None = None, **kwargs: Any
) -> Dependency[T]:
    """Declare a dependency on another service: `encoder = nbserve.depends(Encoder)`."""
    from nbserve._sdk.service import Service

    if kwargs:
        msg = f"depends(): {', '.join(sorted(kwargs))} not supported by nbserve (BentoCloud options); use on=Service or url='http://host:port'"
        raise ServiceDefinitionError(msg)
    if (on is None) == (url is None):
        msg = "depends() takes exactly one of on=<a @service class> or url='http://host:port'"
        raise ServiceDefinitionError(msg)
    if on is not None and not isinstance(cast(object, on), Service):
        msg = f"depends(on={on!r}): expected a class decorated with @nbserve.service"
        raise ServiceDefinitionError(msg)
    return Dependency(on, url=url)
