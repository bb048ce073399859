"""The services kernels advertise, read from their discovery files and checked live.

A kernel writes `{runtime dir}/nbserve/<kernel-id>-<name>.json` for each service it serves
(`nbserve/_notebook/discovery.py`) and removes it on stop. A kernel that died (killed, crashed,
out of memory) leaves its files behind, so every read checks each one: the kernel pid must be
alive and the service's port must answer its admin status route. A file whose pid is gone, or
whose port refuses connections, is stale and removed; one whose service is slow to answer stays
and is listed as `unresponsive` (a kernel holding the GIL in a tight loop can be slow).

Two kernels may serve the same name; the one started last owns `nbserve/services/<name>/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tornado.httpclient

from nbserve._notebook.urls import local_url
from nbserve._runtime.http.admin import ADMIN_HEADER, ADMIN_PREFIX

__all__ = ["ServiceRecord", "admin_request", "find", "live_services", "read_records"]

SCHEMA_VERSION = 2
_MARKER_PREFIX = "server-"  # the extension's own `server-<pid>.json` markers (extension.py)


@dataclass
class ServiceRecord:
    """One discovery file and what its service said about itself."""

    path: Path
    record: dict[str, Any]
    status: dict[str, Any] | None = None
    state: str = "unknown"
    notebook: str | None = None
    shadowed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.record["name"])

    @property
    def base(self) -> str:
        """`http://host:port`, the service's server root (loopback for a wildcard bind)."""
        return local_url(str(self.record["host"]), int(self.record["port"]))

    @property
    def token(self) -> str | None:
        token = self.record.get("token")
        return token if isinstance(token, str) and token else None

    def describe(self, base_url: str) -> dict[str, Any]:
        """What the Services API shows: never the token or the admin secret."""
        record, status = self.record, self.status or {}
        routes = status.get("routes", record.get("routes", []))
        workers = status.get("workers")
        mode = record.get("mode") or ("inline" if not workers else f"{workers} workers")
        proxy = f"{base_url}nbserve/services/{self.name}/"
        return {
            "name": self.name,
            "state": status.get("state", self.state),
            "kernel_id": record.get("kernel_id"),
            "notebook": self.notebook or record.get("notebook"),
            "pid": record.get("pid"),
            "mode": mode,
            "workers": workers if isinstance(workers, int) else None,
            "routes": routes,
            "stats": status.get("stats", {}),
            "version": record.get("version"),
            "started": record.get("started"),
            "token_required": self.token is not None,
            "url": proxy,
            "shadowed": self.shadowed,
        }


def read_records(directory: Path) -> list[ServiceRecord]:
    """Every well-formed discovery file of the current schema in `directory`."""
    records = []
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:  # no runtime dir yet: no services
        return []
    for path in paths:
        if path.name.startswith((".", _MARKER_PREFIX)):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # removed meanwhile, or not ours
            continue
        if (
            isinstance(record, dict)
            and record.get("schema_version") == SCHEMA_VERSION
            and isinstance(record.get("name"), str)
            and isinstance(record.get("port"), int)
            and isinstance(record.get("pid"), int)
            and isinstance(record.get("admin_secret"), str)
        ):
            records.append(ServiceRecord(path, record))
    return records


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: an existence check, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's: not ours to judge
        return True
    return True


def _client() -> tornado.httpclient.AsyncHTTPClient:
    return tornado.httpclient.AsyncHTTPClient()


async def admin_request(
    service: ServiceRecord, route: str, *, method: str = "GET", timeout: float = 5.0
) -> tornado.httpclient.HTTPResponse:
    """Call the service's admin route `route` with its secret; raises on a network failure."""
    return await _client().fetch(
        f"{service.base}{ADMIN_PREFIX}{route}",
        method=method,
        headers={ADMIN_HEADER: str(service.record["admin_secret"])},
        body=b"" if method == "POST" else None,
        connect_timeout=timeout,
        request_timeout=timeout,
        raise_error=False,
        follow_redirects=False,
    )


async def _check(service: ServiceRecord, timeout: float) -> bool:
    """Fill in `service.status`; False when the file is stale (and then removed)."""
    if not pid_alive(int(service.record["pid"])):
        _remove(service.path)
        return False
    try:
        response = await admin_request(service, "status", timeout=timeout)
    except ConnectionRefusedError:  # the kernel lives, but nothing listens there any more
        _remove(service.path)
        return False
    except (OSError, tornado.httpclient.HTTPClientError, asyncio.TimeoutError):
        service.state = "unresponsive"
        return True
    if response.code == 599:  # tornado's "no response": refused, reset or timed out
        if isinstance(response.error, ConnectionRefusedError):
            _remove(service.path)
            return False
        service.state = "unresponsive"
        return True
    if response.code == 200:
        with contextlib.suppress(ValueError):
            status = json.loads(response.body)
            if isinstance(status, dict):
                service.status = status
    return True


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def live_services(
    directory: Path, *, timeout: float, notebooks: dict[str, str] | None = None
) -> list[ServiceRecord]:
    """The live services in `directory`, stale files removed, newest last per name."""
    records = read_records(directory)
    alive = await asyncio.gather(*(_check(s, timeout) for s in records))
    services = [s for s, ok in zip(records, alive, strict=True) if ok]
    services.sort(key=lambda s: float(s.record.get("started") or 0))
    owner: dict[str, ServiceRecord] = {}
    for service in services:
        if service.name in owner:
            owner[service.name].shadowed = True
        owner[service.name] = service
        kernel = service.record.get("kernel_id")
        if notebooks and isinstance(kernel, str):
            service.notebook = notebooks.get(kernel)
    return services


def find(directory: Path, name: str) -> ServiceRecord | None:
    """The discovery record that owns `name` (the newest one), without a liveness check."""
    matches = [
        s for s in read_records(directory) if s.name == name and pid_alive(int(s.record["pid"]))
    ]
    if not matches:
        return None
    return max(matches, key=lambda s: float(s.record.get("started") or 0))
