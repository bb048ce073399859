"""The routes the server owns, all under the service's `path_prefix` (BentoML §2.6, §10 B):

| route | answer |
|---|---|
| `/livez`, `/healthz` | 200 `"\\n"`; 503 if the instance's `__is_alive__()` is False |
| `/readyz` | 200 `"\\n"` once started and `__is_ready__()` (if any) is True; 503 before |
| `/metrics` | Prometheus text, BentoML's metric names; `__metrics__(text)` may rewrite it |
| `/schema.json` | the service schema BentoML's client reads; with a prefix, at the root too (routes prefixed, where BentoML serves it) and under the prefix (routes relative) |
| `/docs.json` | the OpenAPI 3 document |
| `/` | the docs page (self-contained: works offline) |

The probes need no token (Kubernetes sends none); the rest do when the server has one. Bodies
that never change (schema, OpenAPI, docs page) are encoded once per deployment, on first use.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

import orjson

from nbserve._runtime.http.errors import BaseHandler

if TYPE_CHECKING:
    from nbserve._runtime.deployment import Deployment
    from nbserve._runtime.execution.executor import Probe

__all__ = ["system_routes"]

_PLAIN = "text/plain; charset=utf-8"


class SystemHandler(BaseHandler):
    """GET/HEAD only; anything else is a JSON 405 with `Allow: GET, HEAD`."""

    deployment: Deployment

    def initialize(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.finish(body)

    async def head(self) -> None:
        await self.get()

    async def get(self) -> None:
        raise NotImplementedError


class ProbeHandler(SystemHandler):
    PUBLIC = True
    probe: ClassVar[Probe] = "__is_alive__"
    needs_ready: ClassVar[bool] = False

    async def get(self) -> None:
        deployment = self.deployment
        if not deployment.ready:
            if self.needs_ready or deployment.state in ("failed", "stopped"):
                self._send(
                    f"Service {deployment.service.name} is {deployment.state}\n".encode(),
                    _PLAIN,
                    503,
                )
                return
            self._send(b"\n", _PLAIN)  # alive while starting: __init__ may take minutes
            return
        command = deployment.command
        # `cmd=` services: not ready while the command is down; not live once restarts gave up.
        if command is not None and not command.ready and (self.needs_ready or command.gave_up):
            self._send(f"{command.down_reason}\n".encode(), _PLAIN, 503)
            return
        try:
            ok = await deployment.executor.check(self.probe)
        except Exception:
            deployment.log.logger.exception("%s() raised; answering 503", self.probe)
            ok = False
        if ok:
            self._send(b"\n", _PLAIN)
        else:
            self._send(f"{self.probe}() returned False\n".encode(), _PLAIN, 503)


class LiveHandler(ProbeHandler):
    probe = "__is_alive__"


class ReadyHandler(ProbeHandler):
    probe = "__is_ready__"
    needs_ready = True


class MetricsHandler(SystemHandler):
    async def get(self) -> None:
        deployment = self.deployment
        # Rendering takes milliseconds per endpoint (tens with many): off the event loop, so a
        # scrape does not hold up requests. The registry's values are lock-protected.
        loop = asyncio.get_running_loop()
        body, content_type = await loop.run_in_executor(None, deployment.metrics.render)
        if deployment.ready:
            text = await deployment.executor.metrics_text(body.decode())
            body = text.encode()
        if deployment.dependencies.servers:  # depended services in their own pools (composition)
            body = await loop.run_in_executor(None, deployment.dependencies.render_metrics, body)
        self._send(body, content_type)


class _CachedDocument(SystemHandler):
    """A body built once per deployment (on first request) and then served from memory."""

    key: ClassVar[str]
    content_type: ClassVar[str] = "application/json"

    def build(self) -> bytes:
        raise NotImplementedError

    async def get(self) -> None:
        cache: dict[str, bytes] = self.deployment.system_cache
        body = cache.get(self.key)
        if body is None:
            body = cache[self.key] = self.build()
        self._send(body, self.content_type)


class SchemaHandler(_CachedDocument):
    key = "schema"

    def build(self) -> bytes:
        return orjson.dumps(self.deployment.service.schema())


class RootSchemaHandler(_CachedDocument):
    """`/schema.json` at the root of a prefixed service, its routes carrying the prefix.

    Where BentoML serves it (and so where BentoML's client, given the server's root URL,
    fetches it): the routes are then joined onto the root, so they must include the prefix.
    """

    key = "root_schema"

    def build(self) -> bytes:
        prefix = self.deployment.prefix
        schema = dict(self.deployment.service.schema())
        schema["routes"] = [{**r, "route": prefix + r["route"]} for r in schema["routes"]]
        schema["paths"] = {prefix + path: v for path, v in schema["paths"].items()}
        return orjson.dumps(schema)


class OpenAPIHandler(_CachedDocument):
    key = "openapi"

    def build(self) -> bytes:
        return orjson.dumps(self.deployment.service.openapi_spec)


class DocsPageHandler(_CachedDocument):
    key = "docs_page"
    content_type = "text/html; charset=utf-8"

    def build(self) -> bytes:
        from nbserve._runtime.http.docs_page import docs_page_html

        return docs_page_html(self.deployment.service)


class SlashRedirect(SystemHandler):
    """`{prefix}` → `{prefix}/`: the docs page fetches `./schema.json`, which needs the slash."""

    PUBLIC = True

    async def get(self) -> None:
        self.redirect(self.request.path + "/", permanent=True)


def system_routes(prefix: str) -> dict[str, type[SystemHandler]]:
    """Path → handler class for one deployment's prefix."""
    routes: dict[str, type[SystemHandler]] = {
        f"{prefix}/livez": LiveHandler,
        f"{prefix}/healthz": LiveHandler,
        f"{prefix}/readyz": ReadyHandler,
        f"{prefix}/metrics": MetricsHandler,
        f"{prefix}/schema.json": SchemaHandler,
        f"{prefix}/docs.json": OpenAPIHandler,
        f"{prefix}/": DocsPageHandler,
    }
    if prefix:
        routes[prefix] = SlashRedirect
        # Given the server's origin, BentoML's client reads /schema.json and polls /readyz
        # there; BentoML serves only the schema at the root, so its own client cannot reach
        # a prefixed BentoML service that way. Both answer here.
        routes["/schema.json"] = RootSchemaHandler
        for probe in ("/livez", "/healthz", "/readyz"):
            routes[probe] = routes[prefix + probe]
    return routes
