"""Every IO type round-trips over real HTTP (a real server on 127.0.0.1, httpx as the client).

The bodies are written out by hand, as a curl user or BentoML's client would send them, so these
tests pin the wire protocol (DESIGN §4), not just our own client's view of it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pydantic import BaseModel

import nbserve
from nbserve.testing import running_service
from nbserve.validators import ContentType, DataframeSchema, DType, Shape


class Item(BaseModel):
    name: str
    qty: int = 1


@nbserve.service
class Kinds:
    @nbserve.api
    def scalars(self, s: str, i: int, f: float, b: bool) -> dict[str, Any]:
        return {"s": s, "i": i, "f": f, "b": b, "types": [type(v).__name__ for v in (s, i, f, b)]}

    @nbserve.api
    def containers(
        self, xs: list[int], mapping: dict[str, float], maybe: int | None = None
    ) -> dict[str, Any]:
        return {"sum": sum(xs), "keys": sorted(mapping), "maybe": maybe}

    @nbserve.api
    def model(self, item: Item) -> Item:
        return Item(name=item.name.upper(), qty=item.qty * 2)

    @nbserve.api
    def array(self, x: Annotated[np.ndarray, Shape((-1, 2)), DType("float32")]) -> np.ndarray:
        assert x.dtype == np.float32
        return x * 2

    @nbserve.api
    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(total=df["a"] + df["b"])

    @nbserve.api
    def frame_columns(self, df: Annotated[pd.DataFrame, DataframeSchema(orient="columns")]) -> int:
        return len(df)

    @nbserve.api
    def tensor(self, t: Annotated[torch.Tensor, DType("float32")]) -> torch.Tensor:
        assert isinstance(t, torch.Tensor)
        return t + 1

    @nbserve.api
    def upload(self, doc: Path, note: str = "") -> dict[str, Any]:
        return {"name": doc.name, "text": doc.read_text(), "note": note}

    @nbserve.api
    def uploads(self, docs: list[Path]) -> list[str]:
        return [d.read_text() for d in docs]

    @nbserve.api
    def only_text(self, doc: Annotated[Path, ContentType("text/plain")]) -> str:
        return doc.read_text()

    @nbserve.api
    def file_out(self, text: str, ctx: nbserve.Context) -> Path:
        path = ctx.temp_dir / "report.txt"
        path.write_text(text)
        return path

    @nbserve.api
    def image(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.Transpose.ROTATE_90)

    @nbserve.api
    def raw_bytes(self, data: bytes) -> bytes:
        return data[::-1]

    @nbserve.api
    def root_text(self, text: str, /) -> str:
        return f"<{text}>"

    @nbserve.api
    def root_model(self, item: Item, /) -> int:
        return item.qty

    @nbserve.api
    def root_file(self, doc: Path, /) -> int:
        return len(doc.read_bytes())

    @nbserve.api
    def html(self, name: str) -> Annotated[str, ContentType("text/html")]:
        return f"<b>{name}</b>"

    @nbserve.api
    async def nothing(self) -> None:
        return None


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with running_service(Kinds) as handle, httpx.Client(base_url=handle.url, timeout=10) as http:
        yield http


def test_scalars_keep_their_types(client: httpx.Client) -> None:
    r = client.post("/scalars", json={"s": "a", "i": 2, "f": 1.5, "b": True})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "s": "a",
        "i": 2,
        "f": 1.5,
        "b": True,
        "types": ["str", "int", "float", "bool"],
    }


def test_lists_dicts_and_optional(client: httpx.Client) -> None:
    r = client.post("/containers", json={"xs": [1, 2, 3], "mapping": {"b": 1, "a": 2.5}})
    assert r.json() == {"sum": 6, "keys": ["a", "b"], "maybe": None}
    r = client.post("/containers", json={"xs": [], "mapping": {}, "maybe": 7, "unknown": "ignored"})
    assert r.json() == {"sum": 0, "keys": [], "maybe": 7}


def test_pydantic_model(client: httpx.Client) -> None:
    r = client.post("/model", json={"item": {"name": "pen"}})
    assert r.status_code == 200
    assert r.json() == {"name": "PEN", "qty": 2}


def test_ndarray_with_shape_and_dtype(client: httpx.Client) -> None:
    r = client.post("/array", json={"x": [[1, 2], [3, 4.5]]})
    assert r.status_code == 200
    assert r.json() == [[2.0, 4.0], [6.0, 9.0]]
    wrong_shape = client.post("/array", json={"x": [1, 2, 3]})
    assert wrong_shape.status_code == 400
    assert "x" in wrong_shape.json()["error"]


def test_dataframe_records_and_columns(client: httpx.Client) -> None:
    r = client.post("/frame", json={"df": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]})
    assert r.status_code == 200
    assert pd.DataFrame(r.json())["total"].tolist() == [3, 7]
    r = client.post("/frame_columns", json={"df": {"a": [1, 2, 3], "b": [4, 5, 6]}})
    assert r.json() == 3


def test_torch_tensor(client: httpx.Client) -> None:
    r = client.post("/tensor", json={"t": [[0.5, 1.5]]})
    assert r.status_code == 200
    assert r.json() == [[1.5, 2.5]]


def test_path_as_a_multipart_part(client: httpx.Client) -> None:
    r = client.post(
        "/upload",
        files={"doc": ("notes.txt", b"hello file", "text/plain")},
        data={"note": json.dumps("a note")},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "notes.txt", "text": "hello file", "note": "a note"}


def test_list_of_paths_as_repeated_parts(client: httpx.Client) -> None:
    r = client.post(
        "/uploads",
        files=[("docs", ("a.txt", b"A", "text/plain")), ("docs", ("b.txt", b"B", "text/plain"))],
    )
    assert r.json() == ["A", "B"]


def test_content_type_of_a_file_part_is_checked(client: httpx.Client) -> None:
    ok = client.post("/only_text", files={"doc": ("a.txt", b"plain", "text/plain")})
    assert ok.text == "plain"
    r = client.post("/only_text", files={"doc": ("a.png", b"\x89PNG", "image/png")})
    assert r.status_code == 400
    assert "image/png" in r.json()["error"]


def test_path_output_is_the_file(client: httpx.Client) -> None:
    r = client.post("/file_out", json={"text": "the report"})
    assert r.status_code == 200
    assert r.content == b"the report"
    assert r.headers["content-disposition"] == 'attachment; filename="report.txt"'
    assert r.headers["content-type"].startswith("text/plain")


def test_pil_image_in_and_out(client: httpx.Client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 2), "red").save(buffer, format="PNG")
    r = client.post("/image", files={"img": ("red.png", buffer.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (2, 4)


def test_bytes_in_a_json_body(client: httpx.Client) -> None:
    r = client.post("/raw_bytes", json={"data": "abc"})
    assert r.status_code == 200
    assert r.content == b"cba"


def test_root_inputs_take_the_raw_body(client: httpx.Client) -> None:
    r = client.post("/root_text", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.text == "<hello>"
    # A str root is the body itself even when it is sent as JSON (BentoML's rule).
    assert client.post("/root_text", json="hi").text == '<"hi">'
    assert client.post("/root_model", json={"name": "a", "qty": 3}).json() == 3
    r = client.post(
        "/root_file", content=b"12345", headers={"Content-Type": "application/octet-stream"}
    )
    assert r.json() == 5


def test_declared_content_type_of_the_response(client: httpx.Client) -> None:
    r = client.post("/html", json={"name": "x"})
    assert r.headers["content-type"].startswith("text/html")
    assert r.text == "<b>x</b>"


def test_none_is_json_null(client: httpx.Client) -> None:
    r = client.post("/nothing")
    assert r.status_code == 200
    assert r.json() is None


def test_form_urlencoded_and_unknown_content_types(client: httpx.Client) -> None:
    # curl -d sends a form: values are read as JSON, falling back to the raw string.
    r = client.post("/scalars", data={"s": "x", "i": "3", "f": "2", "b": "true"})
    assert r.json()["i"] == 3
    # An unknown Content-Type is read as JSON, as BentoML does.
    r = client.post(
        "/scalars",
        content=b'{"s":"x","i":1,"f":1,"b":false}',
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 200


def test_bentoml_pickle_is_refused_with_415(client: httpx.Client) -> None:
    r = client.post(
        "/scalars", content=b"\x80\x05", headers={"Content-Type": "application/vnd.bentoml+pickle"}
    )
    assert r.status_code == 415
    assert set(r.json()) == {"error", "detail"}


def test_our_client_round_trips_every_kind() -> None:
    with running_service(Kinds) as handle, handle.client() as client:
        assert client.model(item={"name": "a"}) == {"name": "A", "qty": 2}
        out = client.array(x=np.array([[1, 2]], dtype=np.float32))
        assert isinstance(out, np.ndarray)
        assert out.tolist() == [[2.0, 4.0]]
        frame = client.frame(df=pd.DataFrame({"a": [1], "b": [2]}))
        assert isinstance(frame, pd.DataFrame)
        assert frame["total"].tolist() == [3]
        assert client.root_text("x") == "<x>"
