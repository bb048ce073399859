"""The API handler: `POST {prefix}{route}` → decode → traffic gate → call → encode (DESIGN §4).

Per request this does what Tornado already did (parse the request) plus: one dict lookup to
route, one counter check, one timer, the IO layer's decode / validate / encode (built once per
API at decoration), and a few pre-bound metric increments. No schema is built, nothing is
logged at INFO, no thread pool or per-request timer outlives the request (bentoml.md §11).

Request bodies (bentoml.md §2.1–2.2), by `Content-Type` up to its `;`:
- `multipart/form-data`, `application/x-www-form-urlencoded`: form fields and file parts;
- `application/vnd.bentoml+pickle`: 415 (BentoML accepts it only between its own services);
- anything else, or none: JSON (BentoML treats unknown types as JSON; `curl -d` sends a form).
A root input (one positional-only parameter) takes the raw body whatever the type says.

Body size: a body over `max_body_size` gets a JSON 413 (`errors.TooLargeHandler` when the
Content-Length says so, `uploads.ChunkedAPIHandler` when a chunked body grows past it).
Multipart bodies are parsed as they arrive (`uploads.FormAPIHandler`); streamed answers are
sent by `streams.send_stream`.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.httputil

from nbserve._runtime.execution.executor import Withdrawn
from nbserve._runtime.execution.traffic import WorkContinues
from nbserve._runtime.http.errors import BaseHandler, error_for, reply_too_large
from nbserve._runtime.http.streams import send_stream
from nbserve._sdk.context import Context, RequestInfo, ResponseContext, current_context
from nbserve._sdk.io import UploadedFile
from nbserve.exceptions import InvalidArgument, UnsupportedMediaType

if TYPE_CHECKING:
    from nbserve._runtime.deployment import Deployment
    from nbserve._sdk.io import Payload
    from nbserve._sdk.method import APIMethod

__all__ = ["APIHandler", "RequestContext"]

_FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
_PICKLE_TYPE = "application/vnd.bentoml+pickle"
_TOO_MANY = "Too many requests: the service is at its traffic.max_concurrency limit ({limit} in flight); retry later"


class RequestContext(Context):
    """`Context` whose `temp_dir` is made on first use (most requests never touch it)."""

    _temp: Path | None = None

    @property
    def temp_dir(self) -> Path:
        if self._temp is None:
            self._temp = Path(tempfile.mkdtemp(prefix="nbserve-"))
        return self._temp

    @temp_dir.setter
    def temp_dir(self, value: Path) -> None:  # the dataclass __init__ assigns the default
        pass

    def cleanup(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None


class APIHandler(BaseHandler):
    """One API route. Only POST; a GET gets a JSON 405 with `Allow: POST`.

    The router sends a body over the limit (by its Content-Length) to `TooLargeHandler`
    instead, so here Tornado has read the whole body already: no streaming machinery (two more
    event-loop turns per request) on the path every request takes.
    """

    ALLOW = "POST"
    _work: asyncio.Task[Any] | None = None
    """The task running the call while it runs: a client that leaves cancels it."""
    _client_left = False

    def initialize(self, deployment: Deployment, api: APIMethod[..., Any]) -> None:
        self.deployment = deployment
        self.api = api

    def on_connection_close(self) -> None:
        """The client disconnected: cancel its work (queued: withdrawn; async: cancelled; sync
        already in a thread: runs to its end, its result dropped). See `_client_gone`."""
        super().on_connection_close()
        work = self._work
        if work is not None and not work.done():
            self._client_left = True
            work.cancel()

    def body(self) -> bytes | None:
        """The request body, or None when it went over the limit (chunked uploads only)."""
        return self.request.body

    async def get(self) -> None:
        self.reply_error(
            405, f"{self.api.name} is an API: send POST {self.request.path} (GET is not allowed)"
        )

    # --- the request ----------------------------------------------------------------------------
    async def post(self) -> None:
        deployment = self.server.deployment
        if deployment is not self.deployment and not self._follow_swap(deployment):
            return
        route = self.request.path
        metrics = deployment.metrics
        started = time.perf_counter()
        metrics.request_started(route)
        status = 500
        try:
            status = await self._serve(deployment)
        finally:
            elapsed = time.perf_counter() - started
            metrics.request_finished(route, status, elapsed)
            stats = deployment.stats.get(route)
            if stats is not None:
                stats.record(status, elapsed)

    async def _serve(self, deployment: Deployment) -> int:
        body = self.body()
        if body is None:
            reply_too_large(self, self.server.max_body_size)
            return 413
        slot = deployment.traffic.enter()
        if slot is None:
            limit = deployment.traffic.max_concurrency
            self.reply_error(429, _TOO_MANY.format(limit=limit), {"max_concurrency": limit})
            return 429
        api = self.api
        ctx = self._context(deployment)
        current_context.set(ctx)
        self._work = asyncio.current_task()
        try:
            slot.on_close(ctx.cleanup)  # after the work ends, even past a timeout
            kwargs = self._decode(api, body, ctx)
            if api.is_stream:
                return await send_stream(self, deployment, api, kwargs, ctx, slot)
            result = await deployment.traffic.run(deployment.call(api, kwargs, ctx), slot)
            payload = api.output.encode(result)
            return self._respond(payload, ctx)
        except asyncio.CancelledError as exc:
            if not self._client_left:
                raise
            return self._client_gone(deployment, exc)
        except Exception as exc:
            if self._client_left:
                return self._client_gone(deployment, exc)
            return self._reply_exception(exc)
        finally:
            self._work = None
            await slot.close()

    def _client_gone(self, deployment: Deployment, exc: BaseException) -> int:
        """Count what became of the work of a client that left (`/metrics`); 499, as nginx."""
        uncancel = getattr(asyncio.current_task(), "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()  # ours, consumed here: the cleanup after it must not be cancelled
        route, metrics = self.request.path, deployment.metrics
        running = exc if isinstance(exc, WorkContinues) else exc.__cause__
        if isinstance(running, WorkContinues):  # counted when it ends: withdrawn in a worker, ...
            running.future.add_done_callback(
                lambda done: metrics.work_abandoned(
                    route, "cancelled" if done.cancelled() else done.result()
                )
            )
        else:
            metrics.work_abandoned(
                route, "withdrawn" if isinstance(exc, Withdrawn) else "cancelled"
            )
        self.set_status(499, "Client Closed Request")
        return 499

    def _follow_swap(self, deployment: Deployment) -> bool:
        """The service was swapped while the body arrived: the request starts now, so it runs on
        the new version (the old one may already have drained and stopped). False after a 404
        when the new version does not serve this route."""
        api = self._api_on(deployment)
        if api is None:
            self.reply_error(
                404,
                f"Not found: POST {self.request.path}; the service was just replaced and no longer serves it",
                {"routes": list(deployment.api_routes)},
            )
            return False
        self.deployment, self.api = deployment, api
        return True

    def _api_on(self, deployment: Deployment) -> APIMethod[..., Any] | None:
        """The API `deployment` serves at this request's path, if any."""
        return deployment.api_routes.get(self.request.path)

    def _context(self, deployment: Deployment, info: RequestInfo | None = None) -> RequestContext:
        """A fresh context for a call; `info` defaults to this request's (a task retry passes
        the one the task was submitted with)."""
        if info is None:
            request = self.request
            query = request.query_arguments
            info = RequestInfo(
                method=request.method or "POST",
                path=request.path,
                headers={name.lower(): value for name, value in request.headers.get_all()},
                query={k: [v.decode("utf-8", "replace") for v in vs] for k, vs in query.items()}
                if query
                else {},
                client=request.remote_ip,
            )
        return RequestContext(
            request=info,
            response=ResponseContext(),
            state=deployment.shared,
            temp_dir=_NO_DIR,
            request_id=self.request_id,
        )

    def _decode(
        self,
        api: APIMethod[..., Any],
        body: bytes,
        ctx: RequestContext,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Call kwargs from the body; the IO layer validates (its errors are 400s naming the field).

        `content_type` defaults to the request's (a task's retry passes the one it was sent with).
        """
        spec = api.input
        if content_type is None:
            content_type = self.request.headers.get("Content-Type", "")
        temp_dir = ctx.temp_dir if spec.file_fields else None  # made only for file inputs
        if spec.root:
            return spec.from_root(body, content_type, temp_dir)
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type in _FORM_TYPES:
            fields, files = _parse_form(media_type, content_type, body)
            return spec.from_form(fields, files, ctx.temp_dir)
        if media_type == _PICKLE_TYPE:
            msg = f"Content-Type {_PICKLE_TYPE} is only accepted between BentoML's own services; send JSON (application/json) or multipart/form-data"
            raise UnsupportedMediaType(msg)
        return spec.from_json(body)

    # --- responses ------------------------------------------------------------------------------
    def _apply_context(self, ctx: Context) -> None:
        response = ctx.response
        if response.status_code != 200:
            self.set_status(response.status_code)
        replaced: set[str] = set()
        for name, value in response.headers.multi_items():
            # The first value replaces the server's default (Content-Type, say); repeats add.
            if name.lower() in replaced:
                self.add_header(name, value)
            else:
                self.set_header(name, value)
                replaced.add(name.lower())
        for cookie in response.cookies:
            expires = None
            if cookie.expires is not None:
                expires = datetime.now(timezone.utc) + timedelta(seconds=cookie.expires)
            self.set_cookie(
                cookie.key,
                cookie.value,
                domain=cookie.domain,
                expires=expires,
                path=cookie.path,
                max_age=cookie.max_age,
                secure=cookie.secure,
                httponly=cookie.httponly,
                samesite=cookie.samesite,
            )

    def _respond(self, payload: Payload, ctx: Context) -> int:
        self.set_header("Content-Type", payload.media_type)
        for name, value in payload.headers.items():
            self.set_header(name, value)
        if self.api.ctx_param is not None:
            self._apply_context(ctx)
        self.finish(payload.body)
        return self.get_status()

    def _reply_exception(self, exc: BaseException) -> int:
        status, message, detail, is_bug = error_for(exc, self.request_id, expose=self.server.debug)
        if is_bug:
            self.server.log.logger.error(
                "request %s: %s %s raised %s",
                self.request_id,
                self.request.method,
                self.request.path,
                type(exc).__name__,
                exc_info=exc,
            )
        elif status == 504:
            self.server.log.logger.warning(
                "request %s: %s %s", self.request_id, self.request.path, exc
            )
        if self._headers_written:  # a stream that already started: nothing more can be sent
            return status
        self.clear()
        self.reply_error(status, message, detail)
        return status


_NO_DIR = Path()  # RequestContext makes its temp dir lazily; this only skips a Path() per request


def _parse_form(
    media_type: str, content_type: str, body: bytes
) -> tuple[dict[str, list[str]], dict[str, list[UploadedFile]]]:
    """Form fields and file parts; a malformed body is a 400 naming what is wrong."""
    arguments: dict[str, list[bytes]] = {}
    files: dict[str, list[tornado.httputil.HTTPFile]] = {}
    _, sep, params = content_type.partition(";")
    try:  # Tornado compares the media type case-sensitively; it is case-insensitive (RFC 9110)
        tornado.httputil.parse_body_arguments(media_type + sep + params, body, arguments, files)
    except tornado.httputil.HTTPInputError as exc:
        msg = f"Malformed {media_type} body: {exc}; let the HTTP client build it (curl -F name=@file, httpx files=...)"
        raise InvalidArgument(msg) from None
    fields = {
        name: [v.decode("utf-8", "replace") for v in values] for name, values in arguments.items()
    }
    uploads = {
        name: [UploadedFile(f.filename, f.content_type, f.body) for f in parts]
        for name, parts in files.items()
    }
    return fields, uploads
