"""Streamed responses to items, by item and not by transport chunk.

Two framings reach a client (reference §1.6, §10 A.6):

- **SSE** (nbserve, only when the route's output schema has `"sse": true` and the client sent
  `Accept: text/event-stream`): frames of `data:` lines ended by a blank line. A frame's data is
  one item: the text itself for `type: string` outputs (several `data:` lines join with `\\n`),
  one JSON document otherwise. `event: error` carries `{"error", "detail", "error_code"}` and is
  raised. Frames may be split or coalesced anywhere by the transport.
- **Raw** (BentoML): no framing; the server writes one item per HTTP chunk. Text and bytes items
  follow the chunk boundaries httpx reports, as BentoML's own client does. JSON items are parsed
  as a sequence of documents, so `{"i": 0}{"i": 1}` arriving in one chunk still gives two items
  and a document split over two chunks still gives one.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from nbserve._client.decoding import decode_value, error_from_payload
from nbserve._client.endpoint import Endpoint
from nbserve.exceptions import NbserveError

__all__ = ["SSEParser", "StreamDecoder"]

_LINE_END = re.compile(r"\r\n|\r|\n")
_JSON = json.JSONDecoder()
_SPACE = " \t\r\n"


class SSEParser:
    """An incremental Server-Sent Events parser (WHATWG HTML §9.2.6): bytes in, events out.

    `feed` returns `(event type, data)` pairs for each frame completed so far; an unterminated
    frame at the end of the stream is dropped, as the specification says.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._started = False

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        buffer = self._buffer + text
        events: list[tuple[str, str]] = []
        pos = 0
        while (match := _LINE_END.search(buffer, pos)) is not None:
            if match.group() == "\r" and match.end() == len(buffer):
                break  # maybe the first half of a "\r\n" split across chunks
            self._line(buffer[pos : match.start()], events)
            pos = match.end()
        self._buffer = buffer[pos:]
        return events

    def _line(self, line: str, events: list[tuple[str, str]]) -> None:
        if not line:
            if self._data:
                events.append((self._event or "message", "\n".join(self._data)))
            self._data, self._event = [], ""
            return
        if line.startswith(":"):
            return  # a comment, e.g. a keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # "id" and "retry" matter to reconnecting browsers only.


class StreamDecoder:
    """Turns the chunks of one streamed response into decoded items."""

    def __init__(self, endpoint: Endpoint, headers: Mapping[str, str]) -> None:
        schema = endpoint.item_schema
        self._schema = schema
        self._kind: Literal["text", "bytes", "json"] = (
            ("bytes" if schema.get("format") == "binary" else "text")
            if schema.get("type") == "string"
            else "json"
        )
        content_type = headers.get("content-type", "")
        self._sse = (
            SSEParser() if endpoint.sse and content_type.startswith("text/event-stream") else None
        )
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, chunk: bytes) -> list[Any]:
        """The items completed by `chunk`; raises the server's error for an SSE error event."""
        if self._sse is not None:
            return [item for event in self._sse.feed(chunk) for item in self._event(*event)]
        if not chunk:
            return []
        if self._kind == "bytes":
            return [chunk]
        if self._kind == "text":
            text = self._text.decode(chunk)
            return [text] if text else []
        return self._json(chunk)

    def finish(self) -> list[Any]:
        """Items still buffered when the response ends."""
        if self._sse is not None:
            return []
        if self._kind == "text":
            text = self._text.decode(b"", final=True)
            return [text] if text else []
        if self._kind == "json" and self._pending.strip(_SPACE):
            msg = f"The stream ended inside a JSON item: {self._pending[:200]!r}; the server sent an incomplete or invalid item"
            raise NbserveError(msg)
        return []

    def _event(self, kind: str, data: str) -> list[Any]:
        if kind == "error":
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                payload = {"error": data}
            if not isinstance(payload, dict):
                payload = {"error": str(payload)}
            status = payload.get("error_code", payload.get("status", 500))
            raise error_from_payload(payload, status if isinstance(status, int) else 500)
        if kind != "message":
            return []  # an event type this client does not know: skipped, as browsers do
        if self._kind == "text":
            return [data]
        if self._kind == "bytes":
            return [data.encode()]
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            msg = f"An SSE item of a JSON stream is not JSON: {data[:200]!r}; the server framed the stream wrongly"
            raise NbserveError(msg) from None
        return [decode_value(value, self._schema)]

    def _json(self, chunk: bytes) -> list[Any]:
        if not self._pending:
            try:  # the common case: exactly one document in this chunk
                return [decode_value(orjson.loads(chunk), self._schema)]
            except orjson.JSONDecodeError:
                pass
        buffer = self._pending + self._text.decode(chunk)
        items: list[Any] = []
        pos = 0
        while True:
            while pos < len(buffer) and buffer[pos] in _SPACE:
                pos += 1
            if pos == len(buffer):
                break
            try:
                value, pos = _JSON.raw_decode(buffer, pos)
            except json.JSONDecodeError:
                break  # incomplete: wait for the next chunk
            items.append(decode_value(value, self._schema))
        self._pending = buffer[pos:]
        return items
