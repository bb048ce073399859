"""The server ↔ worker wire: framed messages over a pair of OS pipes, pickle protocol 5.

A frame is `u32 nbuf, u64 payload_len, i64 call_id, nbuf × u64 buffer_len`, the pickle
payload, then the buffers. The call id is outside the pickle so that a reply the server cannot
unpickle (a class it cannot import) still fails the right call instead of leaving it waiting. Large contiguous buffers (ndarray and tensor data) travel out of band, after the
payload, so they are written from their own memory and read into their own `bytearray`s,
never copied into or out of a pickle stream; small ones stay in band, where one write is
cheaper than several. Arrays arrive writable: user code that normalises its input in place
works as it does inline.

A request or result that holds an instance of a class defined in a notebook (a pydantic model,
say) crosses by value through cloudpickle (see `_FastPickler` for when); cloudpickle keys such
classes by an id, so both sides keep one class object per notebook class and `isinstance` holds.

The server side is an asyncio protocol on its loop (no reader thread, no handoff per message);
the worker side reads and writes with blocking calls on its own threads.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypedDict

import cloudpickle

from nbserve._runtime.execution.invoke import Signature

__all__ = [
    "CREDIT_BATCH",
    "WINDOW",
    "Abandoned",
    "CallMsg",
    "CancelMsg",
    "CreditMsg",
    "EndMsg",
    "ErrorMsg",
    "FrameReader",
    "InitFailedMsg",
    "InitMsg",
    "ItemMsg",
    "ReadyMsg",
    "ResultMsg",
    "StopMsg",
    "StoppedMsg",
    "ToServer",
    "ToWorker",
    "encode",
    "read_message",
    "write_message",
]

_PREFIX = struct.Struct("<IQq")
_LEN = struct.Struct("<Q")
# Buffers below this size are pickled in band: a separate write costs more than the copy.
_OUT_OF_BAND_MIN = 8192


WINDOW = 8
"""Stream items a worker may send ahead of what the server has handed to its HTTP client.

The server grants more (`CreditMsg`) as its handler takes items, and its handler takes the next
one only after the previous one was flushed to the client's socket: a slow reader slows the
producer, and the server holds at most this many items of a stream however large they are."""
CREDIT_BATCH = 4
"""The server grants credit in batches of this many items: one pipe write per 4 items, not 1."""


# --- messages: server → worker -----------------------------------------------------------------
class InitMsg(TypedDict):
    kind: Literal["init"]
    service: bytes
    """cloudpickle of `ServiceRef` (see `entry.py`): the user class, by value or by import path."""
    apis: dict[str, Signature]
    """How to call each API and probe hook, by name (the same `Signature` the inline executor uses)."""
    startup: list[str]
    shutdown: list[str]
    sys_path: list[str]
    worker: int
    threads: int
    name: str


class CallMsg(TypedDict):
    kind: Literal["call"]
    id: int
    api: str
    kwargs: dict[str, Any]
    ctx: Any
    """The request's `Context` with an empty `state` (the worker has its own), or None."""


class CancelMsg(TypedDict):
    """The caller gave up (timeout, client gone): abandon the call. It still gets one answer."""

    kind: Literal["cancel"]
    id: int


class CreditMsg(TypedDict):
    """The server took `count` more items of stream `id`: the worker may send that many more."""

    kind: Literal["credit"]
    id: int
    count: int


class StopMsg(TypedDict):
    kind: Literal["stop"]
    timeout: float


# --- messages: worker → server -----------------------------------------------------------------
class LoadingMsg(TypedDict):
    """The worker has its message loop and is loading the class (`__init__` next)."""

    kind: Literal["loading"]


class ReadyMsg(TypedDict):
    kind: Literal["ready"]
    pid: int


class InitFailedMsg(TypedDict):
    kind: Literal["init_failed"]
    error: str
    """`Type: message` of what `__init__` / `on_startup` raised."""
    traceback: str


class ResultMsg(TypedDict):
    kind: Literal["result"]
    id: int
    value: Any
    response: Any
    """`ctx.response` after the call (a `ResponseContext`), or None when the API takes no ctx."""


Abandoned = Literal["withdrawn", "cancelled"]
"""How an abandoned call ended without a value: never started, or cancelled while it ran."""


class ErrorMsg(TypedDict):
    kind: Literal["error"]
    id: int
    error: BaseException | None
    """The exception itself when it pickles, else None and `message` only."""
    message: str
    traceback: str
    abandoned: Abandoned | None
    """Set when the error is the server's own `cancel` taking effect."""


class ItemMsg(TypedDict):
    kind: Literal["item"]
    id: int
    value: Any
    response: Any
    """On the first item only: `ctx.response` as the generator left it before yielding it."""


class EndMsg(TypedDict):
    kind: Literal["end"]
    id: int
    response: Any


class StoppedMsg(TypedDict):
    kind: Literal["stopped"]


ToWorker = InitMsg | CallMsg | CancelMsg | CreditMsg | StopMsg
"""Every message the server sends; `kind` tells them apart (mypy narrows on it)."""
ToServer = (
    LoadingMsg | ReadyMsg | InitFailedMsg | ResultMsg | ErrorMsg | ItemMsg | EndMsg | StoppedMsg
)
"""Every message a worker sends."""
Message = ToWorker | ToServer


# --- encoding ----------------------------------------------------------------------------------
class _ByValue(Exception):
    """The message holds a class or function that only exists in this process (see `_FastPickler`)."""


_STATIC: set[Any] = set()
"""Classes and functions already found importable by name (numpy's reconstructors, say)."""


def _is_dynamic(obj: Any) -> bool:
    module = getattr(obj, "__module__", None)
    return (
        module == "__main__"
        or module not in sys.modules
        or "<locals>" in getattr(obj, "__qualname__", "")
    )


class _FastPickler(pickle.Pickler):
    """The C pickler, refusing what plain pickle would send by a name the other side lacks.

    Plain pickle sends a notebook class by reference (`__main__.Point`) and only the receiver
    fails. cloudpickle sends it by value but costs tens of µs per message in Python-level hooks.
    Messages are nearly always plain data and arrays, so they go through the C pickler, and the
    rare one that holds a dynamic class or function is sent again with cloudpickle.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type | types.FunctionType) and obj not in _STATIC:
            if _is_dynamic(obj):
                raise _ByValue
            _STATIC.add(obj)  # module-level classes and functions live as long as their module
        return NotImplemented


def encode(message: Message) -> list[bytes | memoryview]:
    """The frame for `message`: the header and payload joined, then each out-of-band buffer."""
    buffers: list[memoryview] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()
        if view.nbytes < _OUT_OF_BAND_MIN:
            return True  # true: keep it in band
        buffers.append(view)
        return False

    stream = io.BytesIO()
    try:
        _FastPickler(stream, protocol=5, buffer_callback=out_of_band).dump(message)
    except _ByValue:
        buffers.clear()
        stream = io.BytesIO()
        cloudpickle.Pickler(stream, protocol=5, buffer_callback=out_of_band).dump(message)
    payload = stream.getbuffer()
    call_id: int = message.get("id", -1)  # type: ignore[assignment]  # absent from some kinds
    head = _PREFIX.pack(len(buffers), payload.nbytes, call_id) + b"".join(
        _LEN.pack(b.nbytes) for b in buffers
    )
    return [head + payload, *buffers]


def _decode(payload: bytes | bytearray | memoryview, buffers: list[bytearray]) -> Any:
    return pickle.loads(payload, buffers=buffers)


class FrameReader:
    """Incremental decoder for the server side: feed bytes as they come, get whole messages.

    A message that fails to unpickle is delivered as an `ErrorMsg` for its call id.
    """

    def __init__(self, on_message: Callable[[ToServer], None]) -> None:
        self._on_message = on_message
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        buffered = bool(self._buf)  # else parse `data` in place: one message a read is the norm
        if buffered:
            self._buf += data
        view = memoryview(self._buf if buffered else data)
        pos, size = 0, len(view)
        while size - pos >= _PREFIX.size:
            nbuf, payload_len, call_id = _PREFIX.unpack_from(view, pos)
            at = pos + _PREFIX.size + _LEN.size * nbuf
            if size < at:
                break
            lens = struct.unpack_from(f"<{nbuf}Q", view, pos + _PREFIX.size) if nbuf else ()
            end = at + payload_len + sum(lens)
            if size < end:
                break
            payload = view[at : at + payload_len]
            at += payload_len
            buffers = []
            for n in lens:  # copied out: arrays made from them must stay valid (and writable)
                buffers.append(bytearray(view[at : at + n]))
                at += n
            pos = end
            self._dispatch(call_id, payload, buffers)
        view.release()
        if buffered:
            del self._buf[:pos]
        elif pos < size:  # keep the incomplete tail for the next read
            self._buf = bytearray(data[pos:])

    def _dispatch(self, call_id: int, payload: memoryview, buffers: list[bytearray]) -> None:
        message: ToServer
        try:
            message = _decode(payload, buffers)
        except Exception as exc:
            text = f"the worker's reply could not be unpickled in the server process: {type(exc).__name__}: {exc}; return types the server can import (plain data, arrays, classes from installed modules)"
            message = ErrorMsg(
                kind="error", id=call_id, error=None, message=text, traceback="", abandoned=None
            )
        finally:
            payload.release()
        self._on_message(message)


# --- the worker's blocking side ----------------------------------------------------------------
class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _read_exact(stream: Readable, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        count = stream.readinto(view[got:])
        if not count:
            return None
        got += count
    return buf


def read_message(stream: Readable) -> ToWorker | None:
    """Block until one whole message arrives; None when the other end has closed.

    `stream` is buffered (`os.fdopen(fd, "rb")`), so a small message costs one read syscall.
    """
    prefix = _read_exact(stream, _PREFIX.size)
    if prefix is None:
        return None
    nbuf, payload_len, _ = _PREFIX.unpack(prefix)
    lens: tuple[int, ...] = ()
    if nbuf:
        raw = _read_exact(stream, _LEN.size * nbuf)
        if raw is None:
            return None
        lens = struct.unpack(f"<{nbuf}Q", raw)
    payload = _read_exact(stream, payload_len)
    if payload is None:
        return None
    buffers = []
    for n in lens:
        buf = _read_exact(stream, n)
        if buf is None:
            return None
        buffers.append(buf)
    message: ToWorker = _decode(payload, buffers)
    return message


def write_message(fd: int, message: ToServer, lock: threading.Lock) -> None:
    """Encode `message` and write it whole (several threads may call this; `lock` orders them)."""
    pieces = encode(message)
    with lock:
        for piece in pieces:
            view = memoryview(piece).cast("B")
            while view:
                view = view[os.write(fd, view) :]
