"""`with nbserve.monitor("name") as mon: mon.log(...)`: BentoML's model-monitoring records.

Each `with` block is one record: the values logged in it, each with its name, role
(`feature`, `prediction`, `target`, ...) and data type (`numerical`, `categorical`, `text`).
As BentoML's default monitor does, records are appended as JSON lines to
`monitoring/<name>/data/data.<pid>.log` (one file per process, so workers never interleave)
next to a `schema.json` of the fields, under `$NBSERVE_MONITORING_DIR` (default: the
working directory's `monitoring/`). Every record also goes to the `nbserve.monitoring.<name>`
logger, for shipping elsewhere with ordinary logging handlers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nbserve.exceptions import InvalidArgument

__all__ = ["Monitor", "monitor"]

ROLES = ("feature", "prediction", "target")
DATA_TYPES = ("numerical", "categorical", "numerical_sequence", "embedding", "text")
_LOCK = threading.Lock()


def _plain(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    return tolist() if callable(tolist) else value


class Monitor:
    """What one `with nbserve.monitor(name)` block logs; written when the block ends."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.columns: dict[str, dict[str, str]] = {}
        self.values: dict[str, list[Any]] = {}

    def log(self, data: Any, name: str, role: str, data_type: str) -> None:
        """Log one value of field `name` for this record."""
        self.log_batch([data], name, role, data_type)

    def log_batch(self, data_batch: Sequence[Any], name: str, role: str, data_type: str) -> None:
        """Log several values of field `name` (one per row of a batched record)."""
        if data_type not in DATA_TYPES:
            msg = f"monitor {self.name!r}: data_type={data_type!r} for {name!r}; use one of {', '.join(DATA_TYPES)}"
            raise InvalidArgument(msg)
        if not isinstance(role, str) or not role:
            msg = f"monitor {self.name!r}: role={role!r} for {name!r}; use e.g. {', '.join(ROLES)}"
            raise InvalidArgument(msg)
        self.columns[name] = {"name": name, "role": role, "type": data_type}
        self.values.setdefault(name, []).extend(_plain(v) for v in _plain(data_batch))

    def log_table(self, data: Sequence[Sequence[Any]], schema: Sequence[dict[str, str]]) -> None:
        """Log rows whose columns `schema` describes (`name`, `role`, `type` each)."""
        for index, column in enumerate(schema):
            self.log_batch(
                [row[index] for row in data], column["name"], column["role"], column["type"]
            )

    def rows(self) -> list[dict[str, Any]]:
        count = max((len(v) for v in self.values.values()), default=0)
        stamp = time.time()
        return [
            {
                "timestamp": stamp,
                **{k: (v[i] if i < len(v) else None) for k, v in self.values.items()},
            }
            for i in range(count)
        ]

    def flush(self) -> None:
        rows = self.rows()
        if not rows:
            return
        data = self.directory / self.name / "data"
        with _LOCK:
            data.mkdir(parents=True, exist_ok=True)
            schema = {
                "meta_data": {"bento_name": self.name},
                "columns": list(self.columns.values()),
            }
            (self.directory / self.name / "schema.json").write_text(json.dumps(schema, indent=2))
            with open(data / f"data.{os.getpid()}.log", "a", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps(row, default=str) + "\n")
        log = logging.getLogger(f"nbserve.monitoring.{self.name}")
        for row in rows:
            log.info("%s", json.dumps(row, default=str))


@contextlib.contextmanager
def monitor(
    name: str, monitor_class: Any = None, monitor_options: dict[str, Any] | None = None
) -> Iterator[Monitor]:
    """One monitoring record named `name`; BentoML's `monitor_class` other than the default
    (e.g. "otlp") is not supported and says so."""
    if monitor_class not in (None, "default"):
        msg = f"monitor({name!r}, monitor_class={monitor_class!r}): nbserve writes BentoML's default (JSON lines) monitor only; attach a logging handler to 'nbserve.monitoring.{name}' to ship records elsewhere"
        raise InvalidArgument(msg)
    options = monitor_options or {}
    root = Path(options.get("log_path") or os.environ.get("NBSERVE_MONITORING_DIR") or "monitoring")
    mon = Monitor(name, root)
    yield mon
    mon.flush()
