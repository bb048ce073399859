"""The request tester's kernel side against a real server: every IO type through the tester path.

Each test drives the widget's message handler (`RequestTester.handle_message`) the way the page
does: a `send` message shaped as tester.js builds it (file contents as buffers), then the
bridge's real HTTP call to the service on 127.0.0.1 (with its token), and the `head` / `chunk`
/ `done` messages that go back to the page, collected here instead of sent over a comm.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from PIL.Image import Image as PILImage

import nbserve
from nbserve._notebook.tester.bridge import Bridge
from nbserve._notebook.tester.examples import example_body, is_file
from nbserve._notebook.tester.widget import RequestTester
from nbserve.testing import running_service
from nbserve.validators import DType, Shape

TOKEN = "tester-token"


@nbserve.service(path_prefix="/v1")
class Tryout:
    """Every IO type the tester renders."""

    @nbserve.api
    def classify(self, text: str, n: int = 1) -> dict[str, Any]:
        return {"label": "positive" if "love" in text else "neutral", "n": n}

    @nbserve.api
    def shout(self, text: str, /) -> str:
        return text.upper()

    @nbserve.api
    def upload(self, f: Path, note: str = "hi") -> dict[str, str]:
        return {"note": note, "f": f.read_text()}

    @nbserve.api
    def flip(self, img: PILImage) -> PILImage:
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    @nbserve.api
    def double(self, x: Annotated[np.ndarray, Shape((-1, 2)), DType("float32")]) -> np.ndarray:
        return x * 2

    @nbserve.api
    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(total=df["a"] + df["b"])

    @nbserve.api
    def tokens(self, prompt: str) -> Iterator[str]:
        for i in range(4):
            yield f"{prompt}{i} "
            time.sleep(0.02)

    @nbserve.api
    def boom(self, text: str) -> str:
        msg = f"cannot handle {text!r}"
        raise RuntimeError(msg)


class Page:
    """Stands in for the browser: collects what the kernel sends to the page."""

    def __init__(self) -> None:
        self.messages: list[tuple[dict[str, Any], list[bytes]]] = []
        self.lock = threading.Lock()

    def __call__(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        with self.lock:
            self.messages.append((content, buffers))

    def answer(self, rid: str) -> dict[str, Any]:
        """The answer to request `rid`, as the page assembles it."""
        with self.lock:
            mine = [(c, b) for c, b in self.messages if c.get("id") == rid]
        kinds = [c["type"] for c, _ in mine]
        answer: dict[str, Any] = {
            "kinds": kinds,
            "body": b"".join(b[0] for c, b in mine if c["type"] == "chunk"),
        }
        for content, _ in mine:
            answer.update({k: v for k, v in content.items() if k not in ("type", "id")})
        return answer


@pytest.fixture(scope="module")
def handle() -> Iterator[Any]:
    with running_service(Tryout, token=TOKEN) as h:
        yield h


@pytest.fixture
def tester(handle: Any) -> Iterator[tuple[RequestTester, Page]]:
    page = Page()
    widget = RequestTester(handle, reply=page)
    yield widget, page
    widget.close()


def send(
    widget: RequestTester, page: Page, api: str, buffers: list[bytes] | None = None, **message: Any
) -> dict[str, Any]:
    rid = f"t-{api}-{len(page.messages)}"
    widget.handle_message(
        {"type": "send", "id": rid, "api": api, "path": f"/{api}", **message}, buffers or []
    )
    widget.bridge.wait()
    return page.answer(rid)


def test_the_widget_describes_the_service(tester: tuple[RequestTester, Page], handle: Any) -> None:
    widget, _ = tester
    assert [r["name"] for r in widget.schema["routes"]] == list(Tryout.apis)
    assert widget.prefix == "/v1"
    assert widget.urls["local"] == handle.url  # its path prefix included
    assert widget.token_required is True
    assert widget.examples["classify"] == {"text": "string", "n": 1}
    assert widget.examples["double"] == {"x": [[0.0, 0.0]]}
    assert "f" not in widget.examples["upload"]
    # Deterministic text for nbconvert, GitHub and nbval: no port, time or id.
    assert (
        repr(widget)
        == "nbserve request tester for 'Tryout': classify, shout, upload, flip, double, frame, tokens, boom"
    )
    assert widget._repr_mimebundle_()[0]["text/plain"] == repr(widget)


def test_json_in_json_out(tester: tuple[RequestTester, Page]) -> None:
    answer = send(*tester, "classify", kind="json", body=json.dumps({"text": "I love it", "n": 2}))
    assert answer["kinds"] == ["head", "chunk", "done"]
    assert answer["status"] == 200
    assert answer["headers"]["content-type"] == "application/json"
    assert json.loads(answer["body"]) == {"label": "positive", "n": 2}
    assert answer["size"] == len(answer["body"])
    assert answer["ms"] >= answer["ttfb_ms"] > 0
    assert answer["request_id"]


def test_root_text_in_text_out(tester: tuple[RequestTester, Page]) -> None:
    answer = send(*tester, "shout", kind="text", body="hey")
    assert (answer["status"], answer["body"]) == (200, b"HEY")
    assert answer["headers"]["content-type"].startswith("text/plain")


def test_file_upload_as_multipart(tester: tuple[RequestTester, Page]) -> None:
    answer = send(
        *tester,
        "upload",
        buffers=[b"x,y\n1,2\n"],
        kind="multipart",
        fields={"note": json.dumps("from the tester")},
        files=[{"field": "f", "filename": "data.csv", "content_type": "text/csv"}],
    )
    assert answer["status"] == 200
    assert json.loads(answer["body"]) == {"note": "from the tester", "f": "x,y\n1,2\n"}


def test_image_in_image_out(tester: tuple[RequestTester, Page]) -> None:
    img = Image.new("RGB", (2, 1))
    img.putpixel((0, 0), (255, 0, 0))
    png = io.BytesIO()
    img.save(png, format="PNG")
    answer = send(
        *tester,
        "flip",
        buffers=[png.getvalue()],
        kind="multipart",
        fields={},
        files=[{"field": "img", "filename": "in.png", "content_type": "image/png"}],
    )
    assert answer["status"] == 200
    assert answer["headers"]["content-type"] == "image/png"
    flipped = Image.open(io.BytesIO(answer["body"]))
    assert flipped.getpixel((1, 0)) == (255, 0, 0)


def test_ndarray_and_dataframe(tester: tuple[RequestTester, Page]) -> None:
    answer = send(*tester, "double", kind="json", body=json.dumps({"x": [[1, 2], [3, 4]]}))
    assert (answer["status"], json.loads(answer["body"])) == (200, [[2, 4], [6, 8]])
    answer = send(*tester, "frame", kind="json", body=json.dumps({"df": [{"a": 1, "b": 2}]}))
    assert answer["status"] == 200
    assert json.loads(answer["body"]) == [{"a": 1, "b": 2, "total": 3}]


def test_a_stream_arrives_chunk_by_chunk(tester: tuple[RequestTester, Page]) -> None:
    answer = send(*tester, "tokens", kind="json", body=json.dumps({"prompt": "tok"}))
    assert answer["status"] == 200
    assert answer["body"] == b"tok0 tok1 tok2 tok3 "
    # The head first, then the chunks as the generator yields them, then done.
    assert answer["kinds"][0] == "head"
    assert answer["kinds"][-1] == "done"
    assert answer["kinds"].count("chunk") >= 2
    assert answer["chunks"] == answer["kinds"].count("chunk")


def test_a_400_names_its_field(tester: tuple[RequestTester, Page]) -> None:
    answer = send(*tester, "classify", kind="json", body=json.dumps({"n": "many"}))
    assert answer["status"] == 400
    doc = json.loads(answer["body"])
    assert sorted(d["loc"][0] for d in doc["detail"]) == ["n", "text"]
    assert "'text'" in doc["error"]


def test_a_500_carries_its_message_and_request_id(tester: tuple[RequestTester, Page]) -> None:
    answer = send(*tester, "boom", kind="json", body=json.dumps({"text": "x"}))
    assert answer["status"] == 500
    doc = json.loads(answer["body"])
    assert answer["request_id"] in doc["error"]
    assert doc["detail"]["request_id"] == answer["request_id"]


def test_without_the_token_the_service_says_401(handle: Any) -> None:
    page = Page()
    bridge = Bridge(lambda: (handle.url, None), page)
    bridge.submit({"id": "a", "path": "/classify", "kind": "json", "body": '{"text": "x"}'})
    bridge.wait()
    answer = page.answer("a")
    assert answer["status"] == 401
    assert "error" in json.loads(answer["body"])


def test_no_answer_is_reported_not_raised() -> None:
    page = Page()
    bridge = Bridge(lambda: ("http://127.0.0.1:9", None), page)  # discard port: refused
    bridge.submit({"id": "a", "path": "/x", "kind": "empty"})
    bridge.wait()
    answer = page.answer("a")
    assert answer["kinds"] == ["failed"]
    assert "no answer from http://127.0.0.1:9/x" in answer["message"]


def test_history_keeps_the_answers_and_resends_with_files(
    tester: tuple[RequestTester, Page],
) -> None:
    widget, page = tester
    send(
        widget,
        page,
        "upload",
        buffers=[b"abc"],
        kind="multipart",
        fields={},
        files=[{"field": "f", "filename": "a.txt", "content_type": "text/plain"}],
    )
    first = widget.history[-1]
    assert {k: first[k] for k in ("api", "path", "status", "size")} == {
        "api": "upload",
        "path": "/upload",
        "status": 200,
        "size": len(page.answer(first["id"])["body"]),
    }
    widget.handle_message({"type": "resend", "id": "again", "of": first["id"]}, [])
    widget.bridge.wait()
    assert json.loads(page.answer("again")["body"]) == {"note": "hi", "f": "abc"}
    assert [e["id"] for e in widget.history][-2:] == [first["id"], "again"]
    widget.handle_message({"type": "resend", "id": "gone", "of": "never-sent"}, [])
    assert page.answer("gone")["kinds"] == ["failed"]


def test_the_dashboard_polls_only_while_watched(tester: tuple[RequestTester, Page]) -> None:
    widget, page = tester
    send(widget, page, "classify", kind="json", body=json.dumps({"text": "a"}))
    send(widget, page, "classify", kind="json", body="{}")  # a 400
    assert not widget.poller.running
    widget.handle_message({"type": "watch", "on": True}, [])
    stats = _wait_for(
        lambda: next((c["stats"] for c, _ in page.messages if c["type"] == "stats"), None)
    )
    route = next(r for r in stats["routes"] if r["route"] == "/v1/classify")
    assert route["count"] >= 2
    assert route["errors"] >= 1
    assert route["p50_ms"] <= route["p95_ms"] <= route["p99_ms"]
    assert stats["state"] == "running"
    assert stats["workers"] == []  # inline
    widget.handle_message({"type": "watch", "on": False}, [])
    _wait_for(lambda: not widget.poller.running)


def test_every_example_body_is_accepted(handle: Any) -> None:
    """What the tester pre-fills and load tests send validates against the service."""
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    for route in Tryout.schema()["routes"]:
        if any(is_file(p) for p in (route["input"].get("properties") or {}).values()):
            with pytest.raises(ValueError, match="needs a file"):
                example_body(route)
            continue
        body = example_body(route)
        if route["input"].get("root_input"):
            response = httpx.post(
                f"{handle.url}{route['route']}",
                content=body,
                headers={**headers, "Content-Type": "text/plain"},
            )
        else:
            response = httpx.post(f"{handle.url}{route['route']}", json=body, headers=headers)
        expected = 500 if route["name"] == "boom" else 200
        assert response.status_code == expected, (route["name"], response.text)


def _wait_for(condition: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_dashboard_keeps_a_picture_for_saved_notebooks(handle: Any) -> None:
    widget = RequestTester(handle, view="dashboard", reply=Page())
    try:
        data, _ = widget._repr_mimebundle_()
    finally:
        widget.close()
    assert (
        data["text/plain"]
        == "nbserve dashboard for 'Tryout': classify, shout, upload, flip, double, frame, tokens, boom"
    )
    assert "application/vnd.jupyter.widget-view+json" in data  # the live widget where it renders
    svg = data["image/svg+xml"]  # and a picture where it does not (GitHub, nbconvert)
    assert svg.startswith("<?xml")
    assert "latency per route" in svg


@nbserve.service
class Before:
    @nbserve.api
    def old(self, text: str) -> str:
        return text


@nbserve.service(name="Before")
class After:
    @nbserve.api
    def new(self, n: int = 3) -> int:
        return n * 2


def test_a_swap_is_followed_on_the_next_send() -> None:
    with running_service(Before) as h:
        page = Page()
        widget = RequestTester(h, reply=page)
        try:
            assert [r["name"] for r in widget.schema["routes"]] == ["old"]
            h.swap(After)
            widget.handle_message(
                {
                    "type": "send",
                    "id": "n",
                    "api": "new",
                    "path": "/new",
                    "kind": "json",
                    "body": "{}",
                },
                [],
            )
            widget.bridge.wait()
            assert [r["name"] for r in widget.schema["routes"]] == ["new"]
            assert widget.examples == {"new": {"n": 3}}
            assert page.answer("n")["body"] == b"6"
        finally:
            widget.close()
