"""Streaming APIs: one item per HTTP chunk (BentoML's client decodes chunk by chunk), real SSE
frames with `Accept: text/event-stream`, and failures that a client can see."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterator

import httpx
import pytest

import nbserve
from nbserve.testing import running_service

CLOSED = threading.Event()


@nbserve.service(traffic={"timeout": 1.0}, threads=2)
class Streams:
    @nbserve.api
    def words(self, n: int, delay: float = 0.02) -> Generator[str, None, None]:
        for i in range(n):
            time.sleep(delay)
            yield f"word{i} "

    @nbserve.api
    async def records(self, n: int) -> AsyncGenerator[dict[str, int], None]:
        for i in range(n):
            await asyncio.sleep(0.02)
            yield {"i": i}

    @nbserve.api
    def lines(self) -> Generator[str, None, None]:
        yield "first line\nsecond line"

    @nbserve.api
    async def fails_later(self) -> AsyncGenerator[str, None]:
        yield "one"
        await asyncio.sleep(0.02)
        raise RuntimeError("secret-stream-failure")

    @nbserve.api
    def fails_first(self) -> Generator[str, None, None]:
        raise ValueError("before any item")
        yield "never"

    @nbserve.api
    def endless(self) -> Generator[str, None, None]:
        CLOSED.clear()
        try:
            while True:
                time.sleep(0.01)
                yield "tick"
        finally:
            CLOSED.set()

    @nbserve.api
    def slow_start(self) -> Generator[str, None, None]:
        time.sleep(2)
        yield "late"

    @nbserve.api
    def created(self, ctx: nbserve.Context) -> Generator[str, None, None]:
        ctx.response.status_code = 201
        ctx.response.headers["X-Stream"] = "yes"
        yield "made"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_service(Streams) as handle:
        yield handle.url


def raw_chunks(url: str, path: str, body: bytes, headers: str = "") -> tuple[bytes, list[bytes]]:
    """The status line and headers, and the chunked body's chunks exactly as they came."""
    parsed = httpx.URL(url)
    assert parsed.port is not None
    with socket.create_connection((parsed.host, parsed.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    chunks = []
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
    return head, chunks


def test_each_item_is_one_chunk(url: str) -> None:
    head, chunks = raw_chunks(url, "/words", b'{"n": 4}')
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Transfer-Encoding: chunked" in head
    assert chunks == [b"word0 ", b"word1 ", b"word2 ", b"word3 "]


def test_json_items_are_one_document_per_chunk(url: str) -> None:
    _, chunks = raw_chunks(url, "/records", b'{"n": 3}')
    assert chunks == [b'{"i":0}', b'{"i":1}', b'{"i":2}']


def test_httpx_sees_the_same_boundaries(url: str) -> None:
    with (
        httpx.Client(base_url=url) as client,
        client.stream("POST", "/words", json={"n": 3, "delay": 0.05}) as r,
    ):
        assert [chunk for chunk in r.iter_raw() if chunk] == [b"word0 ", b"word1 ", b"word2 "]


def test_sse_frames_when_asked(url: str) -> None:
    head, chunks = raw_chunks(url, "/records", b'{"n": 2}', "Accept: text/event-stream\r\n")
    assert b"Content-Type: text/event-stream" in head
    assert chunks == [b'data: {"i":0}\n\n', b'data: {"i":1}\n\n']
    _, chunks = raw_chunks(url, "/lines", b"{}", "Accept: text/event-stream\r\n")
    assert chunks == [b"data: first line\ndata: second line\n\n"]


def test_sse_error_event_after_the_first_item(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="nbserve"):
        head, chunks = raw_chunks(url, "/fails_later", b"{}", "Accept: text/event-stream\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert chunks[0] == b"data: one\n\n"
    event = chunks[1].decode()
    assert event.startswith("event: error\ndata: {")
    assert '"error_code":500' in event
    assert "secret" not in event
    assert any("fails_later" in rec.getMessage() for rec in caplog.records)


def test_raw_stream_that_fails_later_is_visibly_broken(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    got = []
    with (
        caplog.at_level(logging.ERROR, logger="nbserve"),
        httpx.Client(base_url=url) as client,
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/fails_later") as r,
    ):
        got.extend(r.iter_raw())
    assert got == [b"one"]  # not silently truncated into a success


def test_error_before_the_first_item_is_a_normal_500(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="nbserve"):
        r = httpx.post(url + "/fails_first", json={}, headers={"Accept": "text/event-stream"})
    assert r.status_code == 500
    assert set(r.json()) == {"error", "detail"}
    assert r.json()["detail"]["request_id"] == r.headers["x-request-id"]


def test_first_item_past_the_timeout_is_504(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nbserve"):
        r = httpx.post(url + "/slow_start", json={}, timeout=10)
    assert r.status_code == 504
    assert set(r.json()) == {"error", "detail"}


def test_client_leaving_closes_the_generator(url: str) -> None:
    with httpx.Client(base_url=url) as client, client.stream("POST", "/endless", json={}) as r:
        for _ in r.iter_raw():
            break
    assert CLOSED.wait(5), "the generator kept running after the client left"


def test_context_applies_to_streams(url: str) -> None:
    r = httpx.post(url + "/created", json={})
    assert r.status_code == 201
    assert r.headers["x-stream"] == "yes"
    assert r.text == "made"


def test_our_client_iterates_items() -> None:
    with running_service(Streams) as handle, handle.client() as client:
        assert list(client.words(n=3, delay=0)) == ["word0 ", "word1 ", "word2 "]
        assert list(client.records(n=2)) == [{"i": 0}, {"i": 1}]
