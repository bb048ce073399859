"""The clients against a scripted server (httpx.MockTransport): discovery, readiness, prefixes,
generated methods, headers and stream framing. The BentoML oracle is tests/integration."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from nbserve._client import AsyncHTTPClient, SyncHTTPClient
from nbserve._client.base import backoff
from nbserve.exceptions import InvalidArgument, NbserveError, ServiceUnavailable

OBJECT = {"type": "object", "additionalProperties": True}


def route(name: str, output: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {
        "name": name,
        "route": f"/v1/{name}",
        "input": {"type": "object", "properties": props, "required": list(props)},
        "output": output,
    }


ROUTES = [
    {**route("shout", {"type": "string"}, text={"type": "string"}), "doc": "Shout it."},
    route("call", {"type": "integer"}, x={"type": "integer"}),
    route("__call__", {"type": "integer"}, x={"type": "integer"}),
    route("gen", {"type": "string", "is_stream": True, "sse": True}, n={"type": "integer"}),
    route("objs", {**OBJECT, "is_stream": True, "sse": True}, n={"type": "integer"}),
    route("raw", {**OBJECT, "is_stream": True, "media_type": "text/event-stream"}),
]


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body delivered in exactly these transport chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


class FakeServer:
    """nbserve's protocol under the prefix /v1; `schema_at_root` mimics BentoML's prefix bug."""

    def __init__(self, *, not_ready_polls: int = 0, schema_at_root: bool = False) -> None:
        self.not_ready_polls = not_ready_polls
        self.schema_path = "/schema.json" if schema_at_root else "/v1/schema.json"
        self.requests: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/v1/readyz":
            if self.not_ready_polls > 0:
                self.not_ready_polls -= 1
                return httpx.Response(503, text="warming up")
            return httpx.Response(200, text="\n")
        if path == self.schema_path:
            return httpx.Response(200, json={"name": "Fake", "routes": ROUTES})
        body = json.loads(request.content or b"{}")
        if path == "/v1/shout":
            if not isinstance(body["text"], str):
                return httpx.Response(400, json={"error": "text must be a string"})
            return httpx.Response(200, text=body["text"].upper())
        if path in ("/v1/call", "/v1/__call__"):
            return httpx.Response(200, json=body["x"] + 1)
        sse = "text/event-stream" in request.headers.get("accept", "")
        if path == "/v1/gen" and sse:
            frames = "".join(f"data: item {i}\ndata: line 2\n\n" for i in range(body["n"]))
            frames += 'event: error\ndata: {"error": "generator failed", "error_code": 500}\n\n'
            data = frames.encode()
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=Chunks([data[i : i + 5] for i in range(0, len(data), 5)]),
            )
        if path == "/v1/objs" and sse:
            data = b"".join(b'data: {"i": %d}\n\n' % i for i in range(body["n"]))
            chunks = [data[:3], data[3:20], data[20:]]
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, stream=Chunks(chunks)
            )
        if path == "/v1/raw":
            assert not sse, "Accept: text/event-stream sent to a route without `sse: true`"
            chunks = [b'{"i": 0}{"i": 1}', b'{"i": ', b"2}"]  # coalesced and split items
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, stream=Chunks(chunks)
            )
        return httpx.Response(404, text="Not Found")


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def client(server: FakeServer) -> Iterator[SyncHTTPClient]:
    with SyncHTTPClient("http://h/v1/", token="s3cret", transport=server.transport()) as c:
        yield c


def test_discovery_under_a_prefix(client: SyncHTTPClient, server: FakeServer) -> None:
    assert client.url == "http://h/v1"
    assert client.shout(text="hi") == "HI"
    # Routes that already carry the prefix (as BentoML's do) are not prefixed twice.
    assert server.paths() == ["GET /v1/readyz", "GET /v1/schema.json", "POST /v1/shout"]
    headers = server.requests[-1].headers
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["user-agent"].startswith("nbserve-client/")
    assert headers["content-type"] == "application/json"


def test_generated_methods(client: SyncHTTPClient) -> None:
    assert client.shout.__doc__ == "Shout it."
    assert str(inspect.signature(client.shout)) == "(text)"
    assert client.api_call(1) == 2  # "call" clashes with the client's own call()
    assert client.call("call", x=2) == 3
    assert client(5) == 6  # the route named __call__
    assert "shout" in repr(client)


def test_errors_come_from_the_body(client: SyncHTTPClient) -> None:
    with pytest.raises(InvalidArgument, match=r"^text must be a string$"):
        client.shout(text=1)


def test_schema_at_the_root_is_found_for_bentoml_prefixes() -> None:
    server = FakeServer(schema_at_root=True)
    with SyncHTTPClient("http://h/v1", transport=server.transport()) as client:
        assert client.shout("x") == "X"
    assert server.paths()[:3] == ["GET /v1/readyz", "GET /v1/schema.json", "GET /schema.json"]


def test_schema_errors_name_the_url() -> None:
    with pytest.raises(
        NbserveError,
        match=r"Failed to fetch the service schema from http://h/schema.json: HTTP 404 'Not Found'",
    ):
        SyncHTTPClient("http://h", server_ready_timeout=0, transport=FakeServer().transport())


def test_readiness_sleeps_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    server = FakeServer(not_ready_polls=3)
    SyncHTTPClient("http://h/v1", transport=server.transport()).close()
    assert sleeps == pytest.approx([0.02, 0.03, 0.045])
    assert server.paths().count("GET /v1/readyz") == 4


def test_backoff_is_capped() -> None:
    delays = backoff()
    assert [round(next(delays), 4) for _ in range(9)][-3:] == [0.2278, 0.25, 0.25]


def test_not_ready_says_what_the_server_answered() -> None:
    server = FakeServer(not_ready_polls=10**6)
    started = time.monotonic()
    with pytest.raises(
        ServiceUnavailable,
        match=r"^Server at http://h/v1 is not ready after 0.2 s: last answer HTTP 503 'warming up'\. Check",
    ):
        SyncHTTPClient("http://h/v1", server_ready_timeout=0.2, transport=server.transport())
    assert time.monotonic() - started >= 0.2  # it waited the whole readiness timeout
    assert 3 < server.paths().count("GET /v1/readyz") < 20  # sleeps between polls, no busy loop


def test_not_ready_names_the_transport_failure_sync_and_async() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    expected = r"^Server at http://h is not ready after 0.1 s: last answer ConnectError: connection refused\. Check"
    with pytest.raises(ServiceUnavailable, match=expected):
        SyncHTTPClient("http://h", server_ready_timeout=0.1, transport=httpx.MockTransport(refuse))

    async def scenario() -> None:
        client = AsyncHTTPClient(
            "http://h", server_ready_timeout=0.1, transport=httpx.MockTransport(refuse)
        )
        async with client:
            pass

    with pytest.raises(ServiceUnavailable, match=expected):
        asyncio.run(scenario())


def test_a_poll_cut_short_by_the_deadline_keeps_the_server_s_last_answer() -> None:
    polls: list[int] = []

    def warm_then_hang(request: httpx.Request) -> httpx.Response:
        polls.append(1)
        if len(polls) == 1:
            return httpx.Response(503, text="warming up")
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ServiceUnavailable, match=r"last answer HTTP 503 'warming up'\. Check"):
        SyncHTTPClient(
            "http://h", server_ready_timeout=0.1, transport=httpx.MockTransport(warm_then_hang)
        )
    assert len(polls) > 1


def test_zero_ready_timeout_skips_readiness() -> None:
    server = FakeServer(not_ready_polls=1)
    SyncHTTPClient("http://h/v1", server_ready_timeout=0, transport=server.transport()).close()
    assert server.paths() == ["GET /v1/schema.json"]


def test_url_must_be_http() -> None:
    with pytest.raises(
        ValueError,
        match=r"url='localhost:3000' is not an http\(s\) URL; pass one like 'http://127.0.0.1:3000'",
    ):
        SyncHTTPClient("localhost:3000")


def test_sse_stream_with_multiline_items_and_an_error_event(
    client: SyncHTTPClient, server: FakeServer
) -> None:
    items: list[str] = []
    with pytest.raises(NbserveError, match=r"^generator failed$") as info:
        items.extend(client.gen(n=2))
    assert items == ["item 0\nline 2", "item 1\nline 2"]
    assert info.value.error_code == 500
    assert server.requests[-1].headers["accept"] == "text/event-stream"
    assert list(client.objs(3)) == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_raw_stream_without_sse_flag(client: SyncHTTPClient, server: FakeServer) -> None:
    assert list(client.raw()) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert server.requests[-1].headers["accept"] == "*/*"


def test_async_client_over_the_same_server(server: FakeServer) -> None:
    async def scenario() -> tuple[Any, ...]:
        async with AsyncHTTPClient("http://h/v1", transport=server.transport()) as client:
            shout = await client.shout("hey")
            call = await client.api_call(x=1)
            raw = [item async for item in client.raw()]
            objs = [item async for item in client.objs(2)]
            gen: list[str] = []

            async def drain() -> None:
                async for item in client.gen(1):
                    gen.append(item)

            with pytest.raises(NbserveError, match=r"generator failed"):
                await drain()
        return shout, call, raw, objs, gen

    shout, call, raw, objs, gen = asyncio.run(scenario())
    assert (shout, call) == ("HEY", 2)
    assert raw == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert objs == [{"i": 0}, {"i": 1}]
    assert gen == ["item 0\nline 2"]


def test_async_client_needs_setup_and_says_how(server: FakeServer) -> None:
    async def scenario() -> int:
        client = AsyncHTTPClient("http://h/v1", transport=server.transport())
        with pytest.raises(
            AttributeError,
            match=r"has no attribute 'shout' yet.*await AsyncHTTPClient.from_url\(url\)",
        ):
            _ = client.shout
        with pytest.raises(RuntimeError, match=r"cannot call 'shout' yet"):
            client.call("shout", "x")
        await client.setup()
        try:
            result: int = await client(1)
        finally:
            await client.aclose()
        assert server.paths().count("GET /v1/schema.json") == 1
        return result

    assert asyncio.run(scenario()) == 2
