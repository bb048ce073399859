"""Mounting ASGI apps (FastAPI, Starlette, ...) on a service, as BentoML does.

```python
app = FastAPI()

@nbserve.service
@nbserve.asgi_app(app, path="/v1")
class Summarizer:
    @app.get("/health")               # a FastAPI route; `self` is the service instance
    def health(self) -> dict: ...

    @nbserve.api
    def summarize(self, text: str) -> str: ...
```
The app answers every path under `{path_prefix}{path}` that no API takes, on the same port,
with its lifespan run when the service starts and stops. `Service.mount_asgi_app(app, path)`
does the same after decoration.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nbserve.exceptions import ServiceDefinitionError

__all__ = ["ASGIApp", "MountedApp", "asgi_app", "make_class_views", "mount_path"]

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]
R = TypeVar("R")
CLASS_ATTR = "__nbserve_mounted_apps__"


@dataclass(frozen=True)
class MountedApp:
    app: Any
    path: str
    name: str | None


def mount_path(path: str) -> str:
    """`"v1/"` → `"/v1"`, `"/"` → `""` (the root); refuses what cannot be a URL path."""
    if not isinstance(path, str) or any(c in path for c in "?#") or "//" in path:
        msg = f"asgi_app(path={path!r}): the mount path must be a URL path such as '/v1' or '/'"
        raise ServiceDefinitionError(msg)
    stripped = path.strip("/")
    return f"/{stripped}" if stripped else ""


def _check_app(app: Any) -> None:
    if not callable(app):
        msg = f"asgi_app({app!r}): expected an ASGI application (a FastAPI or Starlette app, or an `async def app(scope, receive, send)`)"
        raise ServiceDefinitionError(msg)


def asgi_app(app: Any, *, path: str = "/", name: str | None = None) -> Callable[[R], R]:
    """Mount `app` under `path` on the service this decorates (above or below `@service`)."""
    from nbserve._sdk.service import Service

    _check_app(app)
    mounted = MountedApp(app, mount_path(path), name)

    def decorate(obj: R) -> R:
        if isinstance(obj, Service):
            obj.mounted_apps.append(mounted)
            make_class_views(obj.inner, app)
        elif inspect.isclass(obj):
            apps = list(getattr(obj, CLASS_ATTR, []))
            apps.append(mounted)
            setattr(obj, CLASS_ATTR, apps)
            make_class_views(obj, app)
        else:
            msg = f"@asgi_app decorates a service class, got {obj!r}"
            raise ServiceDefinitionError(msg)
        return obj

    return decorate


def make_class_views(cls: type, app: Any) -> None:
    """FastAPI routes written as methods of the service class get the served instance as
    `self` (through `Depends(get_current_service)`), as in BentoML."""
    try:
        from fastapi import APIRouter, Depends, FastAPI
        from fastapi.routing import APIRoute
    except ImportError:
        return
    if not isinstance(app, FastAPI):
        return
    from nbserve._sdk.current import get_current_service

    methods = [m for m in vars(cls).values() if callable(m)]
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.endpoint in methods]
    if not routes:
        return
    router = APIRouter()
    for route in routes:
        app.routes.remove(route)
        signature = inspect.signature(route.endpoint)
        params = list(signature.parameters.values())
        if not params:
            msg = f"FastAPI route {route.path} on {cls.__name__}: a class view takes `self`"
            raise ServiceDefinitionError(msg)
        first = params[0].replace(default=Depends(get_current_service))
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[1:]]
        route.endpoint.__signature__ = signature.replace(parameters=[first, *rest])  # type: ignore[attr-defined]
        router.routes.append(route)
    app.include_router(router)
