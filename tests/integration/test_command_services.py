"""`cmd=` / `__command__` services (`_runtime/execution/command.py`): the command runs as the service's
worker, nbserve proxies the paths it does not serve itself to the command's port, and the
service is ready only once the command's health endpoint answers. The command here is Python's
own `http.server` on a free port."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

import nbserve


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http_server(port: int, folder: Path) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
            "--directory", str(folder)]  # fmt: skip


def test_cmd_service_proxies_to_its_command(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello from the command")
    port = _free_port()

    @nbserve.service(
        cmd=_http_server(port, tmp_path), http={"proxy_port": port}, endpoints={"livez": "/"}
    )
    class Files:
        @nbserve.api
        def own(self) -> str:
            return "nbserve's own API"

    with nbserve.serve(Files) as handle:
        answer = httpx.get(handle.url + "/hello.txt")
        assert answer.status_code == 200
        assert answer.text == "hello from the command"
        assert answer.headers["content-type"].startswith("text/plain")
        assert httpx.get(handle.url + "/missing.txt").status_code == 404  # the command's 404
        assert httpx.post(handle.url + "/own").text == "nbserve's own API"  # not proxied
        assert httpx.get(handle.url + "/readyz").status_code == 200
        assert any("running" in line and "http.server" in line for line in handle.logs(50))
        pid = next(
            int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_server(p, port)
        )
        os.kill(pid, signal.SIGKILL)  # the command dies: the probes say so, the proxy answers 503
        deadline = time.monotonic() + 30
        while httpx.get(handle.url + "/livez").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(handle.url + "/livez").status_code == 503
        gone = httpx.get(handle.url + "/hello.txt")
        assert gone.status_code == 503
        assert "command is not running" in gone.json()["error"]


def _is_server(proc: Path, port: int) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"http.server" in cmdline and str(port).encode() in cmdline


def test_dunder_command_with_environment_expansion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "index.html").write_text("<p>dunder</p>")
    port = _free_port()
    monkeypatch.setenv("NBSERVE_TEST_PORT", str(port))

    @nbserve.service(http={"proxy_port": port}, endpoints={"livez": "/index.html"})
    class Dunder:
        def __init__(self) -> None:
            self.folder = str(tmp_path)

        def __command__(self) -> list[str]:
            return [sys.executable, "-m", "http.server", "$NBSERVE_TEST_PORT", "--bind",
                    "127.0.0.1", "--directory", self.folder]  # fmt: skip

    with nbserve.serve(Dunder) as handle:
        assert httpx.get(handle.url + "/index.html").text == "<p>dunder</p>"
        assert httpx.head(handle.url + "/index.html").status_code == 200


def test_a_command_that_exits_fails_the_start_with_its_code() -> None:
    port = _free_port()

    @nbserve.service(cmd=[sys.executable, "-c", "raise SystemExit(3)"], http={"proxy_port": port})
    class Exits:
        pass

    handle = nbserve.serve(Exits)
    try:
        with pytest.raises(RuntimeError, match=r"exited with code 3 before"):
            handle.wait_ready(60)
    finally:
        handle.stop()
