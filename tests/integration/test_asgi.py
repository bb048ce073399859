"""ASGI apps on a service (`asgi_app`, `mount_asgi_app`) served by the Tornado runtime, and a
whole service as an ASGI app (`to_asgi()`) driven by FastAPI's own `TestClient`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

import nbserve
from nbserve.exceptions import ServiceDefinitionError
from nbserve.testing import running_service

EVENTS: list[str] = []
STREAM_GATE = asyncio.Event()


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    EVENTS.append("startup")
    yield
    EVENTS.append("shutdown")


app = FastAPI(lifespan=lifespan)


@app.get("/plain")
def plain(q: str = "none") -> dict[str, str]:
    return {"q": q}


@app.post("/upload")
async def upload(request: Request) -> dict[str, int]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"size": size}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def items() -> AsyncIterator[bytes]:
        yield b"first\n"
        await STREAM_GATE.wait()  # the client must have read "first" before this goes on
        yield b"second\n"

    return StreamingResponse(items(), media_type="text/plain")


@nbserve.service(path_prefix="/svc")
@nbserve.asgi_app(app, path="/v1")
class Mounted:
    def __init__(self) -> None:
        self.greeting = "hello from the service"

    @app.get("/view")
    def view(self) -> dict[str, str]:  # a class view: `self` is the served instance
        return {"greeting": self.greeting}

    @nbserve.api
    def shout(self, text: str) -> str:
        return text.upper()


def test_mounted_app_serves_under_its_path_with_lifespan() -> None:
    EVENTS.clear()
    with running_service(Mounted) as handle:
        assert EVENTS == ["startup"]
        origin = f"http://127.0.0.1:{handle.port}"
        with httpx.Client(base_url=origin, timeout=30) as client:
            assert client.get("/svc/v1/plain", params={"q": "x"}).json() == {"q": "x"}
            assert client.get("/svc/v1/view").json() == {"greeting": "hello from the service"}
            assert client.post("/svc/shout", json={"text": "hi"}).text == "HI"  # APIs stay
            body = b"x" * (3 * 2**20)
            assert client.post("/svc/v1/upload", content=body).json() == {"size": len(body)}
            assert client.get("/svc/v1/missing").status_code == 404  # FastAPI's own 404
            assert client.get("/svc/other").status_code == 404  # outside the mount: nbserve's
            schema = client.get("/svc/schema.json").json()
            assert schema["paths"]["/v1"] == {"mounted": True}
    assert EVENTS == ["startup", "shutdown"]


def test_mounted_stream_arrives_as_it_is_produced() -> None:
    STREAM_GATE.clear()
    with running_service(Mounted) as handle:
        loop = handle._server._loop  # the server's loop owns the gate's waiters
        assert loop is not None
        with httpx.stream("GET", f"http://127.0.0.1:{handle.port}/svc/v1/stream", timeout=30) as r:
            lines = r.iter_lines()
            assert next(lines) == "first"  # before the app was allowed to send more
            loop.call_soon_threadsafe(STREAM_GATE.set)
            assert next(lines) == "second"


def test_mount_asgi_app_after_decoration() -> None:
    async def raw_app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-raw", b"1")]})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": scope["path"].encode()})  # type: ignore[operator]

    @nbserve.service
    class Bare:
        @nbserve.api
        def ok(self) -> bool:
            return True

    Bare.mount_asgi_app(raw_app, path="/raw")
    with running_service(Bare) as handle:
        r = httpx.get(f"{handle.url}/raw/a/b", timeout=30)
        assert (r.status_code, r.headers["x-raw"], r.text) == (201, "1", "/raw/a/b")
    with pytest.raises(ServiceDefinitionError, match="ASGI application"):
        nbserve.asgi_app("not an app")


def test_to_asgi_under_fastapis_test_client() -> None:
    EVENTS.clear()
    asgi = Mounted.to_asgi()
    with TestClient(asgi) as client:
        assert client.post("/svc/shout", json={"text": "hey"}).text == "HEY"
        assert client.get("/svc/readyz").status_code == 200
        assert client.get("/svc/v1/plain").json() == {"q": "none"}
        schema = client.get("/svc/schema.json").json()
        assert [r["name"] for r in schema["routes"]] == ["shout"]
        bad = client.post("/svc/shout", json={})
        assert bad.status_code == 400
        assert "text" in bad.json()["error"]
    assert EVENTS == ["startup", "shutdown"]


def test_to_asgi_mounted_in_a_fastapi_app() -> None:
    inner = Mounted.to_asgi()

    @contextlib.asynccontextmanager
    async def outer_lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        inner.close()  # a mounted app gets no lifespan events of its own

    outer = FastAPI(lifespan=outer_lifespan)
    outer.mount("/inner", inner)
    with TestClient(outer) as client:
        assert client.post("/inner/svc/shout", json={"text": "a"}).text == "A"
