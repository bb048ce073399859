"""`cmd=` / `__command__` services (`_runtime/execution/command.py`): the command runs as the service's
worker, nbserve proxies the paths it does not serve itself to the command's port, and the
service is ready only once the command's health endpoint answers. The command here is Python's
own `http.server` on a free port."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# A command that tells what it received: /echo answers the body's size and digest, and touches
# `<folder>/first-bytes` as soon as the first bytes are in (before reading the rest). At start it
# records its pid, exits with code 7 while `<folder>/fail` exists, and waits while
# `<folder>/hold` exists (so a test can see the service while the command is down).
_ECHO_SERVER = """
import hashlib, http.server, os, pathlib, sys, time
port, folder = int(sys.argv[1]), pathlib.Path(sys.argv[2])
if (folder / "fail").exists():
    raise SystemExit(7)
while (folder / "hold").exists():
    time.sleep(0.02)
with (folder / "pids").open("a") as pids:
    pids.write(f"{os.getpid()}\\n")

class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer(f"pid {os.getpid()}".encode() if self.path == "/pid" else b"ok")

    def do_POST(self):
        left, digest = int(self.headers["Content-Length"]), hashlib.sha256()
        first = True
        while left:
            chunk = self.rfile.read1(min(left, 1 << 16))
            if first:
                (folder / "first-bytes").touch()
                first = False
            digest.update(chunk)
            left -= len(chunk)
        self._answer(f"{self.headers['Content-Length']} {digest.hexdigest()}".encode())

    def _answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Echo).serve_forever()
"""


def _echo_service(folder: Path, **options: Any) -> type:
    script = folder / "echo_server.py"
    script.write_text(_ECHO_SERVER)
    port = _free_port()

    @nbserve.service(
        cmd=[sys.executable, str(script), str(port), str(folder)],
        http={"proxy_port": port},
        endpoints={"livez": "/health"},
        **options,
    )
    class Echo:
        pass

    return Echo


def _wait_for(check: object, what: str) -> None:
    """Poll `check()` until true; a 60 s deadline only turns a hang into a failure."""
    assert callable(check)
    deadline = time.monotonic() + 60
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


def test_request_bodies_stream_to_the_command(tmp_path: Path) -> None:
    piece = os.urandom(1 << 16)
    pieces = 64  # 4 MiB

    def body() -> Iterator[bytes]:
        yield piece
        # The rest is sent only once the command has the first bytes: a server that read the
        # body whole before forwarding it would wait here for ever.
        _wait_for((tmp_path / "first-bytes").exists, "the command saw the first bytes")
        for _ in range(pieces - 1):
            yield piece

    with nbserve.serve(_echo_service(tmp_path)) as handle:
        answer = httpx.post(
            handle.url + "/echo",
            content=body(),
            headers={"Content-Length": str(len(piece) * pieces)},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert answer.text == f"{len(piece) * pieces} {hashlib.sha256(piece * pieces).hexdigest()}"


def test_a_streamed_body_past_the_limit_gets_a_413(tmp_path: Path) -> None:
    def chunked() -> Iterator[bytes]:  # no Content-Length: only counting the body can tell
        for _ in range(4):
            yield b"x" * 50_000

    with nbserve.serve(_echo_service(tmp_path), max_body_size=100_000) as handle:
        answer = httpx.post(handle.url + "/echo", content=chunked())
        assert answer.status_code == 413
        assert "the limit is 100000 bytes" in answer.json()["error"]
        assert httpx.get(handle.url + "/pid").status_code == 200  # the command is unharmed


def test_the_command_restarts_after_it_dies_and_not_after_stop(tmp_path: Path) -> None:
    with nbserve.serve(_echo_service(tmp_path)) as handle:
        first = httpx.get(handle.url + "/pid").text
        (tmp_path / "hold").touch()  # the next run waits: the service stays down meanwhile
        os.kill(int(first.split()[1]), signal.SIGKILL)
        _wait_for(lambda: httpx.get(handle.url + "/readyz").status_code == 503, "readyz is 503")
        down = httpx.get(handle.url + "/pid")
        assert down.status_code == 503
        assert "exited with code -9; restarting it" in down.json()["error"]
        assert httpx.get(handle.url + "/livez").status_code == 200  # down, not dead: it restarts
        (tmp_path / "hold").unlink()
        _wait_for(lambda: httpx.get(handle.url + "/readyz").status_code == 200, "readyz is 200")
        again = httpx.get(handle.url + "/pid")
        assert again.status_code == 200
        assert again.text != first  # another process, the same answers
        assert httpx.post(handle.url + "/echo", content=b"abc").text.startswith("3 ")
        assert any("exited with code -9 while serving" in line for line in handle.logs(100))
    pids = [int(line) for line in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2
    for pid in pids:  # stopped, and not started again
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_restarts_give_up_after_repeated_failures(tmp_path: Path) -> None:
    with nbserve.serve(_echo_service(tmp_path)) as handle:
        pid = int(httpx.get(handle.url + "/pid").text.split()[1])
        (tmp_path / "fail").touch()  # every restart exits with code 7 before it is healthy
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: httpx.get(handle.url + "/livez").status_code == 503, "livez is 503")
        error = httpx.get(handle.url + "/pid").json()["error"]
        assert "exited with code 7 before" in error
        assert "gave up after 5 restarts" in error
        assert httpx.get(handle.url + "/readyz").status_code == 503


def test_one_command_whatever_the_workers(tmp_path: Path) -> None:
    # BentoML 1.4.39 starts the command in worker 1 only (every worker proxies to it), or in
    # every worker with replicate_process=True, all on one port; nbserve proxies from its one
    # process and runs one command either way.
    replicated = _echo_service(tmp_path, workers=2, replicate_process=True)
    with nbserve.serve(replicated, workers=2) as handle:
        assert httpx.get(handle.url + "/pid").status_code == 200
        assert any("replicate_process=True is ignored" in line for line in handle.logs(100))
    assert len((tmp_path / "pids").read_text().split()) == 1


def test_a_client_that_leaves_mid_body_harms_nothing(tmp_path: Path) -> None:
    with nbserve.serve(_echo_service(tmp_path)) as handle:
        host, port = handle.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            sock.sendall(b"x" * 65536)
            _wait_for((tmp_path / "first-bytes").exists, "the command saw the first bytes")
        assert httpx.get(handle.url + "/pid").status_code == 200
        assert httpx.post(handle.url + "/echo", content=b"abc").text.startswith("3 ")
        assert not any("Traceback" in line for line in handle.logs(100))
