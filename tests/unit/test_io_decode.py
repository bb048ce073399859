"""Decoding requests into call kwargs: every wire form, every type, and errors a client can act on."""

import io
import json
import pickle
import typing as t
from pathlib import Path
from typing import Annotated, Any

import cloudpickle
import numpy as np
import pytest
from pydantic import BaseModel, Field

from nbserve._sdk.io import InputSpec, UploadedFile, input_spec_for, output_spec_for
from nbserve.exceptions import InvalidArgument
from nbserve.validators import ContentType, DataframeSchema, DType, Shape


class Item(BaseModel):
    name: str
    qty: int = 1


class Order(BaseModel):
    item: Item


def spec(func: Any, ctx_param: str | None = None) -> InputSpec:
    return input_spec_for(func, ctx_param=ctx_param, input_spec=None)


def error(call: t.Callable[[], Any]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        call()
    assert info.value.error_code == 400
    return info.value


class Shout:
    def shout(self, text: str, times: int = 1) -> str: ...


# -- JSON bodies -----------------------------------------------------------------------------


def test_json_object_to_kwargs_with_defaults() -> None:
    s = spec(Shout.shout)
    assert s.from_json(b'{"text": "hi", "times": 3}') == {"text": "hi", "times": 3}
    assert s.from_json(b'{"text": "hi"}') == {"text": "hi", "times": 1}
    assert s.from_json(b'{"text": "hi", "unknown": 1}') == {"text": "hi", "times": 1}


def test_empty_body_is_an_empty_object() -> None:
    class S:
        def f(self, n: int = 2) -> int: ...

    assert spec(S.f).from_json(b"") == {"n": 2}


def test_bad_field_names_field_expected_got_and_example() -> None:
    err = error(lambda: spec(Shout.shout).from_json(b'{"text": "hi", "times": "abc"}'))
    assert err.message == (
        "1 validation error for Input: field 'times': Input should be a valid integer (got 'abc'); "
        'send an integer, e.g. {"times": 2}'
    )
    assert err.detail == [
        {
            "loc": ["times"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]


def test_missing_field_is_named() -> None:
    err = error(lambda: spec(Shout.shout).from_json(b"{}"))
    assert (
        err.message
        == '1 validation error for Input: field \'text\' is required, e.g. {"text": "hello"}'
    )
    assert err.detail[0]["type"] == "missing"


def test_several_errors_are_listed() -> None:
    err = error(lambda: spec(Shout.shout).from_json(b'{"times": "x"}'))
    lines = err.message.splitlines()
    assert lines[0] == "2 validation errors for Input:"
    assert lines[1].startswith("- field 'text' is required")
    assert lines[2].startswith("- field 'times': Input should be a valid integer")
    assert len(err.detail) == 2


def test_malformed_json_says_what_to_send() -> None:
    err = error(lambda: spec(Shout.shout).from_json(b'{"text": '))
    assert err.message.startswith("Request body is not valid JSON: EOF while parsing")
    assert err.message.endswith(
        '; send a JSON object keyed by parameter name, e.g. {"text": "hello", "times": 2}'
    )
    assert err.detail[0]["type"] == "json_invalid"


def test_json_that_is_not_an_object() -> None:
    err = error(lambda: spec(Shout.shout).from_json(b"[1, 2]"))
    assert err.message == (
        "Request body must be a JSON object keyed by parameter name, not a JSON array; "
        'send e.g. {"text": "hello", "times": 2}'
    )


def test_nested_error_path() -> None:
    class S:
        def f(self, order: Order) -> None: ...

    err = error(lambda: spec(S.f).from_json(b'{"order": {"item": {"name": "a", "qty": "x"}}}'))
    assert "field 'order.item.qty': Input should be a valid integer (got 'x')" in err.message
    assert err.detail[0]["loc"] == ["order", "item", "qty"]


def test_json_types() -> None:
    class S:
        def f(
            self,
            item: Item,
            b: bytes,
            o: int | None = None,
            u: int | str = 0,
            d: dict[str, list[float]] = Field(default_factory=dict),  # noqa: B008 - the BentoML idiom under test
            tup: tuple[int, str] = (0, ""),
            flag: bool = False,
        ) -> None: ...

    body = b'{"item": {"name": "a"}, "b": "raw", "o": null, "u": "s", "d": {"k": [1, 2.5]}, "tup": [1, "x"], "flag": true}'
    out = spec(S.f).from_json(body)
    assert out == {
        "item": Item(name="a"),
        "b": b"raw",
        "o": None,
        "u": "s",
        "d": {"k": [1.0, 2.5]},
        "tup": (1, "x"),
        "flag": True,
    }
    assert spec(S.f).from_json(b'{"item": {"name": "a"}, "b": ""}')["d"] == {}


# -- arrays, tensors, DataFrames ---------------------------------------------------------------


class Arrays:
    def f(self, x: Annotated[np.ndarray, Shape((2,)), DType("float32")]) -> None: ...
    def g(self, x: Annotated[np.ndarray, Shape((-1, 2))]) -> None: ...
    def h(self, x: np.ndarray) -> None: ...


def test_ndarray_dtype_conversion() -> None:
    x = spec(Arrays.f).from_json(b'{"x": [1, 2]}')["x"]
    assert isinstance(x, np.ndarray)
    assert x.dtype == np.float32
    assert x.tolist() == [1.0, 2.0]
    assert spec(Arrays.h).from_json(b'{"x": [[1, 2], [3, 4]]}')["x"].shape == (2, 2)


def test_ndarray_shape_error_names_expected_and_got() -> None:
    err = error(lambda: spec(Arrays.f).from_json(b'{"x": [1, 2, 3]}'))
    assert "field 'x': Input should be an array of shape (2,), got shape (3,)" in err.message
    assert err.detail[0]["type"] == "tensor_shape"
    assert spec(Arrays.g).from_json(b'{"x": [[1, 2], [3, 4], [5, 6]]}')["x"].shape == (3, 2)
    err = error(lambda: spec(Arrays.g).from_json(b'{"x": [1, 2]}'))
    assert "shape (-1, 2) (-1: any size), got shape (2,)" in err.message


def test_ndarray_rejects_ragged_and_non_numbers() -> None:
    assert (
        "rows differ in length"
        in error(lambda: spec(Arrays.h).from_json(b'{"x": [[1], [1, 2]]}')).message
    )
    assert (
        "could not convert string to float"
        in error(lambda: spec(Arrays.f).from_json(b'{"x": ["a", 1]}')).message
    )
    assert "got dict" in error(lambda: spec(Arrays.h).from_json(b'{"x": {"a": 1}}')).message


def test_ndarray_from_python_keeps_or_converts() -> None:
    arr = np.array([1.0, 2.0], dtype=np.float32)
    assert spec(Arrays.f).validate({"x": arr})["x"] is arr
    converted = spec(Arrays.f).validate({"x": np.array([1, 2])})["x"]
    assert converted.dtype == np.float32


def test_torch_tensor() -> None:
    torch = pytest.importorskip("torch")

    class S:
        def f(self, t: Annotated[torch.Tensor, DType("float32"), Shape((-1, 2))]) -> None: ...

    out = spec(S.f).from_json(b'{"t": [[1, 2]]}')["t"]
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert out.shape == (1, 2)
    assert "got shape (3,)" in error(lambda: spec(S.f).from_json(b'{"t": [1, 2, 3]}')).message


def test_dataframe_records_and_columns() -> None:
    pd = pytest.importorskip("pandas")

    class S:
        def f(
            self,
            d: pd.DataFrame,
            c: Annotated[
                pd.DataFrame, DataframeSchema(orient="columns", columns=["b", "a"])
            ] = None,
        ) -> None: ...

    out = spec(S.f).from_json(
        b'{"d": [{"a": 1, "b": 2}, {"a": 3, "b": 4}], "c": {"a": [1], "b": [2]}}'
    )
    assert out["d"].to_dict(orient="list") == {"a": [1, 3], "b": [2, 4]}
    assert list(out["c"].columns) == ["b", "a"]
    err = error(lambda: spec(S.f).from_json(b'{"d": {"a": [1]}}'))
    assert (
        "field 'd': Input should be a list of row objects (orient='records'), e.g. [{"
        in err.message
    )


# -- root inputs ------------------------------------------------------------------------------


class Roots:
    def text(self, text: str, /) -> None: ...
    def raw(self, data: bytes, /) -> None: ...
    def model(self, item: Item, /) -> None: ...
    def numbers(self, xs: list[int], /) -> None: ...
    def defaulted(self, n: int = 5, /) -> None: ...
    def file(self, doc: Annotated[Path, ContentType("text/*")], /) -> None: ...


def test_root_text_is_the_raw_body() -> None:
    s = spec(Roots.text)
    # No JSON decoding, even when the client says JSON (as in BentoML).
    assert s.from_root(b'"hello"', "application/json", None) == {"text": '"hello"'}
    assert s.from_json(b"hi") == {"text": "hi"}
    assert s.from_root("é".encode("latin-1"), "text/plain; charset=latin-1", None) == {"text": "é"}
    assert "not valid utf-8 text" in error(lambda: s.from_root(b"\xff", "text/plain", None)).message
    assert s.media_type == "text/plain"


def test_root_bytes_and_json() -> None:
    assert spec(Roots.raw).from_root(b"\x00\x01", "application/octet-stream", None) == {
        "data": b"\x00\x01"
    }
    assert spec(Roots.model).from_root(b'{"name": "a"}', "application/json", None) == {
        "item": Item(name="a")
    }
    assert spec(Roots.numbers).from_json(b"[1, 2]") == {"xs": [1, 2]}
    assert spec(Roots.defaulted).from_root(b"", "", None) == {"n": 5}


def test_root_inputs_read_form_encoded_bodies_as_forms() -> None:
    """What `curl -d` sends is a form, as BentoML reads it: it can fill a structured root
    input, and a text or bytes one answers 400 naming the input and the Content-Type to use."""
    form = "application/x-www-form-urlencoded"
    assert spec(Roots.model).from_root(b"name=apple&qty=3", form, None) == {
        "item": Item(name="apple", qty=3)
    }
    for root in (Roots.text, Roots.raw):
        err = error(lambda root=root: spec(root).from_root(b"hello world", form, None))  # type: ignore[misc]
        assert "sent form-encoded" in err.message
        assert "Content-Type: text/plain" in err.message


def test_root_errors_describe_the_body() -> None:
    err = error(lambda: spec(Roots.numbers).from_json(b'{"xs": [1]}'))
    assert err.message.startswith(
        "1 validation error for Input: Request body: Input should be a valid array"
    )
    assert err.message.endswith("send a JSON array, e.g. [2]")
    err = error(lambda: spec(Roots.numbers).from_json(b"[1,"))
    assert err.message.startswith("Request body is not valid JSON")
    assert "Request body is empty" in error(lambda: spec(Roots.numbers).from_json(b"")).message


def test_root_file_written_with_suffix_and_checked(tmp_path: Path) -> None:
    s = spec(Roots.file)
    path = s.from_root(b"hello", "text/plain", tmp_path)["doc"]
    assert path.read_bytes() == b"hello"
    assert path.suffix == ".txt"
    assert tmp_path in path.parents
    err = error(lambda: s.from_root(b"x", "image/png", tmp_path))
    assert "Invalid content type image/png for Request body, expected text/*" in err.message
    # A form with one file part also works for a file root.
    upload = UploadedFile("notes.md", "text/markdown", b"# hi")
    assert s.from_form({}, {"anything": [upload]}, tmp_path)["doc"].name == "notes.md"


# -- multipart forms ----------------------------------------------------------------------------


class Uploads:
    def f(
        self,
        doc: Annotated[Path, ContentType("text/plain")],
        extra: list[Path] = Field(default_factory=list),  # noqa: B008 - the BentoML idiom under test
        maybe: Path | None = None,
        n: int = 0,
        title: str = "",
        tags: list[str] = Field(default_factory=list),  # noqa: B008 - the BentoML idiom under test
        item: Item | None = None,
    ) -> None: ...


def txt(name: str = "a.txt", body: bytes = b"hello", ctype: str = "text/plain") -> UploadedFile:
    return UploadedFile(name, ctype, body)


def test_form_files_and_fields(tmp_path: Path) -> None:
    s = spec(Uploads.f)
    assert s.multipart
    assert s.media_type == "multipart/form-data"
    out = s.from_form(
        {"n": ["3"], "title": ["123"], "tags": ['["a", "b"]'], "item": ['{"name": "x"}']},
        {"doc": [txt()], "extra": [txt("b.bin", b"1", ""), txt("c.png", b"2", "image/png")]},
        tmp_path,
    )
    assert out["doc"].read_bytes() == b"hello"
    assert out["doc"].name == "a.txt"
    assert [p.name for p in out["extra"]] == ["b.bin", "c.png"]
    assert out["maybe"] is None
    assert out["n"] == 3
    assert out["title"] == "123"  # a str input takes the form value verbatim
    assert out["tags"] == ["a", "b"]
    assert out["item"] == Item(name="x")


def test_form_values_as_bentoml_client_sends_them(tmp_path: Path) -> None:
    s = spec(Uploads.f)
    out = s.from_form(
        {"title": ['"quoted"'], "tags": ["a", "b"]},
        {"doc": [txt()], "extra": [txt("one.txt")]},
        tmp_path,
    )
    assert out["title"] == "quoted"  # json.dumps("quoted")
    assert out["tags"] == ["a", "b"]  # repeated values
    assert [p.name for p in out["extra"]] == ["one.txt"]


def test_form_file_name_is_sanitised(tmp_path: Path) -> None:
    out = spec(Uploads.f).from_form({}, {"doc": [txt("../../etc/passwd.txt")]}, tmp_path)
    assert out["doc"].name == "passwd.txt"
    assert tmp_path in out["doc"].parents


def test_form_content_type_mismatch(tmp_path: Path) -> None:
    err = error(
        lambda: spec(Uploads.f).from_form({}, {"doc": [txt("a.png", b"x", "image/png")]}, tmp_path)
    )
    assert err.message == (
        "1 validation error for Input: Invalid content type image/png for field 'doc', expected text/plain"
    )
    assert err.detail == [
        {
            "loc": ["doc"],
            "msg": "Invalid content type image/png, expected text/plain",
            "type": "content_type",
        }
    ]
    # A generic part type falls back to the file name's type.
    assert spec(Uploads.f).from_form(
        {}, {"doc": [txt("a.txt", b"x", "application/octet-stream")]}, tmp_path
    )


def test_file_field_never_reads_a_string(tmp_path: Path) -> None:
    err = error(lambda: spec(Uploads.f).from_form({"doc": ["/etc/passwd"]}, {}, tmp_path))
    assert "field 'doc': Input should be a file sent as a multipart/form-data part" in err.message
    assert "(got '/etc/passwd')" in err.message
    err = error(lambda: spec(Uploads.f).from_json(b'{"doc": "https://example.com/x.txt"}'))
    assert err.detail[0]["type"] == "file_expected"
    assert (
        "field 'doc' is required"
        in error(lambda: spec(Uploads.f).from_form({}, {}, tmp_path)).message
    )


def test_non_file_field_sent_as_a_file_part(tmp_path: Path) -> None:
    out = spec(Uploads.f).from_form(
        {}, {"doc": [txt()], "title": [txt("t.txt", b"from a file")]}, tmp_path
    )
    assert out["title"] == "from a file"


def test_pil_image_upload(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")

    class S:
        def f(self, img: image.Image, /) -> None: ...
        def g(self, img: Annotated[image.Image, ContentType("image/png")]) -> None: ...

    buffer = io.BytesIO()
    image.new("RGB", (3, 2), "red").save(buffer, format="PNG")
    png = buffer.getvalue()
    out = spec(S.g).from_form({}, {"img": [UploadedFile("p.png", "image/png", png)]}, tmp_path)[
        "img"
    ]
    assert isinstance(out, image.Image)
    assert out.size == (3, 2)
    assert out.format == "PNG"
    root = spec(S.f).from_root(png, "image/png", tmp_path)["img"]
    assert root.size == (3, 2)
    err = error(
        lambda: spec(S.g).from_form(
            {}, {"img": [UploadedFile("p.png", "image/png", b"nope")]}, tmp_path
        )
    )
    assert "field 'img': Input should be an image PIL can read" in err.message
    err = error(
        lambda: spec(S.g).from_form(
            {}, {"img": [UploadedFile("p.jpg", "image/jpeg", png)]}, tmp_path
        )
    )
    assert "Invalid content type image/jpeg for field 'img', expected image/png" in err.message


# -- Python values --------------------------------------------------------------------------------


def test_validate_python_values(tmp_path: Path) -> None:
    s = spec(Uploads.f)
    doc = tmp_path / "given.txt"
    doc.write_text("x")
    out = s.validate({"doc": doc, "n": "4"})
    assert out["doc"] == doc
    assert out["n"] == 4
    saved = s.validate({"doc": b"bytes"}, temp_dir=tmp_path)["doc"]
    assert saved.read_bytes() == b"bytes"
    err = error(lambda: s.validate({"n": 1}))
    assert "field 'doc' is required" in err.message
    assert spec(Roots.defaulted).validate({}) == {"n": 5}
    assert spec(Roots.numbers).validate({"xs": ["1"]}) == {"xs": [1]}


def test_validate_is_idempotent_on_decoded_values(tmp_path: Path) -> None:
    s = spec(Uploads.f)
    once = s.from_form({"n": ["1"]}, {"doc": [txt()]}, tmp_path)
    assert s.validate(once) == once


def test_specs_survive_pickle(tmp_path: Path) -> None:
    s = pickle.loads(pickle.dumps(spec(Uploads.f)))
    assert s.from_form({"n": ["2"]}, {"doc": [txt()]}, tmp_path)["n"] == 2
    assert pickle.loads(pickle.dumps(spec(Roots.text))).from_json(b"x") == {"text": "x"}
    arrays = cloudpickle.loads(cloudpickle.dumps(spec(Arrays.f)))
    assert arrays.from_json(b'{"x": [1, 2]}')["x"].dtype == np.float32
    out = pickle.loads(pickle.dumps(output_spec_for(Shout.shout, output_spec=None)))
    assert out.encode("x").body == b"x"


def test_root_file_needs_from_root() -> None:
    with pytest.raises(TypeError, match="from_root"):
        spec(Roots.file).from_json(b"data")


def test_message_examples_are_json() -> None:
    class S:
        def f(self, when: Any, arr: Annotated[np.ndarray, Shape((2, 2))], item: Item) -> None: ...

    err = error(lambda: spec(S.f).from_json(b"nope"))
    example = err.message.split("e.g. ", 1)[1]
    assert json.loads(example) == {
        "when": 1,
        "arr": [[1.0, 2.0], [3.0, 4.0]],
        "item": {"name": "hello"},
    }


def test_an_array_hint_shows_an_example_of_the_declared_shape_that_passes() -> None:
    class S:
        def rows(self, x: Annotated[np.ndarray, Shape((-1, 4))]) -> None: ...
        def free(self, x: np.ndarray) -> None: ...
        def wide(self, x: Annotated[np.ndarray, Shape((-1, 784))]) -> None: ...

    err = error(lambda: spec(S.rows).from_json(b'{"x": [1.0, 2.0]}'))
    assert "got shape (2,)" in err.message
    example = err.message.split("e.g. ", 1)[1]
    assert json.loads(example) == {"x": [[1.0, 2.0, 3.0, 4.0]]}  # 2-D, 4 columns: one row
    assert spec(S.rows).from_json(example.encode())["x"].shape == (1, 4)
    # No declared shape: rows, the shape models take, not a 1-D list.
    err = error(lambda: spec(S.free).from_json(b'{"x": "zz"}'))
    assert err.message.endswith('e.g. {"x": [[1.0, 2.0]]}')
    # Too wide to write out: the words say the shape, and no example misleads.
    err = error(lambda: spec(S.wide).from_json(b'{"x": [1.0]}'))
    assert "send a nested list of numbers of shape (-1, 784)" in err.message
    assert "e.g." not in err.message
