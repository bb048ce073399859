"""Starting, serving, swapping and stopping: hooks, Context, the handle, and the server's thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import nbserve
from nbserve._sdk.context import current_context
from nbserve.testing import running_service

EVENTS: list[str] = []


@nbserve.service(threads=2)
class Hooked:
    def __init__(self) -> None:
        EVENTS.append("init")

    @nbserve.on_deployment
    def prepare() -> None:
        EVENTS.append("deployment")

    @nbserve.on_startup
    def warm(self) -> None:
        EVENTS.append("startup-sync")

    @nbserve.on_startup
    async def connect(self) -> None:
        await asyncio.sleep(0)
        EVENTS.append("startup-async")

    @nbserve.on_shutdown
    async def disconnect(self) -> None:
        EVENTS.append("shutdown-async")

    @nbserve.on_shutdown
    def flush(self) -> None:
        EVENTS.append("shutdown-sync")

    @nbserve.api
    def events(self) -> list[str]:
        return list(EVENTS)


def test_lifecycle_hooks_run_in_order() -> None:
    EVENTS.clear()
    with running_service(Hooked) as handle:
        assert httpx.post(handle.url + "/events").json() == [
            "deployment",
            "init",
            "startup-sync",
            "startup-async",
        ]
    assert EVENTS[4:] == ["shutdown-async", "shutdown-sync"]


@nbserve.service
class Contextual:
    @nbserve.api
    def inspect(self, ctx: nbserve.Context) -> dict[str, Any]:
        ctx.state["hits"] = ctx.state.get("hits", 0) + 1
        ctx.response.status_code = 201
        ctx.response.headers["X-Custom"] = "yes"
        ctx.response.set_cookie("session", "abc", max_age=60, httponly=True)
        (ctx.temp_dir / "scratch.txt").write_text("x")
        return {
            "agent": ctx.request.headers.get("x-agent"),
            "query": ctx.request.query_params,
            "path": ctx.request.path,
            "hits": ctx.state["hits"],
            "temp_dir": str(ctx.temp_dir),
            "helper_sees_it": helper() == ctx.request_id,
        }

    @nbserve.api
    async def ainspect(self, context: nbserve.Context) -> str | None:
        return helper()


def helper() -> str | None:
    ctx = current_context.get()
    return ctx.request_id if ctx is not None else None


def test_context_in_and_out() -> None:
    with running_service(Contextual) as handle, httpx.Client(base_url=handle.url) as client:
        r = client.post("/inspect?lang=en", json={}, headers={"X-Agent": "tests"})
        assert r.status_code == 201
        assert r.headers["x-custom"] == "yes"
        assert "session=abc" in r.headers["set-cookie"]
        assert "HttpOnly" in r.headers["set-cookie"]
        body = r.json()
        assert body["agent"] == "tests"
        assert body["query"] == {"lang": "en"}
        assert body["path"] == "/inspect"
        assert body["helper_sees_it"] is True
        # Removed once the request is over (just after the response went out).
        deadline = time.monotonic() + 5
        while Path(body["temp_dir"]).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not Path(body["temp_dir"]).exists()
        assert client.post("/inspect", json={}).json()["hits"] == 2  # ctx.state is shared
        r = client.post("/ainspect", json={})
        assert r.json() == r.headers["x-request-id"]


@nbserve.service
class Sleepy:
    @nbserve.api
    def hello(self) -> str:
        return "hello"


def test_answers_while_the_main_thread_sleeps() -> None:
    with running_service(Sleepy) as handle:
        slept = threading.Event()
        answered: list[bool] = []  # per answer: had the main thread finished sleeping?

        def ask() -> None:
            time.sleep(0.1)
            assert httpx.post(handle.url + "/hello", timeout=5).text == "hello"
            answered.append(slept.is_set())

        thread = threading.Thread(target=ask)
        thread.start()
        time.sleep(1.0)  # the "cell" computing: holds the main thread, not the GIL
        slept.set()
        thread.join(5)
        assert answered == [False]  # answered while the main thread was still busy


GATE = threading.Event()


@nbserve.service
class Gated:
    def __init__(self) -> None:
        GATE.wait(10)  # a slow model load, held until the test lets it finish


def test_serve_returns_before_the_instance_is_built() -> None:
    GATE.clear()
    handle = nbserve.serve(Gated, port=0)
    try:
        assert handle.port > 0
        assert handle.state == "starting"  # serve() did not wait for __init__
        assert httpx.get(handle.url + "/readyz").status_code == 503
        GATE.set()
        handle.wait_ready(10)
        assert handle.state == "running"
    finally:
        GATE.set()
        handle.stop()


def test_serve_reports_the_port() -> None:
    handle = nbserve.serve(Sleepy, port=0)
    try:
        assert handle.port > 0
        handle.wait_ready(10)
        assert handle.state == "running"
        assert httpx.post(f"http://127.0.0.1:{handle.port}/hello").text == "hello"
        assert repr(handle).startswith("<ServiceHandle Sleepy running")
    finally:
        handle.stop()


def test_serve_from_inside_a_running_event_loop() -> None:
    async def main() -> str:  # a kernel's main thread has a running loop
        with nbserve.serve(Sleepy).wait_ready(10) as handle:
            async with httpx.AsyncClient() as client:
                return (await client.post(handle.url + "/hello")).text

    assert asyncio.run(main()) == "hello"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_stop_frees_the_port_and_is_idempotent() -> None:
    handle = nbserve.serve(Sleepy)
    handle.wait_ready(10)
    port = handle.port
    assert not port_is_free(port)
    with httpx.Client() as client:  # an idle keep-alive connection must not keep it open
        client.post(handle.url + "/hello")
        handle.stop()
        assert handle.state == "stopped"
        assert port_is_free(port)
        handle.stop()
        with pytest.raises(httpx.TransportError):
            client.post(f"http://127.0.0.1:{port}/hello")


def test_stats_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    with running_service(Sleepy) as handle, httpx.Client(base_url=handle.url) as client:
        for _ in range(3):
            client.post("/hello")
        client.post("/hello", content=b"{bad")
        stats = handle.stats()["/hello"]
        assert stats["count"] == 4
        assert stats["errors"] == 1
        assert 0 < stats["p50_ms"] <= stats["p99_ms"]
        assert any("Sleepy started" in line for line in handle.logs())


def test_a_plain_class_is_served_as_a_service() -> None:
    class Plain:
        @nbserve.api
        def ping(self) -> str:
            return "pong"

    with running_service(Plain) as handle:
        assert httpx.post(handle.url + "/ping").text == "pong"


# --- hot swap --------------------------------------------------------------------------------------
SWAP_LOG: list[str] = []


def make_version(tag: str, delay: float = 0.0) -> nbserve.Service[Any]:
    @nbserve.service(name="Swappy")
    class Swappy:
        @nbserve.api
        async def version(self) -> str:
            await asyncio.sleep(delay)
            return tag

        @nbserve.on_shutdown
        def bye(self) -> None:
            SWAP_LOG.append(f"shutdown {tag}")

    return Swappy


def test_swap_keeps_the_port_and_lets_in_flight_requests_finish() -> None:
    SWAP_LOG.clear()
    with running_service(make_version("v1", delay=0.5)) as handle:
        port = handle.port
        result: dict[str, str] = {}

        def slow_request() -> None:
            result["old"] = httpx.post(handle.url + "/version", timeout=10).text

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.1)  # in flight on v1
        handle.swap(make_version("v2"))
        assert httpx.post(handle.url + "/version").text == "v2"
        thread.join(10)
        assert result["old"] == "v1"  # finished on the old version, not failed
        assert SWAP_LOG == ["shutdown v1"]
        assert handle.port == port
        assert handle.state == "running"
    assert SWAP_LOG == ["shutdown v1", "shutdown v2"]


def test_failed_swap_keeps_the_old_version_serving(caplog: pytest.LogCaptureFixture) -> None:
    @nbserve.service(name="Swappy")
    class Broken:
        def __init__(self) -> None:
            raise RuntimeError("bad new code")

        @nbserve.api
        def version(self) -> str:
            return "broken"

    with (
        running_service(make_version("v1")) as handle,
        caplog.at_level(logging.ERROR, logger="nbserve"),
    ):
        with pytest.raises(RuntimeError, match="bad new code"):
            handle.swap(Broken)
        assert httpx.post(handle.url + "/version").text == "v1"
        assert handle.state == "running"


def test_swap_can_change_routes_and_prefix() -> None:
    @nbserve.service(path_prefix="/v2")
    class Other:
        @nbserve.api
        def other(self) -> str:
            return "other"

    with running_service(make_version("v1")) as handle:
        handle.swap(Other)
        assert handle.url.endswith("/v2")
        assert handle.routes == ["/v2/other"]
        assert httpx.post(handle.url + "/other").text == "other"
        assert httpx.post(f"http://127.0.0.1:{handle.port}/version").status_code == 404


def post_across_swap(handle: nbserve.ServiceHandle, path: str, new: Any) -> bytes:
    """POST `path` with a chunked body, swapping to `new` after it was routed, before it ends."""
    with socket.create_connection(("127.0.0.1", handle.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".encode()
        )
        # Tornado answers 100 Continue once it has routed the headers (to the old version).
        assert sock.recv(1024).startswith(b"HTTP/1.1 100")
        handle.swap(new)
        sock.sendall(b"2\r\n{}\r\n0\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):  # the server closes after its answer
            response += chunk
        return response


def test_a_request_routed_before_a_swap_runs_on_the_new_version() -> None:
    with running_service(make_version("v1")) as handle:
        response = post_across_swap(handle, "/version", make_version("v2"))
        assert response.startswith(b"HTTP/1.1 200")
        assert response.endswith(b"v2")


def test_a_request_routed_before_a_swap_that_drops_its_route_is_a_404() -> None:
    @nbserve.service
    class Other:
        @nbserve.api
        def other(self) -> str:
            return "other"

    with running_service(make_version("v1")) as handle:
        response = post_across_swap(handle, "/version", Other)
        assert response.startswith(b"HTTP/1.1 404")
        assert b"the service was just replaced" in response
        assert b'"routes":["/other"]' in response


def test_stop_all_also_stops_services_started_with_serve() -> None:
    handle = nbserve.serve(Hooked)
    handle.wait_ready(30)
    nbserve.stop_all()
    assert handle.state == "stopped"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", handle.port))  # the port is free again
