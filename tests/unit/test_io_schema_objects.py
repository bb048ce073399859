"""The OpenAPI 3.0 request bodies and responses the IO layer contributes to /docs.json."""

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from nbserve._sdk.io import input_spec_for, output_spec_for
from nbserve._sdk.io.schema_objects import to_openapi
from nbserve.validators import ContentType, DataframeSchema, DType, Shape


class Item(BaseModel):
    name: str = Field(examples=["apple"])
    qty: int = Field(default=1, gt=0)
    kind: Literal["fruit"] = "fruit"


class Order(BaseModel):
    item: Item
    backup: Item | None = None
    note: str | None = None


class Tree(BaseModel):
    value: int
    children: list["Tree"] = []


class Service:
    def shout(self, text: str, times: int = 1) -> str: ...
    def order(self, order: Order, pair: tuple[int, str], u: int | str = 0) -> list[Item]: ...
    def tree(self, tree: Tree, /) -> Tree: ...
    def tensor(
        self, x: Annotated[np.ndarray, Shape((-1, 4)), DType("float32")], y: np.ndarray
    ) -> np.ndarray: ...
    def upload(
        self, doc: Annotated[Path, ContentType("image/*")], n: int = 1, more: tuple[Path, ...] = ()
    ) -> Path: ...
    def raw(self, text: str, /) -> Annotated[str, ContentType("text/html")]: ...
    def stream(self, n: int) -> Iterator[Item]: ...
    def nothing(self) -> None: ...


def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths = {}
    for name, func in vars(Service).items():
        if name.startswith("_"):
            continue
        inp = input_spec_for(func, ctx_param=None, input_spec=None)
        outp = output_spec_for(func, output_spec=None)
        paths[f"/{name}"] = {
            "post": {
                "requestBody": {"content": inp.openapi(schemas)},
                "responses": {"200": {"description": "OK", "content": outp.openapi(schemas)}},
            }
        }
    return {
        "openapi": "3.0.2",
        "info": {"title": "Service", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def test_document_is_valid_openapi_3_0() -> None:
    validate(document())


def test_no_2020_keywords_leak() -> None:
    text = repr(document())
    for keyword in (
        "$defs",
        "prefixItems",
        "'const'",
        "'examples'",
        "'type': 'null'",
        "'tensor'",
        "'dataframe'",
    ):
        assert keyword not in text


def test_models_go_to_components_once() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    assert set(schemas) == {"Item", "Order", "Tree"}
    order = doc["paths"]["/order"]["post"]
    body = order["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["order"] == {"$ref": "#/components/schemas/Order"}
    assert body["properties"]["pair"]["items"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }
    assert schemas["Order"]["properties"]["backup"] == {
        "allOf": [{"$ref": "#/components/schemas/Item"}],
        "nullable": True,
        "default": None,
    }
    assert schemas["Order"]["properties"]["note"]["nullable"] is True
    assert schemas["Item"]["properties"]["qty"]["exclusiveMinimum"] is True
    assert schemas["Item"]["properties"]["name"]["example"] == "apple"
    assert schemas["Item"]["properties"]["kind"]["enum"] == ["fruit"]


def test_custom_types_in_serialization_form() -> None:
    doc = document()
    tensor = doc["paths"]["/tensor"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert tensor["properties"]["x"]["items"] == {"type": "array", "items": {"type": "number"}}
    assert tensor["properties"]["y"]["type"] == "array"
    upload = doc["paths"]["/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["doc"] == {
        "type": "string",
        "format": "binary",
        "title": "Doc",
    }
    assert upload["encoding"] == {"n": {"contentType": "application/json"}}
    response = doc["paths"]["/upload"]["post"]["responses"]["200"]["content"]
    assert response == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }


def test_media_types() -> None:
    doc = document()
    assert list(doc["paths"]["/raw"]["post"]["requestBody"]["content"]) == ["text/plain"]
    assert list(doc["paths"]["/raw"]["post"]["responses"]["200"]["content"]) == ["text/html"]
    assert list(doc["paths"]["/stream"]["post"]["responses"]["200"]["content"]) == [
        "text/event-stream"
    ]
    assert list(doc["paths"]["/shout"]["post"]["responses"]["200"]["content"]) == ["text/plain"]


def test_dataframe_and_image() -> None:
    pd = pytest.importorskip("pandas")
    image = pytest.importorskip("PIL.Image")

    class S:
        def f(
            self,
            d: pd.DataFrame,
            c: Annotated[pd.DataFrame, DataframeSchema(orient="columns")],
            img: image.Image,
        ) -> image.Image: ...

    schemas: dict[str, Any] = {}
    content = input_spec_for(S.f, ctx_param=None, input_spec=None).openapi(schemas)
    props = content["multipart/form-data"]["schema"]["properties"]
    assert props["d"]["type"] == "array"
    assert props["c"]["additionalProperties"] == {"type": "array", "items": {}}
    assert props["img"]["format"] == "binary"
    assert list(output_spec_for(S.f, output_spec=None).openapi(schemas)) == ["image/*"]


def test_same_name_different_model_is_renamed() -> None:
    schemas: dict[str, Any] = {
        "Item": {"type": "object", "properties": {"other": {"type": "string"}}}
    }
    converted = to_openapi(
        {
            "$defs": {"Item": {"type": "object", "properties": {"x": {"type": "integer"}}}},
            "$ref": "#/$defs/Item",
        },
        schemas,
    )
    assert converted == {"$ref": "#/components/schemas/Item2"}
    assert schemas["Item2"]["properties"] == {"x": {"type": "integer"}}
