"""The docs page in a real browser: headless Chromium driven over the DevTools protocol.

Twice: once served by a throwaway Tornado app under a Jupyter-style proxy path
(`/user/ada/proxy/3000/v1/`), with the service's real schema.json and fake API routes, which pins
the page's own behaviour (relative URLs, example bodies, JSON, raw text and multipart requests,
JSON/text/image/stream/error rendering); and once against nbserve's own server. Needs the
`chromium` apt package (scripts/setup installs it); skipped without it, except in CI.

Set NBSERVE_SCREENSHOTS=<dir> to keep light and dark full-page screenshots for a design review.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
import tornado.httpserver
import tornado.web
import tornado.websocket
from PIL.Image import Image
from pydantic import BaseModel, Field
from tornado.testing import bind_unused_port

import nbserve
from nbserve._runtime.http.docs_page import docs_page_html
from nbserve.validators import DType, Shape

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    # CI always has it (scripts/setup installs it), so there a missing browser fails loudly.
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("CI"),
        reason="needs headless Chromium: apt-get install -y chromium",
    ),
]

PROXY = "/user/ada/proxy/3000"  # what jupyter-server-proxy puts in front
# A 2×2 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)


class Address(BaseModel):
    zip: int = 0


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)
    address: Address | None = None


@nbserve.service(path_prefix="/v1")
class Demo:
    """A demo service.
    Second line."""

    @nbserve.api
    def text(self, text: str, n: int = 2) -> str:
        """Repeat text n times."""
        return text * n

    @nbserve.api
    def person(self, p: Person) -> Person:
        return p

    @nbserve.api
    def tensor(self, x: Annotated[np.ndarray, Shape((-1, 4)), DType("float32")]) -> np.ndarray:
        return x

    @nbserve.api
    def upload(
        self, f: Path, files: list[Path] | None = None, note: str = "hi"
    ) -> dict[str, object]:
        return {"note": note, "f": f.read_text(), "files": [p.read_text() for p in files or []]}

    @nbserve.api
    def image(self, img: Image) -> Image:
        return img

    @nbserve.api
    def stream(self, prompt: str) -> Iterator[str]:
        for i in range(4):
            yield f"tok{i} "
            time.sleep(0.05)

    @nbserve.api
    def shout(self, text: str, /) -> str:
        return text.upper()


class _Page(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(docs_page_html(Demo))


class _Json(tornado.web.RequestHandler):
    def initialize(self, doc: dict[str, object]) -> None:
        self.doc = doc

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(self.doc))


class _Ready(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("\n")


class _Api(tornado.web.RequestHandler):
    """Stands in for the server: answers as `Demo` would over nbserve's wire protocol."""

    async def post(self, name: str) -> None:
        body = self.request.body
        if name == "image":
            self.set_header("Content-Type", "image/png")
            self.write(PNG)
        elif name == "stream":
            self.set_header("Content-Type", "text/event-stream")
            for i in range(4):
                self.write(f"tok{i} ")
                await self.flush()
                await asyncio.sleep(0.05)
        elif name == "shout":
            assert self.request.headers["Content-Type"] == "text/plain; charset=utf-8"
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.write(body.decode().upper())
        elif name == "text":
            values = json.loads(body or b"{}")
            if "text" not in values:
                self.set_status(400)
                self.write({"error": "1 validation error for Input", "detail": [{"loc": ["text"]}]})
                return
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.write(values["text"] * values.get("n", 1))
        elif (
            name == "upload"
        ):  # non-file fields arrive JSON-encoded, as BentoML's client sends them
            form, files = self.request.body_arguments, self.request.files
            self.write(
                {
                    "note": json.loads(form["note"][0]),
                    "f": files["f"][0].body.decode(),
                    "files": [f.body.decode() for f in files.get("files", [])],
                }
            )
        else:  # person, tensor: return the one input as it came
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps(next(iter(json.loads(body).values()))))


def _app() -> tornado.web.Application:
    base = PROXY + Demo.path_prefix
    openapi = dict(Demo.openapi_spec, info={**Demo.openapi_spec["info"], "version": "1.2.3"})
    return tornado.web.Application(
        [
            (base + "/", _Page),
            (base + "/schema.json", _Json, {"doc": Demo.schema()}),
            (base + "/docs.json", _Json, {"doc": openapi}),
            (base + "/readyz", _Ready),
            (base + r"/(\w+)", _Api),
        ]
    )


class CDP:
    """A minimal DevTools-protocol client: one browser websocket, one flattened page session."""

    def __init__(self, ws: tornado.websocket.WebSocketClientConnection) -> None:
        self.ws = ws
        self.session: str | None = None
        self._id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while (raw := await self.ws.read_message()) is not None:
            msg = json.loads(raw)
            fut = self._pending.pop(msg.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._id] = fut
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        await self.ws.write_message(json.dumps(msg))
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]  # type: ignore[no-any-return]

    async def js(self, expression: str) -> Any:
        """Evaluate `expression` in the page (awaiting a promise) and return its JSON value."""
        res = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression[:80]}...: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def wait(self, condition: str, timeout: float = 10) -> Any:
        """Poll a JS expression until it is truthy; return its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.js(condition)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"timed out waiting for {condition}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.ws.close()
        # The reader ends when the socket closes; waiting for it means no socket outlives the
        # event loop (an unclosed-socket ResourceWarning would fail the run).
        await asyncio.wait([self._reader], timeout=5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, tornado.websocket.WebSocketClosedError):
            await self._reader


@asynccontextmanager
async def browser(profile: Path) -> AsyncIterator[CDP]:
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"]  # fmt: skip
    # Its own process group, so the renderer and zygote children go with it at the end.
    proc = subprocess.Popen(
        [CHROMIUM, *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and len(port_file.read_text().splitlines()) == 2:
                break
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()
        ws = await tornado.websocket.websocket_connect(
            f"ws://127.0.0.1:{port}{path}", max_message_size=64 * 2**20
        )
        cdp = CDP(ws)
        try:
            target = await cdp.send("Target.createTarget", url="about:blank")
            attached = await cdp.send(
                "Target.attachToTarget", targetId=target["targetId"], flatten=True
            )
            cdp.session = attached["sessionId"]
            await cdp.send(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield cdp
        finally:
            with contextlib.suppress(Exception):  # the browser may close the socket first
                await asyncio.wait_for(cdp.send("Browser.close"), 5)
            await cdp.close()
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _send(api: str) -> str:
    return f"document.querySelector('[data-api={api}] .btn-primary').click()"


def _status(api: str) -> str:
    return f"document.querySelector('[data-api={api}] .result .pill[data-status]')?.textContent"


def _body(api: str) -> str:
    return f"document.querySelector('[data-api={api}] .result pre')?.textContent"


def _set_files(api: str, name: str, files: list[tuple[str, bytes, str]]) -> str:
    """JS that puts files (name, content, type) in a file input, as a user picking them would."""
    adds = "".join(
        f"dt.items.add(new File([Uint8Array.from(atob('{base64.b64encode(data).decode()}'), c => c.charCodeAt(0))], {json.dumps(fname)}, {{type: {json.dumps(ctype)}}}));"
        for fname, data, ctype in files
    )
    return f"(() => {{ const dt = new DataTransfer(); {adds} document.querySelector('[data-api={api}] input[name={name}]').files = dt.files; return true; }})()"


async def _screenshot(cdp: CDP, path: Path, full: bool = False) -> None:
    if full:
        height = await cdp.js("document.documentElement.scrollHeight")
        await cdp.send(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
    shot = await cdp.send("Page.captureScreenshot", format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


async def _shout(cdp: CDP) -> None:
    """A root str input is sent as the raw text body."""
    await cdp.js("document.querySelector('[data-api=shout] textarea').value = 'hey'")
    await cdp.js(_send("shout"))
    assert await cdp.wait(_status("shout")) == "200 OK"
    assert await cdp.wait(_body("shout")) == "HEY"


async def _exercise(cdp: CDP, page_url: str, shots: Path | None) -> None:
    await cdp.send("Page.navigate", url=page_url)
    await cdp.wait("document.querySelectorAll('details.api').length === 7")
    assert await cdp.wait("document.getElementById('ready').textContent") == "ready"
    if shots is not None:  # the first view: more than four APIs, so all collapsed
        await _screenshot(cdp, shots / "docs-collapsed.png")

    # Listed: every API, in order, in the sidebar too, with the service's docstring.
    names = await cdp.js("[...document.querySelectorAll('details.api')].map(d => d.dataset.api)")
    assert names == list(Demo.apis)
    assert await cdp.js("[...document.querySelectorAll('#toc a')].map(a => a.textContent)") == names
    assert await cdp.js("document.getElementById('svc-name').textContent") == "Demo"
    assert (
        await cdp.js("document.getElementById('svc-doc').textContent")
        == "A demo service.\nSecond line."
    )
    assert "Repeat text n times." in await cdp.js(
        "document.querySelector('[data-api=text]').textContent"
    )
    fields = await cdp.js(
        "[...document.querySelectorAll('[data-api=person] td:first-child code')].map(c => c.textContent)"
    )
    assert fields == ["p", "p.name", "p.age", "p.address", "p.address.zip"]

    # Example bodies are built from the input schema and are valid for it.
    example = await cdp.js("JSON.parse(document.querySelector('[data-api=person] textarea').value)")
    assert example == {"p": {"name": "string", "age": 0, "address": None}}
    tensor = await cdp.js("JSON.parse(document.querySelector('[data-api=tensor] textarea').value)")
    assert tensor == {"x": [[0, 0, 0, 0]]}
    await cdp.js(_send("person"))  # the example round-trips
    assert json.loads(await cdp.wait(_body("person"))) == example["p"]

    # JSON request, text response; the example is `{"text": "string", "n": 2}`.
    await cdp.js(_send("text"))
    assert await cdp.wait(_status("text")) == "200 OK"
    assert await cdp.wait(_body("text")) == "stringstring"
    assert await cdp.js(
        "document.querySelector('[data-api=text] .latency').textContent.endsWith('ms')"
    )

    # An error is shown with its status and pretty-printed JSON.
    await cdp.js("document.querySelector('[data-api=text] textarea').value = '{}'")
    await cdp.js(_send("text"))
    assert await cdp.wait(_status("text") + " === '400 Bad Request'")
    assert "error" in json.loads(await cdp.wait(_body("text")))

    # Invalid JSON is caught before sending.
    await cdp.js("document.querySelector('[data-api=person] textarea').value = '{nope'")
    await cdp.js(_send("person"))
    assert "not valid JSON" in await cdp.wait(
        "document.querySelector('[data-api=person] .result').textContent"
    )

    # Multipart: file parts by field name (repeated for a list), other fields JSON-encoded.
    await cdp.js(_set_files("upload", "f", [("a.csv", b"x,y\n", "text/csv")]))
    await cdp.js(
        _set_files(
            "upload", "files", [("b.txt", b"b", "text/plain"), ("c.txt", b"c", "text/plain")]
        )
    )
    await cdp.js(_send("upload"))
    assert await cdp.wait(_status("upload")) == "200 OK"
    assert json.loads(await cdp.wait(_body("upload"))) == {
        "note": "hi",
        "f": "x,y\n",
        "files": ["b", "c"],
    }

    # An image response is previewed.
    await cdp.js(_set_files("image", "img", [("in.png", PNG, "image/png")]))
    await cdp.js(_send("image"))
    assert (
        await cdp.wait("document.querySelector('[data-api=image] .result img')?.naturalWidth") == 2
    )

    # A stream is shown as it arrives, chunk by chunk.
    await cdp.js(_send("stream"))
    await cdp.wait(
        "document.querySelector('[data-api=stream] .latency')?.textContent.endsWith('total')"
    )
    assert await cdp.js(_body("stream")) == "tok0 tok1 tok2 tok3 "
    assert await cdp.js(
        "/[2-4] chunks/.test(document.querySelector('[data-api=stream] .result-head').textContent)"
    )

    await _shout(cdp)

    if shots is not None:
        await cdp.js("document.querySelectorAll('details.api').forEach(d => d.open = true)")
        for scheme in ("light", "dark"):
            await cdp.send(
                "Emulation.setEmulatedMedia",
                features=[{"name": "prefers-color-scheme", "value": scheme}],
            )
            await asyncio.sleep(0.3)  # let the chevrons' transition finish
            await _screenshot(cdp, shots / f"docs-{scheme}.png", full=True)


def _shots(name: str) -> Path | None:
    folder = os.environ.get("NBSERVE_SCREENSHOTS")
    return Path(folder) / name if folder else None


def test_docs_page_behind_a_proxy_path() -> None:
    """Fake routes under /user/ada/proxy/3000/v1/: the page uses relative URLs only."""

    async def main() -> None:
        sock, port = bind_unused_port()
        server = tornado.httpserver.HTTPServer(_app())
        server.add_sockets([sock])
        try:
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
                async with browser(Path(profile)) as cdp:
                    url = f"http://127.0.0.1:{port}{PROXY}{Demo.path_prefix}/"
                    await _exercise(cdp, url, _shots("proxy"))
                    # The OpenAPI version is shown once the service has one.
                    assert (
                        await cdp.js("document.getElementById('svc-version').textContent")
                        == "v1.2.3"
                    )
        finally:
            server.stop()
            await server.close_all_connections()

    asyncio.run(main())


def test_docs_page_against_the_server() -> None:
    async def main(url: str) -> None:
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
            async with browser(Path(profile)) as cdp:
                await _exercise(cdp, url, _shots("server"))

    with nbserve.serve(Demo) as handle:
        asyncio.run(main(handle.url + "/"))
