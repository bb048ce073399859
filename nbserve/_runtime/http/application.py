"""Routing: which handler serves a request, decided from the current deployment's tables.

Tornado's own router walks a list of regexes; here a request costs a few dict lookups (API routes,
system routes, then the task routes of `@task` APIs), and the tables come from the deployment
that is current when the request's headers arrive, so a hot swap changes routing without
rebuilding the application. A body whose Content-Length is over the server's limit goes to
`TooLargeHandler` before any other check, so it gets a JSON 413 whatever its path. A multipart
body to an API goes to `uploads.FormAPIHandler`, which parses it as it arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tornado.httputil
import tornado.web

from nbserve._runtime.execution.command import CommandProxyHandler
from nbserve._runtime.http.admin import ADMIN_PREFIX, admin_handler
from nbserve._runtime.http.api import APIHandler
from nbserve._runtime.http.asgi import AsgiHandler, match_mount
from nbserve._runtime.http.errors import (
    NotFoundHandler,
    TooLargeHandler,
    silence_tornado_access_log,
)
from nbserve._runtime.http.uploads import ChunkedAPIHandler, FormAPIHandler

if TYPE_CHECKING:
    from nbserve._runtime.server import Server

__all__ = ["Application"]


class Application(tornado.web.Application):
    """Routes by the current deployment's tables (two dict lookups), not a regex list."""

    def __init__(self, server: Server) -> None:
        super().__init__(
            [],
            default_handler_class=NotFoundHandler,
            log_function=silence_tornado_access_log,
            compress_response=False,
            serve_traceback=False,
        )
        self.server = server

    def find_handler(
        self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any
    ) -> tornado.web._HandlerDelegate:
        server = self.server
        headers = request.headers
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > server.max_body_size:
            return self.get_handler_delegate(request, TooLargeHandler)
        deployment = server.deployment
        path = request.path
        if server.admin_secret is not None and path.startswith(ADMIN_PREFIX):
            admin = admin_handler(path)  # the Jupyter server extension's status/logs/stop
            return self.get_handler_delegate(request, admin or NotFoundHandler)
        method = request.method
        api = deployment.api_routes.get(path)
        chunked = length is None and "Transfer-Encoding" in headers
        if (
            api is not None
            and (method not in ("GET", "HEAD") or path not in deployment.system_routes)
            # GET /a/get is task API /a's result, even next to an API routed at /a/get (POST)
            and (method == "POST" or path not in deployment.task_routes)
        ):
            # An API routed at "/" still leaves GET / to the docs page, as in BentoML.
            handler = ChunkedAPIHandler if chunked else APIHandler
            if (
                not api.input.root  # a root input takes the raw body, whatever its type
                and headers.get("Content-Type", "")[:19].lower() == "multipart/form-data"
            ):
                handler = FormAPIHandler  # parsed as it arrives, large parts to disk
            return self.get_handler_delegate(
                request, handler, {"deployment": deployment, "api": api}
            )
        system = deployment.system_routes.get(path)
        if system is not None:
            return self.get_handler_delegate(request, system, {"deployment": deployment})
        task = deployment.task_routes.get(path)
        if task is not None:  # `@task` APIs: <route>/submit, /status, /get, /retry, /cancel
            return self.get_handler_delegate(
                request,
                task.chunked_handler if chunked else task.handler,
                {"deployment": deployment, "api": task.api},
            )
        if deployment.mounts:  # ASGI apps answer what no API or system route takes
            mount = match_mount(deployment.mounts, path)
            if mount is not None:
                return self.get_handler_delegate(
                    request,
                    AsgiHandler,
                    {"mount": mount, "root_path": mount.path, "state": deployment.lifespan.state},
                )
        if deployment.command is not None:  # `cmd=` services: the command serves the rest
            return self.get_handler_delegate(
                request,
                CommandProxyHandler,
                {"deployment": deployment, "command": deployment.command},
            )
        return self.get_handler_delegate(request, NotFoundHandler)
