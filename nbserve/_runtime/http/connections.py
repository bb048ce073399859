"""Connection hygiene: timeouts per connection phase, a cap on open connections, and an accept
loop that survives running out of file descriptors.

Tornado alone keeps a connection as long as its client wants: its header timeout is an hour, a
body may trickle in one byte a minute, a client that never reads its response keeps its buffer,
and at the file-descriptor limit `accept()` raises EMFILE on every loop turn (the listening
socket stays readable), which logs one traceback per turn and spins a core.

`HTTPServer` here tracks each connection through four phases and a sweeper closes those that
overstay (one timer per server, O(connections) per tick, nothing per request):

- idle (keep-alive, waiting for the next request): `idle_timeout`;
- headers (the first byte of a request has come, its headers have not ended): `header_timeout`
  from the first byte, however fast or slow the bytes come;
- body (headers done, body being read): at least `min_body_rate` bytes a second over each
  window of `body_timeout` seconds, so a trickle is closed while a slow honest upload is not;
- busy (the service works on the request): no limit while nothing waits to be sent (the
  service's own `traffic.timeout` applies); once a response waits to be sent, the client must
  take some of it every `body_timeout` seconds.

Over `max_connections` open connections a new one gets a JSON 503 and is closed, so the process
never reaches EMFILE through its clients alone. If it reaches EMFILE anyway (other files, worker
pipes), accepting pauses with a growing backoff, idle keep-alive connections are closed to free
descriptors, and one log line per `LOG_INTERVAL` says so and how many failures it stands for.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.iostream
from tornado.http1connection import HTTP1ServerConnection
from tornado.ioloop import IOLoop

from nbserve._runtime.http.errors import error_body
from nbserve._runtime.http.protocol import ProtocolErrors

__all__ = ["LOG_INTERVAL", "ConnectionLimits", "HTTPServer", "default_max_connections"]

LOG_INTERVAL = 10.0
"""Seconds between two log lines about failing accepts."""
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_MAX_REFUSING = 64  # 503s being sent at once; past it a new connection is just closed
_ACCEPT_BATCH = 128  # connections accepted per readiness event, as Tornado does


def default_max_connections() -> int:
    """Open connections allowed by default: the soft RLIMIT_NOFILE less a reserve for the rest
    of the process (worker pipes, uploads' temp files, model files, the 503s themselves)."""
    try:
        import resource  # POSIX only
    except ImportError:  # Windows: no such limit to derive it from
        return 10_000
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 10_000
    return max(16, soft - max(64, soft // 8))


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take, and how many may be connected at once.

    The defaults suit clients on slow networks; lower them behind a proxy that buffers requests.
    """

    idle_timeout: float = 75.0
    """Seconds a keep-alive connection may wait for its next request."""
    header_timeout: float = 30.0
    """Seconds from a request's first byte to the end of its headers."""
    body_timeout: float = 30.0
    """Window, in seconds, over which a body must arrive at `min_body_rate` (or end), and a
    pending response must be taken by the client at all."""
    min_body_rate: int = 1024
    """Bytes per second a request body must average over each `body_timeout` window."""
    max_connections: int | None = None
    """Open connections; more get a 503. None: from the file-descriptor limit
    (`default_max_connections()`)."""

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "header_timeout", "body_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                msg = f"ConnectionLimits({name}={value!r}): must be a positive number of seconds, e.g. 30"
                raise ValueError(msg)
        rate = self.min_body_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
            msg = f"ConnectionLimits(min_body_rate={rate!r}): must be a number of bytes per second ≥ 0, e.g. 1024"
            raise ValueError(msg)
        cap = self.max_connections
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            msg = f"ConnectionLimits(max_connections={cap!r}): must be a positive integer, or None for a limit from the file-descriptor limit"
            raise ValueError(msg)

    def connection_cap(self) -> int:
        return (
            self.max_connections if self.max_connections is not None else default_max_connections()
        )


_IDLE, _HEADERS, _BODY, _BUSY = range(4)


class _Tracked:
    """One connection's phase and progress, updated by hooks on its stream and its delegate."""

    __slots__ = ("phase", "read_total", "since", "stream", "window_read", "written_at")

    def __init__(self, stream: tornado.iostream.IOStream, now: float) -> None:
        self.stream = stream
        self.phase = _IDLE
        self.since = now  # start of the current phase (of the current window, for bodies)
        self.read_total = 0
        self.window_read = 0  # read_total when the current body window started
        self.written_at = now  # last time the client took bytes of a response


class _TrackingDelegate(tornado.httputil.HTTPMessageDelegate):
    """Passes a request through, moving its connection's phase along."""

    __slots__ = ("_inner", "_tracked")

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate, tracked: _Tracked) -> None:
        self._inner = inner
        self._tracked = tracked

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        tracked = self._tracked
        tracked.phase = _BODY
        tracked.since = time.monotonic()
        tracked.window_read = tracked.read_total
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._tracked.phase = _BUSY
        self._tracked.written_at = time.monotonic()
        self._inner.finish()

    def on_connection_close(self) -> None:
        self._inner.on_connection_close()


class HTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's server plus the timeouts, the cap and the accept loop described above."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Any,
        *,
        limits: ConnectionLimits,
        logger: logging.Logger,
        **kwargs: Any,
    ) -> None:
        super().initialize(request_callback, **kwargs)
        self.limits = limits
        self.max_connections = limits.connection_cap()
        self.logger = logger
        self._tracked: dict[HTTP1ServerConnection, _Tracked] = {}
        self._refusing = 0
        self._accept_failures = 0  # since the last log line
        self._accept_logged_at = -LOG_INTERVAL
        self._backoff = 0.0
        self._sweeper: Any = None
        self._protocol = ProtocolErrors(self.conn_params.max_header_size, logger)

    @property
    def open_connections(self) -> int:
        return len(self._tracked)

    # --- accepting ------------------------------------------------------------------------------
    def add_sockets(self, sockets: Any) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock)
        if self._sweeper is None:
            tick = min(
                self.limits.idle_timeout, self.limits.header_timeout, self.limits.body_timeout
            )
            self._sweeper = tornado.ioloop.PeriodicCallback(
                self._sweep, 1000.0 * min(max(tick / 4.0, 0.05), 1.0)
            )
            self._sweeper.start()

    def _accept_on(self, sock: socket.socket) -> Callable[[], None]:
        """Tornado's `add_accept_handler`, but EMFILE pauses accepting instead of spinning."""
        io_loop = IOLoop.current()
        state = {"removed": False, "paused": False}

        def resume() -> None:
            if not state["removed"] and state["paused"]:
                state["paused"] = False
                io_loop.add_handler(sock, accept, IOLoop.READ)

        def accept(fd: Any, events: int) -> None:
            for _ in range(_ACCEPT_BATCH):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in _OUT_OF_RESOURCES:
                        raise
                    state["paused"] = True
                    io_loop.remove_handler(sock)
                    self._out_of_descriptors(exc)
                    io_loop.call_later(self._backoff, resume)
                    return
                self._backoff = 0.0
                self._handle_connection(connection, address)

        def remove() -> None:
            if not state["paused"]:
                io_loop.remove_handler(sock)
            state["removed"] = True

        io_loop.add_handler(sock, accept, IOLoop.READ)
        return remove

    def _out_of_descriptors(self, exc: OSError) -> None:
        self._backoff = min(max(self._backoff * 2.0, 0.05), 1.0)
        closed = self._close_idle()
        self._accept_failures += 1
        now = time.monotonic()
        if now - self._accept_logged_at >= LOG_INTERVAL:
            self.logger.warning(
                "cannot accept connections: %s (%d open, limit %d); pausing accepts %.2fs, closed %d idle connections (%d failed accepts in the last %gs); raise the file limit (ulimit -n) or lower max_connections",
                exc.strerror or exc,
                len(self._tracked),
                self.max_connections,
                self._backoff,
                closed,
                self._accept_failures,
                LOG_INTERVAL,
            )
            self._accept_logged_at = now
            self._accept_failures = 0

    def _close_idle(self) -> int:
        idle = [t for t in self._tracked.values() if t.phase == _IDLE]
        for tracked in idle:
            tracked.stream.close()
        return len(idle)

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        if len(self._tracked) >= self.max_connections:
            self._refuse(stream)
            return
        context = tornado.httpserver._HTTPRequestContext(
            stream, address, self.protocol, self.trusted_downstream
        )
        connection = HTTP1ServerConnection(stream, self.conn_params, context)
        tracked = _Tracked(stream, time.monotonic())
        self._hook_stream(stream, tracked)
        self._connections.add(connection)
        self._tracked[connection] = tracked
        connection.start_serving(self)

    def _hook_stream(self, stream: tornado.iostream.IOStream, tracked: _Tracked) -> None:
        # Progress is counted where bytes really move: IOStream's two fd methods. Instance
        # attributes shadow the class's methods, so no subclass of IOStream (which Tornado
        # creates itself in TCPServer._handle_connection) is needed.
        read_from_fd = stream.read_from_fd
        write_to_fd = stream.write_to_fd

        def counted_read(buf: Any) -> int | None:
            n = read_from_fd(buf)
            if n:
                tracked.read_total += n
                if tracked.phase == _IDLE:
                    tracked.phase = _HEADERS
                    tracked.since = time.monotonic()
            return n

        def counted_write(data: memoryview) -> int:
            n = write_to_fd(data)
            if n:
                tracked.written_at = time.monotonic()
            return n

        stream.read_from_fd = counted_read  # type: ignore[method-assign]
        stream.write_to_fd = counted_write  # type: ignore[method-assign]
        self._protocol.hook(stream, lambda: tracked.phase == _HEADERS)

    def _refuse(self, stream: tornado.iostream.IOStream) -> None:
        if self._refusing >= _MAX_REFUSING:
            stream.close()
            return
        self._refusing += 1
        IOLoop.current().add_future(
            tornado.gen.convert_yielded(self._send_503(stream)), lambda _: None
        )

    async def _send_503(self, stream: tornado.iostream.IOStream) -> None:
        cap = self.max_connections
        body = error_body(
            f"Service unavailable: the server has {cap} connections open, its max_connections; retry in a moment",
            {"max_connections": cap},
        )
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        try:
            await stream.write(head.encode() + body)
            # Read what the client sent before closing: closing with unread bytes sends a
            # reset, which can make the client lose the 503 it has not read yet.
            stream.socket.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                await tornado.gen.with_timeout(
                    deadline - time.monotonic() + IOLoop.current().time(),
                    stream.read_bytes(65536, partial=True),
                )
        except Exception:  # closed by the client, timed out: either way, done
            pass
        finally:
            stream.close()
            self._refusing -= 1

    # --- tracking -------------------------------------------------------------------------------
    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        tracked = self._tracked.get(server_conn)  # type: ignore[call-overload]
        if tracked is None:
            return delegate
        tracked.phase = _IDLE
        tracked.since = time.monotonic()
        tracked.read_total = 0
        return _TrackingDelegate(delegate, tracked)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        self._tracked.pop(server_conn, None)  # type: ignore[call-overload]

    def _sweep(self) -> None:
        limits = self.limits
        now = time.monotonic()
        for tracked in list(self._tracked.values()):
            phase = tracked.phase
            stream = tracked.stream
            if stream.closed():
                continue
            if phase == _IDLE:
                expired = now - tracked.since > limits.idle_timeout
            elif phase == _HEADERS:
                expired = now - tracked.since > limits.header_timeout
            elif phase == _BODY:
                expired = False
                if now - tracked.since > limits.body_timeout:
                    arrived = tracked.read_total - tracked.window_read
                    expired = arrived < limits.min_body_rate * limits.body_timeout
                    tracked.since = now
                    tracked.window_read = tracked.read_total
            else:
                expired = stream.writing() and now - tracked.written_at > limits.body_timeout
            if expired:
                stream.close()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
        super().stop()

    async def close_all_connections(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
        await super().close_all_connections()
