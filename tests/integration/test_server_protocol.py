"""Errors in the HTTP framing (`_runtime/http/protocol.py`) come back in the JSON error shape, with
the reason, from a real server over raw sockets (an HTTP client would refuse to send them)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import orjson
import pytest

import nbserve
from nbserve.testing import running_service


@nbserve.service
class Echo:
    @nbserve.api
    def shout(self, text: str) -> str:
        return text.upper()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running_service(Echo, max_body_size=1000) as handle:
        yield handle.port


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # The server may answer and close before it has taken the whole request.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def _assert_json_error(headers: dict[str, str], raw: bytes) -> dict[str, object]:
    assert headers["content-type"] == "application/json"
    body = orjson.loads(raw)
    assert isinstance(body, dict)
    assert set(body) == {"error", "detail"}
    return body


def test_content_length_and_transfer_encoding_together_is_a_json_400(port: int) -> None:
    status, headers, body = _exchange(
        port,
        b"POST /shout HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    error = _assert_json_error(headers, body)
    assert status == 400
    assert "Transfer-Encoding and Content-Length" in str(error["error"])


def test_a_bad_content_length_is_a_json_400(port: int) -> None:
    status, headers, body = _exchange(
        port, b"POST /shout HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n"
    )
    error = _assert_json_error(headers, body)
    assert status == 400
    assert "Content-Length" in str(error["detail"])


def test_too_many_query_arguments_is_a_json_400(port: int) -> None:
    query = "&".join(f"a{i}=1" for i in range(1500))
    status, headers, body = _exchange(
        port, f"GET /readyz?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    error = _assert_json_error(headers, body)
    assert status == 400
    assert "query string" in str(error["error"])


def test_an_over_long_url_is_a_json_414(port: int) -> None:
    status, headers, body = _exchange(
        port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    _assert_json_error(headers, body)
    assert status == 414


def test_over_long_headers_are_a_json_431(port: int) -> None:
    status, headers, body = _exchange(
        port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n"
    )
    error = _assert_json_error(headers, body)
    assert status == 431
    assert error["detail"] == {"max_header_size": 65536}


def test_a_chunked_body_over_the_limit_on_a_non_api_route_is_a_json_413(port: int) -> None:
    chunk = b"x" * 600
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    status, headers, reply = _exchange(
        port,
        b"POST /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
    )
    _assert_json_error(headers, reply)
    assert status == 413


def test_a_well_formed_request_still_works_on_the_same_server(port: int) -> None:
    body = b'{"text": "hi"}'
    status, _, reply = _exchange(
        port,
        b"POST /shout HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    assert status == 200
    assert reply == b"HI"
