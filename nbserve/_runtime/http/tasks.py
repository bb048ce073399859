"""The HTTP side of `@task` APIs: `<route>/submit`, `/status`, `/get`, `/retry`, `/cancel`.

What each route answers, and how tasks run and are kept, is in `execution/task_store.py`. The handlers derive
from `APIHandler` to decode a submitted body exactly as a direct call's (same content types,
same 400s) and to replay a result exactly as a direct call would send it (`ctx.response`
included). Errors are nbserve's JSON object; the messages start with BentoML's wording
("task_id is required", "task <id> is not completed yet") and go on to say what to do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
import tornado.web

from nbserve._runtime.execution.task_store import TaskRecord, TaskRequest
from nbserve._runtime.http.api import APIHandler, RequestContext
from nbserve._runtime.http.errors import reply_too_large
from nbserve._runtime.http.uploads import ChunkedAPIHandler

if TYPE_CHECKING:
    from nbserve._runtime.deployment import Deployment
    from nbserve._sdk.method import APIMethod

__all__ = ["TaskRoute", "task_routes"]

Action = Literal["submit", "status", "get", "retry", "cancel"]


class _TaskHandler(APIHandler):
    """Base of the task routes: each serves one method; the others get a JSON 405."""

    ALLOW: ClassVar[str] = "GET"

    async def get(self) -> None:
        self._not_allowed()

    async def post(self) -> None:
        self._not_allowed()

    async def put(self) -> None:
        self._not_allowed()

    def _not_allowed(self) -> None:
        message = (
            f"Method {self.request.method} is not allowed on {self.request.path}; use {self.ALLOW}"
        )
        self.reply_error(405, message)

    @property
    def _base(self) -> str:
        """The task API's own route (this path without its last segment)."""
        return self.request.path.rpartition("/")[0]

    def _reply_json(self, value: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(value))

    def _record(self) -> TaskRecord | None:
        """The task `?task_id=` names, or None after answering 400 / 404."""
        task_id = self.get_query_argument("task_id", None)
        if not task_id:
            self.reply_error(
                400,
                f"task_id is required: send {self.request.method} {self.request.path}?task_id=<the task_id that POST {self._base}/submit returned>",
            )
            return None
        record = self.deployment.tasks.get(task_id)
        if record is None or record.api.name != self.api.name:
            tasks = self.deployment.tasks
            self.reply_error(
                404,
                f"task_id {task_id!r} not found: {self.api.name} has no such task (finished tasks are kept {tasks.retention_s:g} s, at most {tasks.max_finished}, and a restart forgets them); submit it again with POST {self._base}/submit",
                {"task_id": task_id},
            )
            return None
        return record

    def _submit(self, deployment: Deployment, request: TaskRequest, ctx: RequestContext) -> None:
        """Decode `request` (400 if invalid) and start it as a new task; answer its status."""
        try:
            kwargs = self._decode(self.api, request.body, ctx, request.content_type)
            record = deployment.tasks.submit(self.api, kwargs, ctx, request, ctx.cleanup)
        except Exception as exc:
            ctx.cleanup()
            self._reply_exception(exc)
            return
        self._reply_json(record.describe())

    def _not_finished(self, record: TaskRecord, what: str) -> None:
        self.reply_error(
            400,
            f"task {record.id} is not completed yet (it is {record.status}); {what}, polling GET {self._base}/status?task_id={record.id}",
            record.describe(),
        )


class SubmitHandler(_TaskHandler):
    """`POST <route>/submit`: decode and validate the body now, run the call in the background."""

    ALLOW = "POST"

    def _api_on(self, deployment: Deployment) -> APIMethod[..., Any] | None:
        route = deployment.task_routes.get(self.request.path)
        return route.api if route is not None and route.action == "submit" else None

    async def post(self) -> None:
        deployment = self.server.deployment
        # Swapped while the body arrived: submit to the version now serving (the old one may
        # already be draining and takes no new tasks).
        if deployment is not self.deployment and not self._follow_swap(deployment):
            return
        body = self.body()
        if body is None:
            reply_too_large(self, self.server.max_body_size)
            return
        ctx = self._context(deployment)
        content_type = self.request.headers.get("Content-Type", "")
        request = TaskRequest(body, content_type, ctx.request, self.request_id)
        self._submit(deployment, request, ctx)


@tornado.web.stream_request_body
class ChunkedSubmitHandler(SubmitHandler, ChunkedAPIHandler):
    """`POST <route>/submit` with a chunked body (BentoML's client sends JSON bodies chunked)."""


class StatusHandler(_TaskHandler):
    """`GET <route>/status?task_id=`: the status object."""

    async def get(self) -> None:
        record = self._record()
        if record is not None:
            self._reply_json(record.describe())


class ResultHandler(_TaskHandler):
    """`GET <route>/get?task_id=`: the stored response, as the direct call would have sent it."""

    async def get(self) -> None:
        record = self._record()
        if record is None:
            return
        result = record.result
        if record.status == "canceled" or result is None:
            if record.status == "canceled":
                self.reply_error(
                    400,
                    f"task {record.id} was canceled, so it has no result; run it again with POST {self._base}/retry?task_id={record.id}",
                    record.describe(),
                )
            else:
                self._not_finished(record, "get its result once it has finished")
            return
        self.set_status(result.status)
        self.set_header("Content-Type", result.media_type)
        for name, value in result.headers.items():
            self.set_header(name, value)
        if result.ctx is not None:
            self._apply_context(result.ctx)
        self.finish(result.body)


class RetryHandler(_TaskHandler):
    """`POST <route>/retry?task_id=`: submit a finished task's request again, as a new task."""

    ALLOW = "POST"

    async def post(self) -> None:
        record = self._record()
        if record is None:
            return
        if not record.finished:
            self._not_finished(record, "retry it once it has finished")
            return
        original = record.request
        # A context for the request it was submitted with (a copy: the new task owns it).
        ctx = self._context(self.deployment, dataclasses.replace(original.info))
        request = TaskRequest(original.body, original.content_type, ctx.request, self.request_id)
        self._submit(self.deployment, request, ctx)


class CancelHandler(_TaskHandler):
    """`PUT <route>/cancel?task_id=`: cancel a task that has not started yet."""

    ALLOW = "PUT"

    async def put(self) -> None:
        record = self._record()
        if record is None:
            return
        if self.deployment.tasks.cancel(record):
            self._reply_json(record.describe())
            return
        if record.status == "in_progress":
            message = f"task {record.id} is already running (since {record.executed_at.isoformat() if record.executed_at else '?'}) and cannot be canceled; wait for it with GET {self._base}/status?task_id={record.id}"
        else:
            message = f"task {record.id} has already finished ({record.status}); there is nothing to cancel"
        self.reply_error(400, message, record.describe())


@dataclass(frozen=True)
class TaskRoute:
    """One task route of one API: the handler for a plain body and for a chunked one."""

    api: APIMethod[..., Any]
    action: Action
    handler: type[_TaskHandler]
    chunked_handler: type[_TaskHandler]


_HANDLERS: dict[Action, type[_TaskHandler]] = {
    "submit": SubmitHandler,
    "status": StatusHandler,
    "get": ResultHandler,
    "retry": RetryHandler,
    "cancel": CancelHandler,
}


def task_routes(prefix: str, apis: Iterable[APIMethod[..., Any]]) -> dict[str, TaskRoute]:
    """Path → task route, for the `@task` APIs among `apis` (an API at `/` gets `/submit`...)."""
    routes: dict[str, TaskRoute] = {}
    for api in apis:
        if not api.is_task:
            continue
        base = prefix + api.route.rstrip("/")
        for action, handler in _HANDLERS.items():
            chunked = ChunkedSubmitHandler if action == "submit" else handler
            routes[f"{base}/{action}"] = TaskRoute(api, action, handler, chunked)
    return routes
