"""The Services API of nbserve's server extension, against a real Jupyter server and real kernels.

Covers `nbserve/_jupyter/{extension,handlers,services}.py` and the admin route they use
(`nbserve/_runtime/http/admin.py`): auth on every route (401/403 without a login, 403 for a cookie
POST without XSRF), listing a service a real kernel started and dropping it when the kernel
dies, logs, and stop (through the service's own admin route) freeing the port.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
from jupyter_helpers import fetch, port_is_free, serve_here, server_url

import nbserve

pytestmark = pytest.mark.slow


@nbserve.service
class Echo:
    @nbserve.api
    def shout(self, text: str) -> str:
        return text.upper()


ROUTES = [
    ("GET", "nbserve/api/services"),
    ("GET", "nbserve/api/services/Echo/logs"),
    ("POST", "nbserve/api/services/Echo/stop"),
    ("GET", "nbserve/services/Echo/"),
    ("GET", "nbserve/services/Echo/docs.json"),
    ("POST", "nbserve/services/Echo/shout"),
    ("PUT", "nbserve/services/Echo/shout"),
    ("DELETE", "nbserve/services/Echo/shout"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_refuses_requests_without_a_jupyter_login(
    jp_url: str, discovery: Path, method: str, path: str
) -> None:
    live = serve_here(Echo, "Echo")
    response = await fetch(
        server_url(jp_url, path),
        method=method,
        body=b'{"text": "hi"}' if method in ("POST", "PUT") else None,
        allow_nonstandard_methods=True,
    )
    assert response.code in (401, 403)
    assert live.state == "running"  # a refused stop stopped nothing


async def _login(serverapp: Any, base: str) -> dict[str, str]:
    """Log in with the server's token like a browser does; return the cookies it was given."""
    login = server_url(base, "login")
    page = await fetch(login)
    cookies = _cookies(page)
    answer = await fetch(
        login,
        method="POST",
        body=f"password={serverapp.identity_provider.token}&_xsrf={cookies['_xsrf']}",
        headers={"Cookie": _cookie_header(cookies)},
    )
    assert answer.code == 302, answer.body
    return {**cookies, **_cookies(answer)}


def _cookies(response: tornado.httpclient.HTTPResponse) -> dict[str, str]:
    out = {}
    for header in response.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        out[name] = rest.split(";", 1)[0]
    return out


def _cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


@pytest.mark.parametrize(
    "path",
    ["nbserve/api/services/Echo/stop", "nbserve/services/Echo/shout"],
)
async def test_cookie_authenticated_posts_need_the_xsrf_token(
    jp_serverapp: Any, jp_url: str, discovery: Path, path: str
) -> None:
    live = serve_here(Echo, "Echo")
    cookies = await _login(jp_serverapp, jp_url)
    url = server_url(jp_url, path)
    body = b'{"text": "hi"}'
    without = await fetch(
        url, method="POST", body=body, headers={"Cookie": _cookie_header(cookies)}
    )
    assert without.code == 403
    assert live.state == "running"
    # The same login with the XSRF header is let through (so the 403 above was the XSRF check).
    with_xsrf = await fetch(
        url,
        method="POST",
        body=body,
        headers={
            "Cookie": _cookie_header(cookies),
            "X-XSRFToken": cookies["_xsrf"],
            "Content-Type": "application/json",
        },
    )
    assert with_xsrf.code in (200, 202), with_xsrf.body


async def test_the_list_shows_routes_stats_and_no_secrets(
    jp_serverapp: Any, jp_fetch: Any, discovery: Path
) -> None:
    live = serve_here(Echo, "Echo")
    with live.client() as client:
        client.shout(text="a")
    listed = json.loads((await jp_fetch("nbserve", "api", "services")).body)["services"]
    assert [s["name"] for s in listed] == ["Echo"]
    echo = listed[0]
    assert echo["state"] == "running"
    assert echo["mode"] == "inline"
    assert echo["routes"] == ["/shout"]
    assert echo["stats"]["/shout"]["count"] == 1
    assert echo["url"] == f"{jp_serverapp.base_url}nbserve/services/Echo/"
    assert echo["token_required"] is True
    text = json.dumps(listed)
    assert live.token not in text
    assert live.admin_secret not in text


async def test_logs_and_stop_go_through_the_service_and_free_its_port(
    jp_fetch: Any, discovery: Path
) -> None:
    live = serve_here(Echo, "Echo")
    port = live.port
    logs = json.loads((await jp_fetch("nbserve", "api", "services", "Echo", "logs")).body)
    assert logs["name"] == "Echo"
    assert isinstance(logs["lines"], list)
    stopped = await jp_fetch("nbserve", "api", "services", "Echo", "stop", method="POST", body=b"")
    assert json.loads(stopped.body) == {"name": "Echo", "stopped": True}
    assert port_is_free(port)
    assert nbserve.services() == {}  # the notebook's registry forgot it too
    assert not list(discovery.glob("*-Echo.json"))
    listed = json.loads((await jp_fetch("nbserve", "api", "services")).body)["services"]
    assert listed == []


async def test_unknown_services_and_bad_log_sizes_are_named(jp_fetch: Any, discovery: Path) -> None:
    with pytest.raises(tornado.httpclient.HTTPClientError) as missing:
        await jp_fetch("nbserve", "api", "services", "Nope", "logs")
    assert missing.value.code == 404
    assert missing.value.response is not None
    assert "'Nope'" in json.loads(missing.value.response.body)["message"]
    serve_here(Echo, "Echo")
    with pytest.raises(tornado.httpclient.HTTPClientError) as bad:
        await jp_fetch("nbserve", "api", "services", "Echo", "logs", params={"n": "lots"})
    assert bad.value.code == 400


async def test_the_admin_route_refuses_a_wrong_secret(discovery: Path, jp_serverapp: Any) -> None:
    live = serve_here(Echo, "Echo")
    response = await fetch(
        f"{live.url}/_nbserve/admin/stop",
        method="POST",
        body=b"",
        headers={"X-Nbserve-Admin": "guess", "Authorization": f"Bearer {live.token}"},
    )
    assert response.code == 403
    assert live.state == "running"


SERVE_CELL = """\
%%serve --no-display
import nbserve

@nbserve.service
class Kernelled:
    @nbserve.api
    def shout(self, text: str) -> str:
        return text.upper()
"""


async def _run(client: Any, code: str) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = []
    reply = await client.execute_interactive(
        code, timeout=60, output_hook=lambda msg: outputs.append(msg)
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    return outputs


async def test_a_kernel_s_service_is_listed_and_dropped_when_the_kernel_dies(
    jp_serverapp: Any, jp_fetch: Any, discovery: Path
) -> None:
    manager = jp_serverapp.kernel_manager
    kernel_id = await manager.start_kernel()
    kernel = manager.get_kernel(kernel_id)
    client = kernel.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        await _run(client, "%load_ext nbserve")
        await _run(client, SERVE_CELL)
        outputs = await _run(client, "print(nbserve.services()['Kernelled'].public_url)")
        shown = "".join(m["content"].get("text", "") for m in outputs).strip()
        listed = json.loads((await jp_fetch("nbserve", "api", "services")).body)["services"]
        assert [(s["name"], s["kernel_id"], s["routes"]) for s in listed] == [
            ("Kernelled", kernel_id, ["/shout"])
        ]
        # With the extension active, the kernel shows the proxy URL, under the server's base_url.
        assert shown.endswith(f"{jp_serverapp.base_url}nbserve/services/Kernelled/")
        proxied = await jp_fetch(
            "nbserve",
            "services",
            "Kernelled",
            "shout",
            method="POST",
            body=b'{"text": "hi"}',
            headers={"Content-Type": "application/json"},
        )
        assert proxied.body == b"HI"
    finally:
        client.stop_channels()
    # Killed, not shut down: nothing in the kernel gets to remove its discovery file.
    await manager.shutdown_kernel(kernel_id, now=True)
    assert list(discovery.glob(f"{kernel_id}-*.json"))
    for _ in range(100):  # the kill is asynchronous: wait until the pid has gone
        listed = json.loads((await jp_fetch("nbserve", "api", "services")).body)["services"]
        if not listed:
            break
        await asyncio.sleep(0.05)
    assert listed == []
    assert not list(discovery.glob(f"{kernel_id}-*.json"))  # the stale file was cleaned


def test_the_extension_is_found_by_jupyter_s_own_discovery() -> None:
    from nbserve import _jupyter

    points = _jupyter._jupyter_server_extension_points()
    assert points == [{"module": "nbserve._jupyter"}]
    config = Path(__file__).resolve().parents[3] / "jupyter-config"
    enable = json.loads((config / "jupyter_server_config.d" / "nbserve.json").read_text())
    assert enable == {"ServerApp": {"jpserver_extensions": {"nbserve._jupyter": True}}}
    assert re.fullmatch(r"[a-z_.]+", points[0]["module"])


def test_the_labextension_has_nbserve_s_version() -> None:
    # `jupyter labextension list` shows the package.json version next to nbserve's.
    package = Path(__file__).resolve().parents[3] / "labextension" / "package.json"
    assert json.loads(package.read_text())["version"] == nbserve.__version__


def _fake_record(discovery: Path, name: str, *, pid: int, port: int) -> Path:
    """A discovery file as a kernel writes it (nbserve/_notebook/discovery.py)."""
    from nbserve._notebook import discovery as files

    path = discovery / f"pid{pid}-{name}.json"
    record = files.record(
        name=name,
        host="127.0.0.1",
        port=port,
        url=f"http://127.0.0.1:{port}",
        routes=["/x"],
        token=None,
        admin_secret="s" * 43,
        mode="inline",
        version=1,
    )
    files.write(path, {**record, "pid": pid})
    return path


async def test_stale_files_are_cleaned_and_a_hung_service_is_listed_unresponsive(
    jp_fetch: Any, discovery: Path
) -> None:
    import os
    import socket
    import subprocess
    import sys

    # A kernel that died: its pid is gone.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = _fake_record(discovery, "Gone", pid=int(dead.stdout), port=9)
    # A kernel that lives but whose service's port is closed (nothing listens there).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    closed_file = _fake_record(discovery, "Closed", pid=os.getpid(), port=closed_port)
    # A service whose port accepts connections but never answers (a kernel stuck holding the GIL).
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    try:
        _fake_record(discovery, "Hung", pid=os.getpid(), port=hung.getsockname()[1])
        (discovery / "not-ours.json").write_text("{nope")
        listed = json.loads((await jp_fetch("nbserve", "api", "services")).body)["services"]
    finally:
        hung.close()
    assert [(s["name"], s["state"]) for s in listed] == [("Hung", "unresponsive")]
    assert not gone.exists()
    assert not closed_file.exists()
    assert (discovery / "not-ours.json").exists()  # not a discovery file: left alone
