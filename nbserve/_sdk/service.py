"""`@service`: turns a plain class into a `Service`, the unit nbserve serves and exports.

The decorator collects the class's APIs, lifecycle hooks and dependencies and checks the whole
declaration at once, so a mistake surfaces when the cell runs, not on the first request.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from nbserve._sdk.asgi import CLASS_ATTR as ASGI_ATTR
from nbserve._sdk.asgi import MountedApp
from nbserve._sdk.config import ServiceConfig, parse_service_config
from nbserve._sdk.dependency import Dependency
from nbserve._sdk.hooks import HOOK_ATTR
from nbserve._sdk.method import APIMethod
from nbserve.exceptions import ServiceDefinitionError

if TYPE_CHECKING:
    from nbserve._runtime.server import ServiceHandle

__all__ = ["SYSTEM_ROUTES", "Service", "service"]

T = TypeVar("T")

# GET routes the server owns; an API may not take them.
SYSTEM_ROUTES = frozenset(
    {"/readyz", "/livez", "/healthz", "/metrics", "/schema.json", "/docs.json"}
)


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Service(Generic[T]):
    """A decorated service class. Call it to get an instance; `serve()` it to get a server."""

    def __init__(self, inner: type[T], *, name: str | None = None, config: ServiceConfig) -> None:
        self.inner = inner
        self.name = name or inner.__name__
        self.config = config
        self.doc = inspect.getdoc(inner)
        self.source: str | None = None
        """The notebook cell this service came from (set by `%%serve`; the exporter needs it)."""
        self.apis: dict[str, APIMethod[..., Any]] = {}
        self.startup_hooks: list[str] = []
        self.shutdown_hooks: list[str] = []
        self.deployment_hooks: list[Callable[[], Any]] = []
        self.dependencies: dict[str, Dependency[Any]] = {}
        self.mounted_apps: list[MountedApp] = list(getattr(inner, ASGI_ATTR, []))
        """ASGI apps (`asgi_app` / `mount_asgi_app`) answering under their paths."""
        self._schema: dict[str, Any] | None = None
        self._openapi: dict[str, Any] | None = None
        self._collect()
        _add_views(inner)

    def _collect(self) -> None:
        routes: dict[str, str] = {}
        seen: set[str] = set()
        for klass in reversed(self.inner.__mro__):  # base classes first, subclasses override
            for attr, value in vars(klass).items():
                seen.add(attr)
                if isinstance(value, APIMethod):
                    self.apis.pop(value.name, None)
                    self.apis[value.name] = value
                elif isinstance(value, Dependency):
                    self.dependencies[attr] = value
                elif (
                    isinstance(value, staticmethod)
                    and getattr(value.__func__, HOOK_ATTR, None) == "deployment"
                ):
                    self.deployment_hooks.append(value.__func__)
                elif callable(value) and (kind := getattr(value, HOOK_ATTR, None)):
                    hooks = self.startup_hooks if kind == "startup" else self.shutdown_hooks
                    if attr not in hooks:
                        hooks.append(attr)
        problems = []
        for api in self.apis.values():
            if api.route in SYSTEM_ROUTES:
                problems.append(
                    f"API {api.name!r} uses route {api.route!r}, which the server owns; pick another, e.g. route='/{api.name}'"
                )
            if api.route in routes:
                problems.append(
                    f"APIs {routes[api.route]!r} and {api.name!r} share route {api.route!r}; give one of them route='/...'"
                )
            routes[api.route] = api.name
        if problems:
            msg = f"@service {self.name}: " + "; ".join(problems)
            raise ServiceDefinitionError(msg)

    # --- using the service -------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> T:
        """Instantiate the user class directly (no HTTP), as BentoML's `Service()` does.

        The runtime makes the served instance this way, so it becomes `get_current_service()`.
        """
        from nbserve._sdk.current import set_current_service

        instance = self.inner(*args, **kwargs)
        set_current_service(instance)
        return instance

    def mount_asgi_app(self, app: Any, path: str = "/", name: str | None = None) -> None:
        """Serve the ASGI app `app` (FastAPI, Starlette, ...) under `path`, as BentoML does."""
        from nbserve._sdk.asgi import asgi_app

        asgi_app(app, path=path, name=name)(self)
        self._schema = self._openapi = None

    def to_asgi(self) -> Any:
        """This service as one ASGI app, for any ASGI server or FastAPI's `TestClient`."""
        from nbserve._runtime.http.to_asgi import ServiceASGI

        return ServiceASGI(self)

    @property
    def bento_name(self) -> str:
        """The bento / metric name: `IrisClassifier` → `iris_classifier`."""
        return _snake_case(self.name)

    @property
    def path_prefix(self) -> str:
        return self.config.path_prefix

    def schema(self) -> dict[str, Any]:
        """The `/schema.json` document, built once."""
        if self._schema is None:
            # Routes are relative to the service's base URL (prefix included), which is where
            # the schema itself is served: clients join them onto that base, so a prefixed
            # route here would be requested as /v1/v1/x (BentoML's prefix bug, reference §3.4).
            self._schema = {
                "name": self.name,
                "type": "service",
                "description": self.doc,
                "routes": [api.schema() for api in self.apis.values()],
                "paths": {
                    **{api.route: {"mounted": False} for api in self.apis.values()},
                    **{(m.path or "/"): {"mounted": True} for m in self.mounted_apps},
                },
            }
        return self._schema

    @property
    def openapi_spec(self) -> dict[str, Any]:
        """The OpenAPI 3 document served at `/docs.json`, built once."""
        if self._openapi is None:
            from nbserve._sdk.openapi import openapi_document

            self._openapi = openapi_document(self)
        return self._openapi

    def serve(self, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> ServiceHandle:
        """Start serving on a background thread; see `nbserve.serve`."""
        from nbserve._runtime.handle import serve

        return serve(self, host=host, port=port, **options)

    def __repr__(self) -> str:
        return f"<nbserve Service {self.name}: {', '.join(self.apis) or 'no APIs'}>"


def _add_views(inner: type) -> None:
    """Give instances BentoML's `to_async` / `to_sync` views, unless the class has its own."""
    from nbserve._sdk.asyncify import ToAsync, ToSync

    for attr, view in (("to_async", ToAsync()), ("to_sync", ToSync())):
        if not any(attr in vars(klass) for klass in inner.__mro__):
            setattr(inner, attr, view)


@overload
def service(inner: type[T], /) -> Service[T]: ...
@overload
def service(
    inner: None = None, /, *, name: str | None = None, **options: Any
) -> Callable[[type[T]], Service[T]]: ...
def service(inner: type[Any] | None = None, /, *, name: str | None = None, **options: Any) -> Any:
    """Declare a service class. Bare (`@service`) or with BentoML's options:

    `name`, `resources` ({cpu, memory, gpu, gpu_type}), `traffic` ({timeout, max_concurrency}),
    `workers` (int or "cpu_count"), `threads`, `envs`, `labels`, `path_prefix`, `image`.
    """

    def decorate(cls: type[Any]) -> Service[Any]:
        if isinstance(cast(object, cls), Service):
            msg = f"@service applied twice to {cls.name}; keep one @nbserve.service decorator"
            raise ServiceDefinitionError(msg)
        if not inspect.isclass(cls):
            msg = f"@service decorates a class, got {cls!r}; write `@nbserve.service` above `class MyService:`"
            raise ServiceDefinitionError(msg)
        if name is not None and (not isinstance(name, str) or not name):
            msg = f"@service(name={name!r}): the name must be a non-empty string"
            raise ServiceDefinitionError(msg)
        config = parse_service_config(
            {**options, **({"name": name} if name else {})}, where=cls.__qualname__
        )
        return Service(cls, name=name, config=config)

    if inner is not None:
        return decorate(inner)
    return decorate
