"""The OpenAPI 3.0.2 document served at `{prefix}/docs.json`, in BentoML 1.4's shape.

Tools written against BentoML's document (API gateways, client generators, the docs page) find
the same structure: a relative `servers` URL, the "Service APIs" and "Infrastructure" tags,
`x-bentoml-name` and `operationId: "<Service>__<api>"` on every operation. nbserve differs where
BentoML is wrong (bentoml.md §2.9, §9.1):
- paths carry the service's `path_prefix`, so they are the paths the server answers and the
  ones access logs and gateway rules show. The document is served at `{prefix}/docs.json` and
  a relative server URL resolves against it, so with a prefix the server URL climbs out of it
  (`..` for `/v1`) instead of BentoML's `.`; `/v1/docs.json` + `..` + `/v1/predict` is then
  `/v1/predict`, also behind a proxy that adds its own path in front;
- error bodies are declared as what nbserve sends, one object `{"error": str, "detail": any}`,
  for every status the server can produce (400, 404, 429, 500, 503, 504), not only 400/404/500;
- task status values are those the server really returns, and each task operation has its own
  `operationId` (BentoML reuses `_retry` for cancel, which makes the document invalid).

Only the standard library is used here; the IO layer supplies each API's schemas through
`api.input.openapi(schemas)` / `api.output.openapi(schemas)`. The document is built once,
lazily, by `Service.openapi_spec`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbserve._sdk.method import APIMethod
    from nbserve._sdk.service import Service

__all__ = ["OPENAPI_VERSION", "openapi_document"]

OPENAPI_VERSION = "3.0.2"
APP_TAG = "Service APIs"
INFRA_TAG = "Infrastructure"
_REF = "#/components/schemas/"

# BentoML's descriptions (`bentoml._internal.service.openapi.INFRA_DECRIPTION`), reworded where
# nbserve behaves differently (`/healthz` is an alias of `/livez`; 503 rather than an error).
_INFRA = {
    "/healthz": "Liveness probe, an alias of <code>/livez</code> kept for older Kubernetes setups. <code>200</code> while the service is alive.",
    "/livez": "Liveness probe. <code>200</code> while the service is alive, <code>503</code> when <code>__is_alive__()</code> returns False.",
    "/readyz": "Readiness probe. <code>200</code> once every worker has started and <code>__is_ready__()</code> (if defined) returns True, <code>503</code> before.",
    "/metrics": "Prometheus metrics in the text exposition format, under BentoML's metric names (<code>bentoml_service_*</code>).",
}

# status → (schema name, description). Names follow `nbserve.exceptions` (BentoML's for 400,
# 404 and 500), so a generated client's error types read like the server's.
_ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "InvalidArgument",
        "The request body is invalid: `error` names the field, `detail` lists every problem",
    ),
    404: ("NotFound", "Not found"),
    429: (
        "TooManyRequests",
        "More requests in flight than `traffic.max_concurrency` allows; retry later",
    ),
    500: ("InternalServerError", "The API raised an error; the server log has the traceback"),
    503: (
        "ServiceUnavailable",
        "No worker can take the request now (starting, restarting, or a batch deadline was missed)",
    ),
    504: ("RequestTimeout", "The request took longer than `traffic.timeout`"),
}

# What `GET <route>/status` really returns (bentoml.md §2.8; BentoML's own schema disagrees).
_TASK_STATUSES = ["pending", "in_progress", "completed", "failed", "canceled"]


def _server_url(prefix: str) -> str:
    """The relative server URL that, resolved against `{prefix}/docs.json`, is the root the
    (prefixed) paths hang from: `.` without a prefix, one `..` per prefix segment otherwise."""
    if not prefix:
        return "."
    return "/".join([".."] * len(prefix.strip("/").split("/")))


def _error_schema(name: str, status: int) -> dict[str, Any]:
    return {
        "title": name,
        "type": "object",
        "description": HTTPStatus(status).phrase,
        "properties": {
            "error": {"title": "Message", "type": "string"},
            # Validation errors put a list here, other errors nothing or a string: any JSON value.
            "detail": {"title": "Error Detail"},
        },
        "required": ["error"],
    }


def _task_status_schema() -> dict[str, Any]:
    return {
        "title": "TaskStatusResponse",
        "type": "object",
        "properties": {
            "task_id": {"title": "Task Id", "type": "string"},
            "status": {"title": "Status", "type": "string", "enum": list(_TASK_STATUSES)},
            "created_at": {"title": "Created At", "type": "string"},
            "executed_at": {"title": "Executed At", "type": "string", "nullable": True},
        },
        "required": ["task_id", "status"],
    }


def _free_name(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> str:
    """`name`, or `name2`, ... if a user model already took `name` with another schema (the IO
    layer numbers clashing model names the same way)."""
    candidate, n = name, 1
    while candidate in schemas and schemas[candidate] != schema:
        n += 1
        candidate = f"{name}{n}"
    schemas[candidate] = schema
    return candidate


def _json_response(description: str, schema_name: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF + schema_name}}},
    }


def _infra_paths(prefix: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, description in _INFRA.items():
        responses: dict[str, Any] = {"200": {"description": "Successful Response"}}
        if path != "/metrics":
            responses["503"] = {"description": "Not alive or not ready yet; the body says why"}
        paths[prefix + path] = {
            "get": {
                "tags": [INFRA_TAG],
                "description": description,
                "operationId": f"nbserve__{path.strip('/')}",
                "responses": responses,
            }
        }
    return paths


def _task_id_param() -> list[dict[str, Any]]:
    return [
        {
            "name": "task_id",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "title": "Task ID"},
        }
    ]


def _api_paths(
    svc_name: str,
    api: APIMethod[..., Any],
    route: str,
    content: tuple[dict[str, Any], dict[str, Any]],
    errors: dict[str, Any],
    task_status: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """The path items of one API: `POST route`, plus the task routes for a `@task`."""
    # An API whose inputs all have defaults accepts an empty body (it means `{}`).
    input_schema = api.input.json_schema()
    required = bool(input_schema.get("root_input") or input_schema.get("required"))
    request_body = {"required": required, "content": content[0]}
    ok = {"200": {"description": "Successful Response", "content": content[1]}, **errors}

    def operation(suffix: str, description: str, **fields: Any) -> dict[str, Any]:
        name = api.name + suffix
        return {
            "tags": [APP_TAG],
            "x-bentoml-name": name,
            "operationId": f"{svc_name}__{name}",
            "description": description,
            **fields,
        }

    paths = {route: {"post": operation("", api.doc or "", requestBody=request_body, responses=ok)}}
    if not api.is_task:
        return paths
    status_ok = {"200": task_status, **errors}
    params = _task_id_param()
    paths[f"{route}/submit"] = {
        "post": operation(
            "_submit",
            f"Submit a new task of {api.name}",
            requestBody=request_body,
            responses=status_ok,
        )
    }
    paths[f"{route}/status"] = {
        "get": operation(
            "_status",
            f"Get the status of a task of {api.name}",
            parameters=params,
            responses=status_ok,
        )
    }
    paths[f"{route}/get"] = {
        "get": operation(
            "_result", f"Get the result of a task of {api.name}", parameters=params, responses=ok
        )
    }
    paths[f"{route}/retry"] = {
        "post": operation(
            "_retry", f"Retry a task of {api.name}", parameters=params, responses=status_ok
        )
    }
    paths[f"{route}/cancel"] = {
        "put": operation(
            "_cancel", f"Cancel a task of {api.name}", parameters=params, responses=status_ok
        )
    }
    return paths


def openapi_document(service: Service[Any], *, version: str = "not available") -> dict[str, Any]:
    """The OpenAPI 3.0.2 document of `service`, as a JSON-ready dict.

    `version` is `info.version`: the bento version once exported; BentoML's metrics call an
    unversioned service "not available", and so does this document.
    """
    prefix = service.path_prefix
    schemas: dict[str, Any] = {}
    # User models go into `schemas` first, so that nbserve's own schemas take a free name if a
    # user model is called, say, `NotFound`, rather than the other way round.
    contents = {
        name: (api.input.openapi(schemas), api.output.openapi(schemas))
        for name, api in service.apis.items()
    }
    errors: dict[str, Any] = {}
    for status, (name, description) in _ERRORS.items():
        ref = _free_name(schemas, name, _error_schema(name, status))
        errors[str(status)] = _json_response(description, ref)
    task_status: dict[str, Any] = {}
    if any(api.is_task for api in service.apis.values()):
        ref = _free_name(schemas, "TaskStatusResponse", _task_status_schema())
        task_status = _json_response("Successful Response", ref)

    paths = _infra_paths(prefix)
    for name, api in service.apis.items():
        for path, item in _api_paths(
            service.name, api, prefix + api.route, contents[name], errors, task_status
        ).items():
            # A task's GET `/a/get` may sit next to an API routed at `/a/get` (a POST): keep
            # both operations in the one path item.
            paths.setdefault(path, {}).update(item)
    info: dict[str, Any] = {"title": service.name, "version": version}
    about = service.doc or service.config.description
    if about:
        info["description"] = about
    return {
        "openapi": OPENAPI_VERSION,
        "info": info,
        "servers": [{"url": _server_url(prefix)}],
        "tags": [
            {"name": APP_TAG, "description": "The service's API endpoints."},
            {"name": INFRA_TAG, "description": "Health, readiness and metrics endpoints."},
        ],
        "paths": paths,
        "components": {"schemas": schemas},
    }
