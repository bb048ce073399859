"""Logs of `nbserve serve`: one line per event, as text or JSON, on stderr or stdout.

A container's log collector (Docker, kubelet, Fluent Bit) splits its input on newlines, so an
event that spans lines (a traceback) becomes several unrelated records. Every event here is one
line: text puts a traceback's lines on that line joined by ` | `, JSON escapes them. The image
sets `NBSERVE_LOGS=stdout` (where a container's logs are expected); `--log-format json` (or
`NBSERVE_LOG_FORMAT=json`) gives one JSON object per line with `time`, `level`, `logger`,
`message` and, for failures, `error`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal, TextIO

__all__ = ["LogSetup", "configure"]

Format = Literal["text", "json"]


def _one_line(text: str) -> str:
    return " | ".join(part for part in text.splitlines() if part.strip())


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("nbserve %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


def _timestamp(created: float) -> str:
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


class LogSetup:
    """Where and how `nbserve serve` writes; also writes its own events (ready, failed)."""

    def __init__(self, log_format: Format, stream: TextIO) -> None:
        self.format = log_format
        self.stream = stream

    def event(self, level: str, message: str, **fields: Any) -> None:
        """One line: the text as it is, or a JSON object with `fields` beside the message."""
        if self.format == "json":
            line = json.dumps(
                {
                    "time": _timestamp(time.time()),
                    "level": level,
                    "logger": "nbserve",
                    "message": message,
                    **fields,
                },
                ensure_ascii=False,
                default=str,
            )
        else:
            line = _one_line(message)
        print(line, file=self.stream, flush=True)


def configure(verbose: int, log_format: Format, where: Literal["stderr", "stdout"]) -> LogSetup:
    """Attach one handler to the `nbserve` logger: WARNING, -v INFO, -vv DEBUG (access lines)."""
    stream = sys.stdout if where == "stdout" else sys.stderr
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.setLevel(level)
    logger = logging.getLogger("nbserve")
    logger.addHandler(handler)
    if verbose >= 1:
        logger.setLevel(level)
    if verbose >= 2:
        logging.getLogger("nbserve.service").setLevel(logging.DEBUG)
    return LogSetup(log_format, stream)
