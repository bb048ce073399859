"""The client's wire codecs without a server: request bodies, responses, errors, stream items."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pydantic import BaseModel

from nbserve._client.decoding import decode_body, error_from_response
from nbserve._client.encoding import build_body, dumps
from nbserve._client.endpoint import Endpoint, bind_arguments, parse_schema
from nbserve._client.streaming import SSEParser, StreamDecoder
from nbserve.exceptions import (
    InvalidArgument,
    NbserveError,
    NotFound,
    RequestTimeout,
    ServiceUnavailable,
    TooManyRequests,
    UnprocessableEntity,
)


def endpoint(
    properties: dict[str, Any] | None = None,
    *,
    required: list[str] | None = None,
    output: dict[str, Any] | None = None,
    root: dict[str, Any] | None = None,
) -> Endpoint:
    schema: dict[str, Any] = root if root is not None else {"type": "object"}
    if properties is not None:
        schema = {**schema, "properties": properties, "required": required or []}
    route = {"name": "api", "route": "/api", "input": schema, "output": output or {}}
    return parse_schema({"routes": [route]}, "test")["api"]


class Item(BaseModel):
    name: str
    qty: int = 1


# --- schema and arguments ------------------------------------------------------------------


def test_parse_schema_reads_flags() -> None:
    doc = {
        "routes": [
            {
                "name": "gen",
                "route": "gen",
                "doc": "Generate.",
                "is_task": True,
                "input": {"type": "object", "properties": {}},
                "output": {"type": "string", "is_stream": True, "sse": True},
            }
        ]
    }
    gen = parse_schema(doc, "here")["gen"]
    assert (gen.route, gen.doc, gen.is_stream, gen.sse, gen.is_task) == (
        "/gen",
        "Generate.",
        True,
        True,
        True,
    )
    assert gen.item_schema == {"type": "string"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"paths": {}}, r"has no 'routes' list"),
        ({"routes": [{"name": "x", "route": "/x"}]}, r"lacks 'input'; each route needs"),
    ],
)
def test_parse_schema_errors_say_what_is_missing(document: Any, message: str) -> None:
    with pytest.raises(NbserveError, match=message):
        parse_schema(document, "http://h/schema.json")


def test_bind_arguments_maps_positionals_in_property_order() -> None:
    ep = endpoint({"a": {}, "b": {}, "c": {"default": 0}}, required=["a", "b"])
    assert bind_arguments(ep, (1, 2), {"c": 3}) == {"a": 1, "b": 2, "c": 3}
    with pytest.raises(TypeError, match=r"missing required arguments: 'a', 'b'"):
        bind_arguments(ep, (), {})
    with pytest.raises(TypeError, match=r"unexpected arguments 'x', 'y'; it accepts a, b, c"):
        bind_arguments(ep, (1, 2), {"x": 1, "y": 2})


# --- request bodies ------------------------------------------------------------------------


def test_json_body_encodes_numpy_torch_pandas_and_models() -> None:
    ep = endpoint(
        {
            "arr": {"type": "tensor", "format": "numpy-array"},
            "t": {"type": "tensor", "format": "torch-tensor"},
            "df": {"type": "dataframe", "orient": "columns"},
            "rows": {"type": "dataframe", "orient": "records"},
            "item": {"type": "object", "properties": {"name": {}, "qty": {}}},
            "items": {"type": "array", "items": {"type": "object"}},
            "n": {"type": "integer"},
        }
    )
    frame = pd.DataFrame({"a": [1, 2]})
    body = build_body(
        ep,
        (),
        {
            "arr": np.arange(4, dtype=np.int32).reshape(2, 2)[:, ::-1],  # not C-contiguous
            "t": torch.tensor([1.5, 2.5]),
            "df": frame,
            "rows": frame,
            "item": Item(name="a"),
            "items": [Item(name="b", qty=2)],
            "n": np.int64(3),
        },
    )
    assert body.headers == {"Content-Type": "application/json"}
    assert body.content is not None
    assert json.loads(body.content) == {
        "arr": [[1, 0], [3, 2]],
        "t": [1.5, 2.5],
        "df": {"a": [1, 2]},
        "rows": [{"a": 1}, {"a": 2}],
        "item": {"name": "a", "qty": 1},
        "items": [{"name": "b", "qty": 2}],
        "n": 3,
    }


def test_unencodable_value_is_a_type_error_naming_the_api() -> None:
    with pytest.raises(
        TypeError, match=r"arguments of api\(\) as JSON: .*object is not JSON serializable"
    ):
        build_body(endpoint({"x": {}}), (object(),), {})


def test_dumps_falls_back_for_big_integers() -> None:
    assert dumps({"n": 2**70}) == b'{"n": 1180591620717411303424}'


@pytest.mark.parametrize(
    ("schema", "value", "content", "content_type"),
    [
        ({"type": "string"}, "héllo", "héllo".encode(), "text/plain; charset=utf-8"),
        (
            {"type": "string", "format": "binary"},
            b"\x00\x01",
            b"\x00\x01",
            "application/octet-stream",
        ),
        ({"type": "integer"}, 5, b"5", "application/json"),
        ({"type": "array"}, np.array([1, 2]), b"[1,2]", "application/json"),
        ({"type": "file"}, io.BytesIO(b"%PDF"), b"%PDF", "application/octet-stream"),
        ({"type": "file"}, "https://example.com/a.png", b"https://example.com/a.png", "text/plain"),
    ],
)
def test_root_inputs_send_the_raw_value(
    schema: dict[str, Any], value: Any, content: bytes, content_type: str
) -> None:
    body = build_body(endpoint(root={**schema, "root_input": True}), (value,), {})
    assert (body.content, body.headers["Content-Type"]) == (content, content_type)


def test_root_file_from_path_guesses_its_type(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<p>")
    body = build_body(endpoint(root={"type": "file", "root_input": True}), (path,), {})
    assert (body.content, body.headers["Content-Type"]) == (b"<p>", "text/html")


def test_root_model_takes_an_object_or_its_fields() -> None:
    ep = endpoint(
        {"name": {}, "qty": {}}, required=["name"], root={"type": "object", "root_input": True}
    )
    assert json.loads(build_body(ep, (Item(name="a"),), {}).content or b"") == {
        "name": "a",
        "qty": 1,
    }
    assert json.loads(build_body(ep, (), {"name": "b"}).content or b"") == {"name": "b"}
    with pytest.raises(TypeError, match=r"missing required argument: 'name'"):
        build_body(ep, (), {"qty": 2})


def test_multipart_files_and_json_fields(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("A")
    image = Image.new("RGB", (1, 1))
    ep = endpoint(
        {
            "doc": {"type": "file"},
            "docs": {"type": "array", "items": {"type": "file"}},
            "maybe": {"anyOf": [{"type": "file"}, {"type": "null"}], "default": None},
            "img": {"type": "file", "pil": True},
            "url": {"type": "file"},
            "opts": {"type": "object"},
            "n": {"type": "integer"},
        }
    )
    body = build_body(
        ep,
        (),
        {
            "doc": path,
            "docs": [b"B", io.BytesIO(b"C")],
            "maybe": None,
            "img": image,
            "url": "http://example.com/x.txt",
            "opts": {"k": [1, 2]},
            "n": 3,
        },
    )
    assert body.content is None
    assert body.data == {"url": "http://example.com/x.txt", "opts": '{"k":[1,2]}', "n": "3"}
    assert body.files is not None
    parts = [(name, filename, content_type) for name, (filename, _, content_type) in body.files]
    assert parts == [
        ("doc", "a.txt", "text/plain"),
        ("docs", "docs", "application/octet-stream"),
        ("docs", "docs", "application/octet-stream"),
        ("img", "img.png", "image/png"),
    ]
    assert [content for _, (_, content, _) in body.files][:3] == [b"A", b"B", b"C"]


def test_multipart_rejects_a_non_file_with_the_fix() -> None:
    with pytest.raises(
        TypeError, match=r"'doc' of api\(\) is a file field, got int; pass a pathlib.Path"
    ):
        build_body(endpoint({"doc": {"type": "file"}}), (3,), {})


# --- responses -----------------------------------------------------------------------------


def test_decode_tensors_frames_and_nested_values() -> None:
    tensor = {"type": "tensor", "format": "numpy-array", "dtype": "float16", "shape": [2, 2]}
    ep = endpoint(
        output={
            "type": "object",
            "properties": {
                "arr": tensor,
                "t": {"type": "tensor", "format": "torch-tensor", "dtype": "int64"},
                "df": {"type": "dataframe", "columns": ["b", "a"]},
                "arrs": {"type": "array", "items": tensor},
            },
        }
    )
    body = json.dumps(
        {"arr": [1, 2, 3, 4], "t": [1, 2], "df": [{"a": 1, "b": 2}], "arrs": [[1, 2, 3, 4]], "x": 1}
    )
    value = decode_body(ep, body.encode(), {"content-type": "application/json"})
    assert value["arr"].dtype == np.float16
    assert value["arr"].shape == (2, 2)
    assert isinstance(value["t"], torch.Tensor)
    assert value["t"].dtype == torch.int64
    assert list(value["df"].columns) == ["b", "a"]
    assert value["arrs"][0].shape == (2, 2)
    assert value["x"] == 1


def test_decode_strings_bytes_and_charset() -> None:
    text = endpoint(output={"type": "string"})
    assert (
        decode_body(text, "é".encode("latin-1"), {"content-type": "text/plain; charset=latin-1"})
        == "é"
    )
    assert (
        decode_body(endpoint(output={"type": "string", "format": "binary"}), b"\xff", {}) == b"\xff"
    )
    assert decode_body(endpoint(output={"type": "integer"}), b"", {}) is None


def test_file_response_is_saved_under_its_filename() -> None:
    ep = endpoint(output={"type": "file"})
    path = decode_body(
        ep, b"data", {"content-disposition": 'attachment; filename="../../evil.csv"'}
    )
    assert (path.name, path.read_bytes()) == ("evil.csv", b"data")
    unnamed = decode_body(ep, b"{}", {"content-type": "application/json"})
    assert unnamed.name == "download.json"


def test_pil_response() -> None:
    buffer = io.BytesIO()
    Image.new("L", (3, 2)).save(buffer, format="JPEG")
    image = decode_body(
        endpoint(output={"type": "file", "pil": True}),
        buffer.getvalue(),
        {"content-type": "image/jpeg"},
    )
    assert image.size == (3, 2)


@pytest.mark.parametrize(
    ("status", "body", "cls", "message"),
    [
        (
            400,
            b'{"error":"1 validation error for Input","detail":[{"loc":["x"],"msg":"bad"}]}',
            InvalidArgument,
            "1 validation error for Input: x: bad",
        ),
        (404, b'[{"error":"no such thing"}]', NotFound, "no such thing"),
        (422, b'{"error":"cannot","detail":"because"}', UnprocessableEntity, "cannot: because"),
        (429, b'{"error":"Too many requests"}', TooManyRequests, "Too many requests"),
        (503, b"Service Unavailable", ServiceUnavailable, "Service Unavailable"),
        (504, b"", RequestTimeout, "HTTP 504 with an empty body"),
        (418, b'{"error":"teapot"}', NbserveError, "teapot"),
    ],
)
def test_errors_map_by_status(
    status: int, body: bytes, cls: type[NbserveError], message: str
) -> None:
    exc = error_from_response(status, body, {})
    assert type(exc) is cls
    assert (str(exc), exc.error_code) == (message, status)


# --- streams -------------------------------------------------------------------------------


def feed_split(decoder: StreamDecoder, data: bytes, size: int) -> list[Any]:
    items = [item for i in range(0, len(data), size) for item in decoder.feed(data[i : i + size])]
    return items + decoder.finish()


SSE = '\ufeff: keep-alive\r\ndata: {"i": 0}\r\n\r\nevent: ping\ndata: x\n\ndata:{"i":\r\ndata: 1}\r\rdata: {"tail": 1}'


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_sse_items_survive_any_chunking(size: int) -> None:
    ep = endpoint(output={"type": "object", "is_stream": True, "sse": True})
    decoder = StreamDecoder(ep, {"content-type": "text/event-stream"})
    assert feed_split(decoder, SSE.encode(), size) == [
        {"i": 0},
        {"i": 1},
    ]  # the unterminated tail is dropped


def test_sse_text_items_join_data_lines() -> None:
    parser = SSEParser()
    events = parser.feed("data: línea 1\ndata: línea 2\n\n".encode()[:8]) + parser.feed(
        "data: línea 1\ndata: línea 2\n\n".encode()[8:]
    )
    assert events == [("message", "línea 1\nlínea 2")]


def test_sse_error_event_raises_the_mapped_error() -> None:
    ep = endpoint(output={"type": "string", "is_stream": True, "sse": True})
    decoder = StreamDecoder(ep, {"content-type": "text/event-stream; charset=utf-8"})
    assert decoder.feed(b"data: a\n\n") == ["a"]
    with pytest.raises(UnprocessableEntity, match=r"^no more: detail$"):
        decoder.feed(
            b'event: error\ndata: {"error": "no more", "detail": "detail", "error_code": 422}\n\n'
        )


def test_raw_json_items_are_split_and_joined_by_document() -> None:
    ep = endpoint(output={"type": "object", "is_stream": True})  # no "sse": BentoML
    decoder = StreamDecoder(ep, {"content-type": "text/event-stream"})
    assert decoder.feed(b'{"i": 0}{"i": 1}') == [{"i": 0}, {"i": 1}]  # coalesced chunks
    assert decoder.feed(b'{"i": ') == []
    assert decoder.feed(b"2} [3]") == [{"i": 2}, [3]]
    assert decoder.feed(b'{"oops"') == []
    with pytest.raises(NbserveError, match=r"stream ended inside a JSON item"):
        decoder.finish()


def test_raw_text_items_follow_chunks_and_keep_utf8_whole() -> None:
    ep = endpoint(output={"type": "string", "is_stream": True, "sse": True})
    decoder = StreamDecoder(ep, {"content-type": "text/plain"})  # sse advertised, not sent
    word = "naïve".encode()
    assert decoder.feed(word[:3]) == ["na"]
    assert decoder.feed(word[3:]) == ["ïve"]
    binary = StreamDecoder(
        endpoint(output={"type": "string", "format": "binary", "is_stream": True}), {}
    )
    assert binary.feed(b"\xff\x00") == [b"\xff\x00"]
