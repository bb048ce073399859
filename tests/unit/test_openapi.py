"""`/docs.json`: a valid OpenAPI 3.0.2 document in BentoML's shape, with nbserve's fixes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pytest
from openapi_spec_validator import validate
from PIL.Image import Image
from pydantic import BaseModel, Field

import nbserve
from nbserve._sdk.openapi import openapi_document
from nbserve.validators import ContentType, DType, Shape

ERROR_CODES = {"400", "404", "429", "500", "503", "504"}


class Address(BaseModel):
    street: str
    zip: int = 0


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, description="Age in years")
    address: Address | None = None
    tags: list[str] = []


@nbserve.service(path_prefix="/v1")
class Everything:
    """A service with every kind of input and output."""

    @nbserve.api
    def text(
        self, text: str, n: int = 1, opt: int | None = None, mode: Literal["a", "b"] = "a"
    ) -> str:
        """Repeat text."""
        return text * n

    @nbserve.api
    def coll(
        self, xs: list[int], d: dict[str, float], pair: tuple[int, str] = (1, "a")
    ) -> dict[str, Any]:
        return {}

    @nbserve.api
    def person(self, p: Person, others: list[Person] | None = None) -> Person:
        return p

    @nbserve.api
    async def tensor(
        self, x: Annotated[np.ndarray, Shape((-1, 4)), DType("float32")]
    ) -> np.ndarray:
        return x

    @nbserve.api(batchable=True, max_batch_size=8)
    def batch(self, x: np.ndarray) -> np.ndarray:
        return x

    @nbserve.api
    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        return df

    @nbserve.api
    def file(
        self,
        f: Annotated[Path, ContentType("text/csv")],
        files: list[Path] | None = None,
        note: str = "",
    ) -> Path:
        return f

    @nbserve.api
    def image(self, img: Image, ctx: nbserve.Context) -> Image:
        return img

    @nbserve.api
    def raw(self, data: bytes) -> bytes:
        return data

    @nbserve.api
    def stream(self, prompt: str) -> Generator[str, None, None]:
        yield prompt

    @nbserve.api
    async def astream(self, prompt: str) -> AsyncGenerator[dict[str, int], None]:
        yield {"n": 1}

    @nbserve.api
    def root(self, text: str, /) -> str:
        return text

    @nbserve.api
    def root_model(self, person: Person, /) -> list[Person]:
        return [person]

    @nbserve.api
    def ping(self) -> None:
        return None

    @nbserve.api(route="/", name="call")
    def __call__(self, x: float = 0.0) -> float:
        return x

    @nbserve.task
    def job(self, x: int) -> int:
        """A long job."""
        return x


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document(Everything)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_io_type_gives_a_valid_document(doc: dict[str, Any]) -> None:
    validate(doc)
    json.dumps(doc)  # JSON-ready: nothing but plain values
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref


def test_top_level_is_bentomls(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.0.2"
    # Resolved against /v1/docs.json, `..` + `/v1/text` is /v1/text (`.` would give /v1/v1/text).
    assert doc["servers"] == [{"url": ".."}]
    assert [t["name"] for t in doc["tags"]] == ["Service APIs", "Infrastructure"]
    assert doc["info"]["title"] == "Everything"
    assert doc["info"]["description"] == "A service with every kind of input and output."
    assert doc["info"]["version"] == "not available"


def test_paths_carry_the_prefix(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    for infra in ("/healthz", "/livez", "/readyz", "/metrics"):
        op = paths["/v1" + infra]["get"]
        assert op["tags"] == ["Infrastructure"]
        assert "200" in op["responses"]
    assert all(p.startswith("/v1/") for p in paths)
    assert "/v1/" in paths  # route="/" under the prefix


def test_each_api_operation(doc: dict[str, Any]) -> None:
    for name, api in Everything.apis.items():
        op = doc["paths"]["/v1" + api.route]["post"]
        assert op["x-bentoml-name"] == name
        assert op["operationId"] == f"Everything__{name}"
        assert op["tags"] == ["Service APIs"]
        assert op["description"] == (api.doc or "")
        assert op["requestBody"]["content"]
        assert set(op["responses"]) == {"200"} | ERROR_CODES
        assert op["responses"]["200"]["content"]
    assert doc["paths"]["/v1/text"]["post"]["description"] == "Repeat text."


def test_request_and_response_media_types(doc: dict[str, Any]) -> None:
    def post(route: str) -> dict[str, Any]:
        return doc["paths"]["/v1" + route]["post"]  # type: ignore[no-any-return]

    assert list(post("/text")["requestBody"]["content"]) == ["application/json"]
    assert list(post("/file")["requestBody"]["content"]) == ["multipart/form-data"]
    assert list(post("/image")["requestBody"]["content"]) == ["multipart/form-data"]
    assert list(post("/root")["requestBody"]["content"]) == ["text/plain"]
    assert next(iter(post("/text")["responses"]["200"]["content"])).startswith("text/plain")
    assert list(post("/stream")["responses"]["200"]["content"]) == ["text/event-stream"]
    # The body is required when some input is; an API whose inputs all default takes none.
    assert post("/text")["requestBody"]["required"] is True
    assert post("/root")["requestBody"]["required"] is True
    assert post("/ping")["requestBody"]["required"] is False
    assert post("/")["requestBody"]["required"] is False


def test_error_responses_reference_nbserve_error_bodies(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    responses = doc["paths"]["/v1/text"]["post"]["responses"]
    expected = {
        "400": "InvalidArgument",
        "404": "NotFound",
        "429": "TooManyRequests",
        "500": "InternalServerError",
        "503": "ServiceUnavailable",
        "504": "RequestTimeout",
    }
    for code, name in expected.items():
        assert responses[code]["description"]
        assert responses[code]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{name}"
        }
        schema = schemas[name]
        assert schema["required"] == ["error"]
        assert schema["properties"]["error"]["type"] == "string"
        assert "type" not in schema["properties"]["detail"]  # any JSON value (a list for 400s)


def test_nested_models_are_components(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert {"Person", "Address"} <= set(schemas)
    assert "Address" in json.dumps(schemas["Person"])


def test_task_routes(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    ops = {
        "/v1/job/submit": ("post", "job_submit"),
        "/v1/job/status": ("get", "job_status"),
        "/v1/job/get": ("get", "job_result"),
        "/v1/job/retry": ("post", "job_retry"),
        "/v1/job/cancel": ("put", "job_cancel"),
    }
    for path, (method, name) in ops.items():
        op = paths[path][method]
        assert op["x-bentoml-name"] == name
        assert op["operationId"] == f"Everything__{name}"
    assert paths["/v1/job/status"]["get"]["parameters"][0]["name"] == "task_id"
    # The statuses the server really returns (BentoML's document lists others).
    status = doc["components"]["schemas"]["TaskStatusResponse"]["properties"]["status"]
    assert status["enum"] == ["pending", "in_progress", "completed", "failed", "canceled"]
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_no_prefix_no_task() -> None:
    @nbserve.service
    class Plain:
        @nbserve.api
        def predict(self, x: int) -> int:
            return x

    doc = openapi_document(Plain, version="20240101")
    validate(doc)
    assert set(doc["paths"]) == {"/healthz", "/livez", "/readyz", "/metrics", "/predict"}
    assert doc["servers"] == [{"url": "."}]  # BentoML's, when there is no prefix
    assert "TaskStatusResponse" not in doc["components"]["schemas"]
    assert doc["info"]["version"] == "20240101"
    assert "description" not in doc["info"]  # no docstring: omitted, not null


class NotFound(BaseModel):
    """A user model that happens to share the name of an error schema."""

    what: str


def test_a_user_model_named_like_an_error_keeps_its_name() -> None:
    @nbserve.service
    class Clash:
        @nbserve.api
        def lookup(self, q: NotFound) -> NotFound:
            return q

    doc = openapi_document(Clash)
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert "what" in schemas["NotFound"]["properties"]
    error_ref = doc["paths"]["/lookup"]["post"]["responses"]["404"]["content"]["application/json"][
        "schema"
    ]["$ref"]
    assert error_ref == "#/components/schemas/NotFound2"
    assert schemas["NotFound2"]["required"] == ["error"]


def test_service_openapi_spec_is_built_once() -> None:
    assert Everything.openapi_spec is Everything.openapi_spec


def test_the_module_is_import_light() -> None:
    code = "import sys, nbserve._sdk.openapi; print(sorted(m for m in ('tornado', 'prometheus_client', 'numpy', 'yaml') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("prefix", ["", "/v1", "/a/b"])
def test_the_server_url_resolves_paths_where_the_server_answers(prefix: str) -> None:
    from urllib.parse import urljoin

    from nbserve._sdk.openapi import _server_url

    # docs.json is served at {prefix}/docs.json, here behind a Jupyter proxy path.
    document = f"http://host/user/ada/proxy/3000{prefix}/docs.json"
    server = urljoin(document, _server_url(prefix)).rstrip("/")
    assert server + prefix + "/predict" == f"http://host/user/ada/proxy/3000{prefix}/predict"
