"""Helpers of the Jupyter server-extension tests: serve like a kernel does, talk HTTP."""

from __future__ import annotations

import socket
import urllib.parse
from typing import Any

import tornado.httpclient

from nbserve._notebook.live import ServeOptions
from nbserve._notebook.registry import REGISTRY


def serve_here(service: Any, name: str, token: bool = True) -> Any:
    """Serve `service` from this process the way a kernel does (registry + discovery file)."""
    return REGISTRY.serve(
        service, name=name, options=ServeOptions(token="auto" if token else "none")
    )


def server_url(base: str, *parts: str) -> str:
    return base + "/".join(parts)


def quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


async def fetch(url: str, **kwargs: Any) -> tornado.httpclient.HTTPResponse:
    kwargs.setdefault("raise_error", False)
    kwargs.setdefault("follow_redirects", False)
    client = tornado.httpclient.AsyncHTTPClient()
    return await client.fetch(url, **kwargs)


def port_is_free(port: int) -> bool:
    """Nothing listens on `port`, and a new server could bind it (as servers do: SO_REUSEADDR,
    since connections the old server closed may linger in TIME_WAIT)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
