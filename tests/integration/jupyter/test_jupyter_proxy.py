"""The proxy `{base_url}nbserve/services/<name>/...` (`nbserve/_jupyter/proxy.py`), end to end.

A real Jupyter server with nbserve's extension, and a live service with a bearer token served
the way a kernel serves one (registry + discovery file): JSON, a multipart upload and a chunked
request body round-trip; chunked and SSE streams arrive item by item (the stream cannot end
before the test has received its first item through the proxy); headers are rewritten as a
proxy should; paths that try to leave the service are refused.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from jupyter_helpers import fetch, serve_here, server_url

import nbserve

pytestmark = pytest.mark.slow

GATE = threading.Event()
"""Holds the gated streams after their first item until the test has received that item."""
ENDLESS_CLOSED = threading.Event()
"""Set when the endless stream's generator is closed (its client went away)."""


@nbserve.service(traffic={"timeout": 60})
class Relay:
    @nbserve.api
    def echo(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"got": data}

    @nbserve.api
    def upload(self, doc: Path, note: str = "") -> dict[str, Any]:
        return {"name": doc.name, "text": doc.read_text(), "note": note}

    @nbserve.api
    def gated(self) -> Generator[str, None, None]:
        yield "first"
        # Released only once the client got "first" through the proxy; a buffering proxy
        # would hold "first" back, the wait would time out, and the stream would say so.
        yield "last" if GATE.wait(20) else "gate-timeout"

    @nbserve.api
    def endless(self) -> Generator[str, None, None]:
        try:
            while True:
                yield "tick "
                time.sleep(0.02)
        finally:
            ENDLESS_CLOSED.set()

    @nbserve.api
    def seen(self, ctx: nbserve.Context) -> dict[str, Any]:
        headers = dict(ctx.request.headers)
        bearer = headers.pop("authorization", "")
        return {
            "headers": headers,
            "bearer": bearer.startswith("Bearer "),
            "path": ctx.request.path,
        }


@pytest.fixture
def relay(discovery: Path) -> Any:
    GATE.clear()
    live = serve_here(Relay, "Relay")  # with a bearer token: every 200 below proves it was added
    yield live
    GATE.set()


def _auth(jp_serverapp: Any) -> dict[str, str]:
    return {"Authorization": f"token {jp_serverapp.identity_provider.token}"}


async def test_json_round_trips_with_the_token_added_server_side(jp_fetch: Any, relay: Any) -> None:
    response = await jp_fetch(
        "nbserve",
        "services",
        "Relay",
        "echo",
        method="POST",
        body=json.dumps({"data": {"a": [1, 2]}}),
        headers={"Content-Type": "application/json"},
    )
    assert json.loads(response.body) == {"got": {"a": [1, 2]}}
    assert response.headers["Content-Type"].startswith("application/json")


async def test_a_multipart_upload_round_trips(jp_fetch: Any, relay: Any) -> None:
    boundary = "nbserveboundary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="doc"; filename="notes.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
        "hello file\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="note"\r\n\r\n'
        "n1\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    response = await jp_fetch(
        "nbserve",
        "services",
        "Relay",
        "upload",
        method="POST",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert json.loads(response.body) == {"name": "notes.txt", "text": "hello file", "note": "n1"}


async def test_a_chunked_request_body_is_streamed_upstream(
    jp_url: str, jp_serverapp: Any, relay: Any
) -> None:
    parts = [b'{"data": ', b'{"streamed": ', b"true}}"]

    async def produce(write: Any) -> None:
        for part in parts:
            await write(part)

    response = await fetch(
        server_url(jp_url, "nbserve/services/Relay/echo"),
        method="POST",
        body_producer=produce,
        headers={**_auth(jp_serverapp), "Content-Type": "application/json"},
    )
    assert response.code == 200, response.body
    assert json.loads(response.body) == {"got": {"streamed": True}}


async def _stream(url: str, headers: dict[str, str]) -> list[str]:
    """Read a gated stream; the service can only finish after the first item got here."""
    events: list[str] = []

    def on_chunk(chunk: bytes) -> None:
        events.append(chunk.decode())
        GATE.set()  # lets the service send its last item

    response = await fetch(
        url, method="POST", body=b"{}", headers=headers, streaming_callback=on_chunk
    )
    assert response.code == 200
    return events


async def test_a_chunked_stream_arrives_item_by_item(
    jp_url: str, jp_serverapp: Any, relay: Any
) -> None:
    events = await _stream(
        server_url(jp_url, "nbserve/services/Relay/gated"),
        {**_auth(jp_serverapp), "Content-Type": "application/json"},
    )
    # The first item came through on its own, before the service could produce the last one.
    assert events[0] == "first"
    assert "".join(events) == "firstlast"


async def test_sse_frames_arrive_before_the_stream_ends(
    jp_url: str, jp_serverapp: Any, relay: Any
) -> None:
    events = await _stream(
        server_url(jp_url, "nbserve/services/Relay/gated"),
        {
            **_auth(jp_serverapp),
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        },
    )
    assert "first" in events[0]
    assert "last" not in events[0]
    assert "last" in "".join(events[1:])


async def test_headers_are_rewritten_as_a_proxy_should(
    jp_url: str, jp_serverapp: Any, relay: Any
) -> None:
    response = await fetch(
        server_url(jp_url, "nbserve/services/Relay/seen"),
        method="POST",
        body=b"{}",
        headers={
            **_auth(jp_serverapp),
            "Content-Type": "application/json",
            "Cookie": "jupyter-login=secret",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "dropped",
            "Keep-Alive": "timeout=5",
            "X-End-To-End": "kept",
        },
    )
    assert response.code == 200, response.body
    seen = json.loads(response.body)
    headers = seen["headers"]
    assert seen["bearer"] is True  # the service's own token, never Jupyter's
    assert "cookie" not in headers
    assert "x-hop" not in headers
    assert "keep-alive" not in headers
    assert headers["x-end-to-end"] == "kept"
    assert headers["x-forwarded-prefix"] == f"{jp_serverapp.base_url}nbserve/services/Relay"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert seen["path"] == "/seen"


async def test_the_docs_page_works_through_the_proxy(
    jp_url: str, jp_serverapp: Any, relay: Any
) -> None:
    bare = await fetch(server_url(jp_url, "nbserve/services/Relay"), headers=_auth(jp_serverapp))
    assert bare.code in (301, 302)
    assert bare.headers["Location"].endswith("/nbserve/services/Relay/")
    page = await fetch(server_url(jp_url, "nbserve/services/Relay/"), headers=_auth(jp_serverapp))
    assert page.code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    schema = await fetch(
        server_url(jp_url, "nbserve/services/Relay/schema.json"), headers=_auth(jp_serverapp)
    )
    assert [api["route"] for api in json.loads(schema.body)["routes"]] == [
        "/echo",
        "/upload",
        "/gated",
        "/endless",
        "/seen",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/../../api/contents",
        "/%2e%2e/%2e%2e/api/contents",
        "/..%2f..%2fapi/contents",
        "//evil.example/echo",
        "/http://evil.example/echo",
        "/http:%2f%2fevil.example/echo",
        "/a/./b",
        "/a\\b",
    ],
)
async def test_paths_that_leave_the_service_are_refused(
    jp_url: str, jp_serverapp: Any, relay: Any, path: str
) -> None:
    response = await fetch(
        server_url(jp_url, "nbserve/services/Relay") + path, headers=_auth(jp_serverapp)
    )
    assert response.code == 400, (path, response.code)
    assert "refused to proxy" in json.loads(response.body)["message"]


async def test_an_unknown_service_is_a_404_naming_it(
    jp_url: str, jp_serverapp: Any, relay: Any
) -> None:
    response = await fetch(
        server_url(jp_url, "nbserve/services/Nope/echo"), headers=_auth(jp_serverapp)
    )
    assert response.code == 404
    assert "'Nope'" in json.loads(response.body)["message"]


async def test_a_stopped_service_is_gone_from_the_proxy(
    jp_url: str, jp_serverapp: Any, relay: Any
) -> None:
    relay.stop()
    response = await fetch(
        server_url(jp_url, "nbserve/services/Relay/"), headers=_auth(jp_serverapp)
    )
    assert response.code == 404


async def test_a_client_that_leaves_mid_stream_ends_the_service_s_stream(
    jp_url: str, jp_http_port: int, jp_base_url: str, jp_serverapp: Any, relay: Any
) -> None:
    ENDLESS_CLOSED.clear()
    # A raw client, so it can hang up for real after the first bytes of the stream.
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    token = jp_serverapp.identity_provider.token
    writer.write(
        f"POST {jp_base_url}nbserve/services/Relay/endless HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{jp_http_port}\r\nAuthorization: token {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".encode()
    )
    await writer.drain()
    head = b""
    while b"tick" not in head:
        more = await asyncio.wait_for(reader.read(4096), 30)
        assert more, head
        head += more
    assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()
    await writer.wait_closed()
    # The proxy notices at the next item, drops its upstream connection, and the service's
    # generator is closed: the work stops.
    for _ in range(200):
        if ENDLESS_CLOSED.is_set():
            break
        await asyncio.sleep(0.05)
    assert ENDLESS_CLOSED.is_set()


async def test_proxied_requests_count_as_activity_and_the_panel_s_polling_does_not(
    jp_fetch: Any, jp_serverapp: Any, relay: Any
) -> None:
    # JupyterHub and Binder cull servers by this timestamp: a demo in use must keep its server,
    # an open Services panel alone must not.
    settings = jp_serverapp.web_app.settings
    settings.pop("api_last_activity", None)
    await jp_fetch("nbserve", "api", "services")
    assert "api_last_activity" not in settings
    await jp_fetch(
        "nbserve",
        "services",
        "Relay",
        "echo",
        method="POST",
        body=json.dumps({"data": {}}),
        headers={"Content-Type": "application/json"},
    )
    assert "api_last_activity" in settings


@nbserve.service(path_prefix="/v1")
class Prefixed:
    @nbserve.api
    def ping(self) -> str:
        return "pong"


async def test_a_service_s_redirects_stay_under_the_proxy(
    jp_url: str, jp_serverapp: Any, discovery: Path
) -> None:
    serve_here(Prefixed, "Prefixed", token=False)
    # The service redirects `/v1` to `/v1/` (its docs page needs the slash); through the proxy
    # the Location must point into the proxy, not at Jupyter's root.
    response = await fetch(
        server_url(jp_url, "nbserve/services/Prefixed/v1"), headers=_auth(jp_serverapp)
    )
    assert response.code in (301, 302, 307, 308)
    assert response.headers["Location"] == f"{jp_serverapp.base_url}nbserve/services/Prefixed/v1/"
    page = await fetch(
        jp_url.rstrip("/").rsplit("/", 1)[0] + response.headers["Location"],
        headers=_auth(jp_serverapp),
    )
    assert page.code == 200
