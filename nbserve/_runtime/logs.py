"""Where a served service's log records go: its own logger and a ring buffer the handle reads.

Nothing here writes to stdout or stderr. In a kernel the server runs on a background thread, and
ipykernel 7 re-parents output from such threads into whatever cell runs next (jupyter.md §0.2),
so a record is only ever kept (the ring buffer) or passed up the logging tree, where the host
application decides. The `nbserve` logger gets a `NullHandler` so that Python's last-resort
handler (which prints WARNING and above to stderr when no handler exists) never fires on our
account. The CLI adds a stderr handler; a notebook user reads `handle.logs()`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = [
    "LOGGER_NAME",
    "RingBufferHandler",
    "ServiceLog",
    "capture_output",
    "output_target",
    "package_logger",
    "route_output",
]

LOGGER_NAME = "nbserve"
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def package_logger() -> logging.Logger:
    """The `nbserve` logger, with the `NullHandler` that keeps the last-resort handler quiet."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    return logger


package_logger()


class RingBufferHandler(logging.Handler):
    """Keeps the last `capacity` formatted records in memory; thread-safe, never blocks long."""

    def __init__(self, capacity: int = 1000) -> None:
        super().__init__(level=logging.DEBUG)
        self._lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self._lines_lock = threading.Lock()
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a bad %-format in a user's log call must not break a request
            line = f"{record.levelname} {record.msg!r} (unformattable arguments)"
        with self._lines_lock:
            self._lines.append(line)

    def tail(self, n: int) -> list[str]:
        with self._lines_lock:
            lines = list(self._lines)
        return lines[-n:] if n > 0 else []


class ServiceLog:
    """The logger `nbserve.service.<name>` plus this server's ring buffer of its records.

    Two servers of the same service name in one process share the logger (the name is what a
    user configures), and each buffer then sees both servers' records.
    """

    def __init__(self, name: str, capacity: int = 1000) -> None:
        package_logger()
        self.logger = logging.getLogger(f"{LOGGER_NAME}.service.{name}")
        # INFO (lifecycle lines) must reach the buffer even when the root logger is at WARNING;
        # nothing is logged at INFO per request, so this costs nothing on the hot path.
        if self.logger.level == logging.NOTSET or self.logger.level > logging.INFO:
            self.logger.setLevel(logging.INFO)
        self.buffer = RingBufferHandler(capacity)
        self.logger.addHandler(self.buffer)

    def tail(self, n: int = 50) -> list[str]:
        return self.buffer.tail(n)

    def close(self) -> None:
        """Detach the buffer (its lines stay readable); called when the server has stopped."""
        self.logger.removeHandler(self.buffer)


# --- print() from a service's threads ----------------------------------------------------------
# A service's code runs on the server's threads; in a kernel, its print() would land in whatever
# cell runs next (ipykernel 7). While a threaded server runs, sys.stdout / sys.stderr are proxies
# that turn writes from threads marked with `route_output` into log lines of that service and
# pass every other thread's writes through unchanged.

_local = threading.local()
_install_lock = threading.Lock()
_installed = 0


def output_target() -> logging.Logger | None:
    """The logger this thread's prints go to (None: they go to the real streams)."""
    target: logging.Logger | None = getattr(_local, "target", None)
    return target


def route_output(logger: logging.Logger | None) -> None:
    """From now on, this thread's prints become lines of `logger` (None: normal output)."""
    _local.target = logger


class _RoutedStream:
    """Stands in for sys.stdout or sys.stderr (see above); anything else goes to the original."""

    def __init__(self, original: TextIO, level: int) -> None:
        self._original = original
        self._level = level

    def write(self, text: str) -> int:
        logger = output_target()
        if logger is None or getattr(_local, "emitting", False):
            return self._original.write(text)
        pending: str = getattr(_local, "pending", "") + text
        *lines, rest = pending.split("\n")
        _local.pending = rest
        _local.emitting = True  # a handler that writes to this stream must not loop back here
        try:
            for line in lines:
                logger.log(self._level, "%s", line)
        finally:
            _local.emitting = False
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if output_target() is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


@contextlib.contextmanager
def capture_output() -> Iterator[None]:
    """While a threaded server runs: install the stream proxies (once for all servers)."""
    global _installed
    with _install_lock:
        if not isinstance(sys.stdout, _RoutedStream):
            sys.stdout = _RoutedStream(sys.stdout, logging.INFO)
        if not isinstance(sys.stderr, _RoutedStream):
            sys.stderr = _RoutedStream(sys.stderr, logging.WARNING)
        _installed += 1
    try:
        yield
    finally:
        with _install_lock:
            _installed -= 1
            if _installed == 0:
                # Only undo our own proxies: someone may have replaced them since.
                if isinstance(sys.stdout, _RoutedStream):
                    sys.stdout = sys.stdout._original
                if isinstance(sys.stderr, _RoutedStream):
                    sys.stderr = sys.stderr._original
