"""The JSON schemas `/schema.json` publishes: BentoML's shapes, exactly, so its client works."""

import typing
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import BaseModel, Field

from nbserve._sdk.io import input_spec_for, output_spec_for
from nbserve.validators import ContentType, DataframeSchema, DType, Shape


class Item(BaseModel):
    name: str
    qty: int = 1


class Order(BaseModel):
    item: Item
    tags: list[str] = []


class Tree(BaseModel):
    value: int
    children: list["Tree"] = []


def schema_in(func: Any, ctx_param: str | None = None) -> dict[str, Any]:
    return input_spec_for(func, ctx_param=ctx_param, input_spec=None).json_schema()


def schema_out(func: Any) -> dict[str, Any]:
    return output_spec_for(func, output_spec=None).json_schema()


def test_plain_params_match_bentoml() -> None:
    class S:
        def shout(self, text: str, times: int = 1) -> str: ...

    assert schema_in(S.shout) == {
        "properties": {
            "text": {"title": "Text", "type": "string"},
            "times": {"default": 1, "title": "Times", "type": "integer"},
        },
        "required": ["text"],
        "title": "Input",
        "type": "object",
    }
    assert schema_out(S.shout) == {"type": "string"}


def test_properties_follow_parameter_order_not_alphabet() -> None:
    class S:
        def f(self, zeta: int, alpha: str, mid: float = 0.5, beta: bool = False) -> None: ...

    assert list(schema_in(S.f)["properties"]) == ["zeta", "alpha", "mid", "beta"]


def test_ctx_and_self_are_not_inputs() -> None:
    class S:
        def f(self, x: int, ctx: Any) -> int: ...

    assert list(schema_in(S.f, ctx_param="ctx")["properties"]) == ["x"]


def test_unannotated_is_any_and_field_defaults_kept() -> None:
    class S:
        def f(self, x, n: int = Field(default=3, description="how many"), m: int = Field(ge=0)): ...  # type: ignore[no-untyped-def]

    props = schema_in(S.f)["properties"]
    assert props["x"] == {"title": "X"}
    assert props["n"] == {"default": 3, "description": "how many", "title": "N", "type": "integer"}
    assert props["m"]["minimum"] == 0
    assert schema_in(S.f)["required"] == ["x", "m"]
    assert schema_out(S.f) == {}


def test_ndarray_is_bentoml_tensor_with_shape_and_dtype() -> None:
    class S:
        def f(
            self,
            x: Annotated[np.ndarray, Shape((2,)), DType("float32")],
            y: np.ndarray,
            z: npt.NDArray[np.int64],
            w: Annotated[np.ndarray, Shape((-1, 4))],
        ) -> np.ndarray: ...

    props = schema_in(S.f)["properties"]
    assert props["x"] == {
        "type": "tensor",
        "format": "numpy-array",
        "dtype": "float32",
        "shape": [2],
        "dim": 2,
        "title": "X",
    }
    assert props["y"] == {"type": "tensor", "format": "numpy-array", "title": "Y"}
    assert props["z"]["dtype"] == "int64"
    assert props["w"]["shape"] == [-1, 4]
    assert "dim" not in props["w"]  # not a fixed size
    assert schema_out(S.f) == {"type": "tensor", "format": "numpy-array"}


def test_torch_tensor_is_torch_format() -> None:
    torch = pytest.importorskip("torch")

    class S:
        def f(self, t: Annotated[torch.Tensor, DType("float32")]) -> torch.Tensor: ...

    assert schema_in(S.f)["properties"]["t"] == {
        "type": "tensor",
        "format": "torch-tensor",
        "dtype": "float32",
        "title": "T",
    }
    assert schema_out(S.f) == {"type": "tensor", "format": "torch-tensor"}


def test_dataframe_records_by_default_and_columns_when_asked() -> None:
    pd = pytest.importorskip("pandas")

    class S:
        def f(
            self,
            d: pd.DataFrame,
            e: Annotated[pd.DataFrame, DataframeSchema(orient="columns", columns=["a", "b"])],
        ) -> pd.DataFrame: ...

    props = schema_in(S.f)["properties"]
    assert props["d"] == {"type": "dataframe", "orient": "records", "title": "D"}
    assert props["e"] == {
        "type": "dataframe",
        "orient": "columns",
        "columns": ["a", "b"],
        "title": "E",
    }
    assert schema_out(S.f) == {"type": "dataframe", "orient": "records"}


def test_files_are_bentoml_file_type() -> None:
    class S:
        def f(
            self,
            a: Path,
            b: Annotated[Path, ContentType("image/*")],
            c: list[Path],
            d: Path | None = None,
        ) -> Path: ...

    spec = input_spec_for(S.f, ctx_param=None, input_spec=None)
    props = spec.json_schema()["properties"]
    assert props["a"] == {"type": "file", "format": "binary", "title": "A"}
    assert props["b"] == {
        "type": "file",
        "format": "image",
        "content_type": "image/*",
        "title": "B",
    }
    assert props["c"] == {
        "type": "array",
        "items": {"type": "file", "format": "binary"},
        "title": "C",
    }
    # Optional[X] is flattened to X, as BentoML does, so its client sees type "file".
    assert props["d"]["type"] == "file"
    assert props["d"]["nullable"] is True
    assert props["d"]["default"] is None
    assert spec.file_fields == frozenset({"a", "b", "c", "d"})
    assert spec.multipart
    assert schema_out(S.f) == {"type": "file", "format": "binary"}


def test_pil_image_is_file_with_pil_flag() -> None:
    image = pytest.importorskip("PIL.Image")

    class S:
        def f(self, img: image.Image) -> image.Image: ...

    spec = input_spec_for(S.f, ctx_param=None, input_spec=None)
    assert spec.json_schema()["properties"]["img"] == {
        "type": "file",
        "format": "image",
        "pil": True,
        "title": "Img",
    }
    assert spec.multipart
    assert schema_out(S.f) == {"type": "file", "format": "image", "pil": True}


def test_bytes_is_binary_string() -> None:
    class S:
        def f(self, b: bytes) -> bytes: ...

    assert schema_in(S.f)["properties"]["b"] == {"type": "string", "format": "binary", "title": "B"}
    assert schema_out(S.f) == {"type": "string", "format": "binary"}


def test_nested_models_are_inlined() -> None:
    class S:
        def f(self, order: Order) -> list[Item]: ...

    order = schema_in(S.f)["properties"]["order"]
    assert "$defs" not in schema_in(S.f)
    assert order["properties"]["item"]["properties"]["name"] == {"title": "Name", "type": "string"}
    out = schema_out(S.f)
    assert "$defs" not in out
    assert out["items"]["title"] == "Item"


def test_recursive_model_keeps_its_ref() -> None:
    class S:
        def f(self, tree: Tree) -> Tree: ...

    schema = schema_in(S.f)
    assert schema["properties"]["tree"]["properties"]["children"]["items"] == {
        "$ref": "#/$defs/Tree"
    }
    assert schema["$defs"]["Tree"]["properties"]["value"] == {"title": "Value", "type": "integer"}


def test_unions_optionals_literals_tuples() -> None:
    class S:
        def f(
            self,
            o: int | None = None,
            u: int | str = 1,
            lit: Literal["a", "b"] = "a",
            tup: tuple[int, str] = (1, "x"),
        ) -> tuple[int, ...]: ...

    props = schema_in(S.f)["properties"]
    assert props["o"] == {"type": "integer", "default": None, "title": "O", "nullable": True}
    assert props["u"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert props["lit"]["enum"] == ["a", "b"]
    # BentoML's client reads schema["items"] of every array: fixed tuples get one.
    assert props["tup"]["items"] == {}
    assert schema_out(S.f) == {"type": "array", "items": {"type": "integer"}}


def test_typing_spellings_of_optional_and_union() -> None:
    class S:
        def f(
            self,
            a: typing.Optional[Path] = None,  # noqa: UP045 - the typing spelling must work too
            b: typing.Union[int, str] = 1,  # noqa: UP007
            c: typing.List[int] = [],  # noqa: UP006, B006
        ) -> typing.Optional[int]: ...  # noqa: UP045

    spec = input_spec_for(S.f, ctx_param=None, input_spec=None)
    props = spec.json_schema()["properties"]
    assert props["a"]["type"] == "file"
    assert props["b"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert props["c"]["items"] == {"type": "integer"}
    assert spec.file_fields == frozenset({"a"})
    assert schema_out(S.f) == {"type": "integer", "nullable": True}


def test_root_inputs_are_marked() -> None:
    class S:
        def text(self, x: str, /) -> dict[str, Any]: ...
        def model(self, x: Item, /) -> Item: ...
        def file(self, x: Path, /) -> str: ...
        def ctx(self, x: list[int], /, ctx: Any = None) -> int: ...

    assert schema_in(S.text) == {"type": "string", "root_input": True}
    model = schema_in(S.model)
    assert model["root_input"] is True
    assert model["title"] == "Item"
    assert list(model["properties"]) == ["name", "qty"]
    assert schema_in(S.file) == {"type": "file", "format": "binary", "root_input": True}
    assert schema_in(S.ctx, ctx_param="ctx") == {
        "type": "array",
        "items": {"type": "integer"},
        "root_input": True,
    }
    assert schema_out(S.text) == {"type": "object", "additionalProperties": True}
    spec = input_spec_for(S.text, ctx_param=None, input_spec=None)
    assert spec.root
    assert spec.fields == ("x",)
    assert not spec.multipart


def test_streams_are_marked_with_item_schema() -> None:
    class S:
        def gen(self, n: int) -> Generator[str, None, None]:
            yield ""

        def it(self) -> Iterator[Item]: ...

        async def agen(self) -> AsyncGenerator[Item, None]:
            yield Item(name="x")

        def bare(self):  # type: ignore[no-untyped-def]
            yield 1

    assert schema_out(S.gen) == {
        "type": "string",
        "is_stream": True,
        "media_type": "text/event-stream",
    }
    it = schema_out(S.it)
    assert it["is_stream"] is True
    assert it["title"] == "Item"
    assert schema_out(S.agen)["media_type"] == "text/event-stream"
    assert schema_out(S.bare) == {"is_stream": True, "media_type": "text/event-stream"}
    for func in (S.gen, S.it, S.agen, S.bare):
        assert output_spec_for(func, output_spec=None).is_stream


def test_annotated_content_type_sets_output_media_type() -> None:
    class S:
        def html(self) -> Annotated[str, ContentType("text/html")]: ...
        def none(self) -> None: ...

    assert schema_out(S.html) == {"type": "string", "media_type": "text/html"}
    assert output_spec_for(S.html, output_spec=None).media_type == "text/html; charset=utf-8"
    assert schema_out(S.none) == {"type": "null"}


def test_json_schema_returns_a_copy() -> None:
    class S:
        def f(self, x: int) -> int: ...

    spec = input_spec_for(S.f, ctx_param=None, input_spec=None)
    spec.json_schema()["properties"]["x"]["type"] = "changed"
    assert spec.json_schema()["properties"]["x"]["type"] == "integer"


def test_explicit_specs() -> None:
    class Out(BaseModel):
        label: str

    class S:
        def f(self, name: str, qty: int = 1) -> Any: ...

    inp = input_spec_for(S.f, ctx_param=None, input_spec=Item)
    assert inp.json_schema()["title"] == "Item"
    assert inp.fields == ("name", "qty")
    assert inp.from_json(b'{"name": "a"}') == {"name": "a", "qty": 1}
    out = output_spec_for(S.f, output_spec=Out)
    assert out.json_schema()["properties"] == {"label": {"title": "Label", "type": "string"}}


def test_explicit_input_spec_with_path_field_takes_a_file() -> None:
    class Upload(BaseModel):
        doc: Path
        note: str = ""

    class S:
        def f(self, doc: Path, note: str = "") -> str: ...

    spec = input_spec_for(S.f, ctx_param=None, input_spec=Upload)
    assert spec.json_schema()["properties"]["doc"]["type"] == "file"
    assert spec.multipart
