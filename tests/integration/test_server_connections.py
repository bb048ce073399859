"""Connection hygiene (`_runtime/http/connections.py`): slow and dead clients are closed by the
timeouts while others are served, the cap answers 503, and at the file-descriptor limit the
server keeps answering once old connections are gone, with a bounded number of log lines."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Generator, Iterator

import httpx
import orjson
import pytest

import nbserve
from nbserve.testing import running_service

FAST = nbserve.ConnectionLimits(
    idle_timeout=1.0, header_timeout=0.5, body_timeout=0.5, min_body_rate=4096
)


@nbserve.service
class Echo:
    @nbserve.api
    def shout(self, text: str) -> str:
        return text.upper()

    @nbserve.api
    def flood(self) -> Generator[str, None, None]:
        for _ in range(100_000):
            yield "x" * 65536


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (EOF or reset); never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False


def _trickle(sock: socket.socket, byte: bytes) -> bool:
    """Send one byte; False when the server has closed the connection."""
    try:
        sock.send(byte)
    except (ConnectionResetError, BrokenPipeError):
        return False
    except BlockingIOError:
        pass
    return not _closed_by_server(sock)


def test_trickling_and_idle_connections_are_closed_while_others_are_served() -> None:
    with running_service(Echo, limits=FAST) as handle:
        headers = [_connect(handle.port) for _ in range(10)]
        for sock in headers:
            sock.send(b"POST /shout HTTP/1.1\r\nHost: x\r\n")
        bodies = [_connect(handle.port) for _ in range(10)]
        for sock in bodies:
            sock.send(
                b"POST /shout HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{"
            )
        idle = [_connect(handle.port) for _ in range(5)]
        open_ = {*headers, *bodies, *idle}
        served = 0
        # A fresh connection per request: a kept-alive one could meet the 1 s idle timeout
        # on a slow machine, which is the server doing its job, not a failure to serve.
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=handle.url, timeout=10, limits=fresh) as client:
            deadline = time.monotonic() + 60  # generous: only a hang fails this test
            while open_ and time.monotonic() < deadline:
                for sock in list(open_):
                    alive = not _closed_by_server(sock) if sock in idle else _trickle(sock, b" ")
                    if not alive:
                        open_.discard(sock)
                        sock.close()
                response = client.post("/shout", json={"text": "hi"})
                assert response.status_code == 200, response.text
                assert response.text == "HI"
                served += 1
                time.sleep(0.05)
        assert not open_, f"{len(open_)} slow connections were never closed"
        assert served > 1


def test_a_slow_honest_body_is_not_cut() -> None:
    """A body that keeps arriving at the minimum rate is read to its end and answered."""
    limits = nbserve.ConnectionLimits(body_timeout=0.5, header_timeout=5, min_body_rate=100)
    with running_service(Echo, limits=limits) as handle:
        body = orjson.dumps({"text": "x" * 400})
        sock = socket.create_connection(("127.0.0.1", handle.port))
        sock.sendall(
            b"POST /shout HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for start in range(0, len(body), 50):  # 50 bytes every 0.1 s: 500 B/s
            sock.sendall(body[start : start + 50])
            time.sleep(0.1)
        sock.settimeout(10)
        reply = sock.recv(65536)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert reply.endswith(b"X" * 400)


def test_over_max_connections_a_client_gets_a_json_503_and_later_ones_are_served() -> None:
    limits = nbserve.ConnectionLimits(max_connections=4)
    with running_service(Echo, limits=limits) as handle:
        held = [socket.create_connection(("127.0.0.1", handle.port)) for _ in range(4)]
        with httpx.Client(base_url=handle.url, timeout=10) as client:
            _wait_until_open(handle, 4)
            refused = client.post("/shout", json={"text": "hi"})
            assert refused.status_code == 503
            assert refused.json()["detail"] == {"max_connections": 4}
            assert "max_connections" in refused.json()["error"]
            for sock in held:
                sock.close()
            _wait_until_open(handle, 0)
            assert client.post("/shout", json={"text": "hi"}).text == "HI"


def test_a_client_that_never_reads_its_reply_is_closed() -> None:
    with running_service(Echo, limits=FAST) as handle:
        sock = socket.create_connection(("127.0.0.1", handle.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"POST /flood HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        _wait_until_open(handle, 1)
        _wait_until_open(handle, 0, timeout=60)  # closed by the server; never read here
        sock.close()


def test_limits_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="body_timeout=0"):
        nbserve.ConnectionLimits(body_timeout=0)
    with pytest.raises(ValueError, match="max_connections=0"):
        nbserve.ConnectionLimits(max_connections=0)
    assert nbserve.ConnectionLimits().connection_cap() >= 16


def _wait_until_open(handle: nbserve.ServiceHandle, count: int, timeout: float = 10) -> None:
    http = handle._server._http
    assert http is not None
    deadline = time.monotonic() + timeout
    while http.open_connections != count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert http.open_connections == count


_LOW_FD_SERVER = textwrap.dedent(
    """
    import logging, resource, signal, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (80, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    import nbserve
    from nbserve._runtime.server import Server

    @nbserve.service
    class Echo:
        @nbserve.api
        def shout(self, text: str) -> str:
            return text.upper()

    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("nbserve").addHandler(handler)
    logging.getLogger().addHandler(handler)  # anything else (asyncio, tornado) counts too
    # A cap above the descriptor limit, so that accept() really meets EMFILE.
    limits = nbserve.ConnectionLimits(max_connections=1000, idle_timeout=600)
    server = Server(Echo, port=0, limits=limits)
    server.run(
        stop_signals=(signal.SIGTERM,),
        on_started=lambda error: print(server.port, flush=True),
    )
    """
)


@contextlib.contextmanager
def _low_fd_server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", _LOW_FD_SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE and EMFILE as on Linux")
def test_at_the_descriptor_limit_the_server_recovers_and_logs_a_bounded_number_of_lines() -> None:
    with _low_fd_server() as (process, port):
        # Far more connections than the server has descriptors: the kernel queues them.
        flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]
        with httpx.Client(timeout=30) as client:
            time.sleep(2.0)  # let the accept loop meet EMFILE for a while
            for sock in flood:
                sock.close()
            for _ in range(20):
                response = client.post(f"http://127.0.0.1:{port}/shout", json={"text": "hi"})
                assert response.status_code == 200, response.text
                assert response.text == "HI"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    lines = stderr.splitlines()
    assert any("cannot accept connections" in line for line in lines), stderr[-2000:]
    assert len(lines) <= 10, stderr[-4000:]
    assert "Traceback" not in stderr
