"""Binding the listening sockets of a server."""

from __future__ import annotations

import socket

__all__ = ["bind_sockets"]


def bind_sockets(port: int, host: str) -> list[socket.socket]:
    """Listening sockets for `host:port`, one per address family (port 0: one free port for all).

    Tornado's `netutil.bind_sockets` does this too, but on EADDRINUSE it raises without closing
    the socket it made, which leaks a file descriptor per failed `%%serve --port N`.
    """
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
        for family, socktype, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, socktype, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # the same free port on every family
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.setblocking(False)
            sock.bind(address)
            sock.listen(128)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
