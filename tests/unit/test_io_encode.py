"""Encoding return values: the bodies, media types and headers BentoML's client decodes."""

import datetime
import decimal
import io
import json
import typing as t
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import pytest
from pydantic import BaseModel

from nbserve._sdk.io import OutputSpec, Payload, output_spec_for
from nbserve.validators import ContentType, DataframeSchema


class Item(BaseModel):
    name: str
    qty: int = 1


def out(func: Any) -> OutputSpec:
    return output_spec_for(func, output_spec=None)


def test_str_is_raw_text() -> None:
    class S:
        def f(self) -> str: ...
        def html(self) -> Annotated[str, ContentType("text/html")]: ...

    assert out(S.f).encode("héllo") == Payload("héllo".encode(), "text/plain; charset=utf-8", {})
    assert out(S.f).media_type == "text/plain; charset=utf-8"
    assert out(S.html).encode("<b>") == Payload(b"<b>", "text/html; charset=utf-8", {})


def test_bytes_keep_bentoml_text_plain_unless_annotated() -> None:
    class S:
        def f(self) -> bytes: ...
        def png(self) -> Annotated[bytes, ContentType("image/png")]: ...

    assert out(S.f).encode(b"\x00\x01") == Payload(b"\x00\x01", "text/plain; charset=utf-8", {})
    assert out(S.png).encode(b"\x89PNG") == Payload(b"\x89PNG", "image/png", {})
    # `str` and `bytes` APIs share one raw encoder: either raw value goes as it is.
    assert out(S.f).encode("hi") == Payload(b"hi", "text/plain; charset=utf-8", {})
    assert out(S.png).encode(bytearray(b"\x89")) == Payload(b"\x89", "image/png", {})
    assert out(S.f).encode({"a": 1}) == Payload(b'{"a":1}', "application/json", {})


def test_json_values_are_compact() -> None:
    class S:
        def d(self) -> dict[str, Any]: ...
        def n(self) -> int: ...
        def none(self) -> None: ...
        def model(self) -> Item: ...
        def items(self) -> list[Item]: ...
        def ld(self) -> Annotated[dict[str, Any], ContentType("application/ld+json")]: ...

    assert out(S.d).encode({"a": [1, 2], "b": None}) == Payload(
        b'{"a":[1,2],"b":null}', "application/json", {}
    )
    assert out(S.n).encode(3).body == b"3"
    assert out(S.none).encode(None).body == b"null"
    assert out(S.model).encode(Item(name="a")).body == b'{"name":"a","qty":1}'
    assert out(S.items).encode([Item(name="a")]).body == b'[{"name":"a","qty":1}]'
    assert out(S.ld).encode({}).media_type == "application/ld+json"


def test_json_handles_what_apis_return() -> None:
    class S:
        def f(self) -> Any: ...

    value = {
        "arr": np.arange(3, dtype=np.int32),
        "strided": np.arange(6.0).reshape(2, 3)[:, ::2],
        "scalar": np.float32(1.5),
        "when": datetime.date(2024, 1, 31),
        "money": decimal.Decimal("1.10"),
        "path": Path("/x/y.txt"),
        "set": {1},
        1: "int key",
        "big": 2**70,
    }
    body = json.loads(out(S.f).encode(value).body)
    assert body == {
        "arr": [0, 1, 2],
        "strided": [[0.0, 2.0], [3.0, 5.0]],
        "scalar": 1.5,
        "when": "2024-01-31",
        "money": "1.10",
        "path": "/x/y.txt",
        "set": [1],
        "1": "int key",
        "big": 2**70,
    }


def test_nan_is_null() -> None:
    class S:
        def f(self) -> np.ndarray: ...

    assert out(S.f).encode(np.array([1.0, np.nan, np.inf])).body == b"[1.0,null,null]"


def test_unencodable_value_is_a_clear_type_error() -> None:
    class S:
        def f(self) -> Any: ...

    with pytest.raises(
        TypeError, match="cannot encode the API's return value of type dict as JSON"
    ):
        out(S.f).encode({"x": object()})


def test_ndarray_and_tensor() -> None:
    class S:
        def f(self) -> np.ndarray: ...

    assert out(S.f).encode(np.eye(2, dtype=np.float32)) == Payload(
        b"[[1.0,0.0],[0.0,1.0]]", "application/json", {}
    )
    torch = pytest.importorskip("torch")

    class T:
        def f(self) -> torch.Tensor: ...

    assert out(T.f).encode(torch.tensor([[1, 2]])).body == b"[[1,2]]"
    assert out(T.f).encode(torch.tensor([1.5], dtype=torch.bfloat16)).body == b"[1.5]"
    assert json.loads(out(T.f).encode(torch.ones(2, requires_grad=True)).body) == [1.0, 1.0]


def test_dataframe_orients() -> None:
    pd = pytest.importorskip("pandas")

    class S:
        def records(self) -> pd.DataFrame: ...
        def columns(self) -> Annotated[pd.DataFrame, DataframeSchema(orient="columns")]: ...
        def nested(self) -> dict[str, pd.DataFrame]: ...

    df = pd.DataFrame({"a": [1, 2], "b": [0.5, None]})
    assert json.loads(out(S.records).encode(df).body) == [{"a": 1, "b": 0.5}, {"a": 2, "b": None}]
    assert json.loads(out(S.columns).encode(df).body) == {"a": [1, 2], "b": [0.5, None]}
    assert json.loads(out(S.nested).encode({"df": df}).body) == {
        "df": [{"a": 1, "b": 0.5}, {"a": 2, "b": None}]
    }


def test_path_is_the_file(tmp_path: Path) -> None:
    class S:
        def f(self) -> Path: ...

    report = tmp_path / "report.csv"
    report.write_text("a,b\n")
    payload = out(S.f).encode(report)
    assert payload.body == b"a,b\n"
    assert payload.media_type == "text/csv; charset=utf-8"
    assert payload.headers == {"Content-Disposition": 'attachment; filename="report.csv"'}
    image = tmp_path / "plot.png"
    image.write_bytes(b"\x89PNG")
    payload = out(S.f).encode(image)
    assert payload.media_type == "image/png"
    assert payload.headers == {"Content-Disposition": 'inline; filename="plot.png"'}
    odd = tmp_path / "données.bin"
    odd.write_bytes(b"1")
    payload = out(S.f).encode(odd)
    assert payload.media_type == "application/octet-stream"
    assert payload.headers == {
        "Content-Disposition": "attachment; filename*=utf-8''donn%C3%A9es.bin"
    }


def test_pil_image_in_its_format() -> None:
    image = pytest.importorskip("PIL.Image")

    class S:
        def f(self) -> image.Image: ...

    payload = out(S.f).encode(image.new("RGB", (2, 2)))
    assert payload.media_type == "image/png"
    assert image.open(io.BytesIO(payload.body)).size == (2, 2)
    buffer = io.BytesIO()
    image.new("RGB", (2, 2)).save(buffer, format="JPEG")
    jpeg = image.open(io.BytesIO(buffer.getvalue()))
    assert out(S.f).encode(jpeg).media_type == "image/jpeg"
    assert out(S.f).media_type == "image/*"


def test_stream_items_one_per_chunk() -> None:
    class S:
        def text(self) -> Iterator[str]: ...
        def items(self) -> t.Generator[Item, None, None]:
            yield Item(name="x")

    text = out(S.text)
    assert text.media_type == "text/event-stream"
    assert text.encode_item("tok") == b"tok"
    assert text.encode_item(b"raw") == b"raw"
    items = out(S.items)
    assert items.encode_item(Item(name="x")) == b'{"name":"x","qty":1}'
    assert items.encode_item({"i": 1}) == b'{"i":1}'
    assert orjson.loads(items.encode_item(np.arange(2))) == [0, 1]
