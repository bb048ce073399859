"""The examples the tester pre-fills and load tests send: valid for their API's own validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, Field

import nbserve
from nbserve._notebook.tester.examples import example_body, example_value, field_examples, is_file
from nbserve.validators import DataframeSchema, DType, Shape


class Address(BaseModel):
    zip: int = Field(ge=1000)
    city: str


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)
    address: Address | None = None


@nbserve.service
class Shapes:
    @nbserve.api
    def scalars(self, s: str, i: Annotated[int, Field(gt=5)], f: float, b: bool, n: int = 7) -> str:
        return s

    @nbserve.api
    def containers(self, xs: list[int], m: dict[str, float], maybe: str | None = None) -> str:
        return ""

    @nbserve.api
    def model(self, p: Person, mode: Literal["fast", "slow"] = "slow") -> str:
        return ""

    @nbserve.api
    def tensors(
        self, x: Annotated[np.ndarray, Shape((-1, 3)), DType("float32")], y: np.ndarray
    ) -> str:
        return ""

    @nbserve.api
    def frames(
        self,
        df: pd.DataFrame,
        cols: Annotated[pd.DataFrame, DataframeSchema(orient="columns", columns=["a", "b"])],
    ) -> str:
        return ""

    @nbserve.api
    def root(self, text: str, /) -> str:
        return text

    @nbserve.api
    def files(self, f: Path, note: str = "hi") -> str:
        return note


def _routes() -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in Shapes.schema()["routes"]}


@pytest.mark.parametrize("name", ["scalars", "containers", "model", "tensors", "frames"])
def test_the_example_body_passes_the_apis_own_validation(name: str) -> None:
    body = example_body(_routes()[name])
    spec = Shapes.apis[name].input
    spec.validate(spec.from_json(json.dumps(body).encode()))  # raises InvalidArgument if not


def test_examples_respect_bounds_shapes_and_columns() -> None:
    routes = _routes()
    assert example_body(routes["scalars"]) == {"s": "string", "i": 6, "f": 0.0, "b": False}
    assert example_body(routes["tensors"]) == {"x": [[0.0, 0.0, 0.0]], "y": [0.0]}
    assert example_body(routes["frames"])["cols"] == {"a": [0], "b": [0]}
    assert example_body(routes["model"]) == {
        "p": {"name": "string", "age": 0, "address": {"zip": 1000, "city": "string"}}
    }
    assert example_body(routes["root"]) == "string"


def test_form_fields_start_from_defaults_but_not_from_none() -> None:
    routes = _routes()
    assert field_examples(routes["scalars"]["input"])["n"] == 7
    assert field_examples(routes["model"]["input"])["mode"] == "slow"
    # An optional value defaulting to None shows what to type, not null.
    assert field_examples(routes["containers"]["input"])["maybe"] == "string"
    assert field_examples(routes["root"]["input"]) == {"": "string"}
    assert field_examples(routes["files"]["input"]) == {"note": "hi"}


def test_file_inputs_have_no_example_and_no_load_test_body() -> None:
    route = _routes()["files"]
    assert is_file(route["input"]["properties"]["f"])
    assert not is_file(route["input"]["properties"]["note"])
    with pytest.raises(
        ValueError, match=r"/files needs a file in 'f'; a load test sends JSON bodies only"
    ):
        example_body(route)


def test_unions_and_enums() -> None:
    assert example_value({"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 3}]}) == 3
    assert example_value({"enum": ["a", "b"]}) == "a"
    assert example_value({"type": "array", "items": {"type": "boolean"}}) == [False]
