"""The server ↔ worker frames: round trips, out-of-band arrays, partial reads, undecodable replies."""

from __future__ import annotations

import io
import os
import pickle
import threading
from typing import Any

import numpy as np
import pytest

from nbserve._runtime.execution.invoke import Signature
from nbserve._runtime.execution.workers import transport
from nbserve._runtime.execution.workers.transport import (
    CallMsg,
    CancelMsg,
    CreditMsg,
    FrameReader,
    InitMsg,
    StopMsg,
    ToWorker,
    encode,
    read_message,
    write_message,
)


def test_round_trip_over_a_pipe_with_arrays_out_of_band() -> None:
    r, w = os.pipe()
    try:
        big = np.arange(100_000, dtype=np.float32).reshape(1000, 100)
        message = {
            "kind": "call",
            "id": 7,
            "api": "embed",
            "kwargs": {"x": big, "small": np.ones(3)},
            "ctx": None,
        }
        frames = encode(message)
        assert len(frames) == 2  # the header + payload, and the big array's buffer by itself
        writer = threading.Thread(target=write_message, args=(w, message, threading.Lock()))
        writer.start()
        stream = os.fdopen(r, "rb", closefd=False)
        got = read_message(stream)
        writer.join()
        assert got is not None
        np.testing.assert_array_equal(got["kwargs"]["x"], big)
        np.testing.assert_array_equal(got["kwargs"]["small"], np.ones(3))
        assert got["kwargs"]["x"].flags.writeable  # user code may normalise in place
        os.close(w)
        w = -1
        assert read_message(stream) is None  # EOF: the other side is gone
        stream.close()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_frame_reader_handles_any_split_of_the_stream() -> None:
    messages: list[Any] = [
        {"kind": "result", "id": 1, "value": np.arange(5000.0), "response": None},
        {"kind": "ready", "pid": 42},
        {"kind": "item", "id": 2, "value": "x" * 10, "response": None},
    ]
    stream = b"".join(bytes(piece) for m in messages for piece in encode(m))
    for step in (1, 7, 4096, len(stream)):
        got: list[Any] = []
        reader = FrameReader(got.append)
        for at in range(0, len(stream), step):
            reader.feed(stream[at : at + step])
        assert [m["kind"] for m in got] == ["result", "ready", "item"]
        np.testing.assert_array_equal(got[0]["value"], np.arange(5000.0))
        assert got[0]["value"].flags.writeable


def test_a_reply_that_cannot_be_unpickled_fails_its_own_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames = encode({"kind": "result", "id": 9, "value": 1, "response": None})

    def broken(payload: bytes, buffers: list[bytearray]) -> Any:
        raise pickle.UnpicklingError("Can't get attribute 'Thing'")

    monkeypatch.setattr(transport, "_decode", broken)
    got: list[Any] = []
    FrameReader(got.append).feed(b"".join(bytes(f) for f in frames))
    assert got[0]["kind"] == "error"
    assert got[0]["id"] == 9
    assert "could not be unpickled in the server process" in got[0]["message"]


def test_classes_defined_in_main_cross_by_value() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("class Point:\n    def __init__(self, x):\n        self.x = x\n", namespace)
    point = namespace["Point"](3)
    got: list[Any] = []
    FrameReader(got.append).feed(
        b"".join(
            bytes(f) for f in encode({"kind": "item", "id": 1, "value": point, "response": None})
        )
    )
    assert got[0]["value"].x == 3


def test_every_server_message_kind_reaches_the_worker_intact() -> None:
    """The `ToWorker` union, `Signature`s included (the worker calls APIs through them)."""
    messages: list[ToWorker] = [
        InitMsg(
            kind="init",
            service=b"class",
            apis={"predict": Signature("predict", False, True, "ctx", None)},
            startup=["warm"],
            shutdown=[],
            sys_path=["/src"],
            worker=1,
            threads=2,
            name="svc",
        ),
        CallMsg(kind="call", id=1, api="predict", kwargs={"x": [1, 2]}, ctx=None),
        CreditMsg(kind="credit", id=1, count=4),
        CancelMsg(kind="cancel", id=1),
        StopMsg(kind="stop", timeout=1.5),
    ]
    stream = io.BytesIO(b"".join(bytes(piece) for m in messages for piece in encode(m)))
    assert [read_message(stream) for _ in messages] == messages
    assert read_message(stream) is None
