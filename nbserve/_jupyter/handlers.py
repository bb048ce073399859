"""The Services API: list every kernel's live services, read one's logs, stop one.

All `APIHandler`s (JSON errors, a 403 instead of a login redirect, origin checks) with every verb
`@tornado.web.authenticated`; Jupyter's XSRF check stays on for cookie-authenticated POSTs.
The list is what the Services panel polls, so it does not count as user activity (JupyterHub and
Binder cull idle servers; an open panel alone must not keep one alive). Names in the routes are
the names in the list; `services.find` resolves a name shared by two kernels to the newest one.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import tornado.web
from jupyter_server.base.handlers import APIHandler

from nbserve._jupyter import services

if TYPE_CHECKING:
    from pathlib import Path

    from nbserve._jupyter.config import NbServe

__all__ = ["ServiceLogsHandler", "ServiceStopHandler", "ServicesHandler"]


class _Base(APIHandler):
    nbserve: NbServe
    directory: Path

    def initialize(self, nbserve: NbServe, directory: Path) -> None:
        self.nbserve = nbserve
        self.directory = directory

    def reply(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(value))

    def owned(self, name: str) -> services.ServiceRecord:
        service = services.find(self.directory, name)
        if service is None:
            raise tornado.web.HTTPError(
                404,
                f"no live nbserve service named {name!r}; GET nbserve/api/services lists the ones there are",
            )
        return service

    def _notebooks(self) -> dict[str, str]:
        """kernel id → notebook path, from this server's sessions."""
        manager = self.settings.get("session_manager")
        out: dict[str, str] = {}
        if manager is None:
            return out
        for kernel_id, path in _session_paths(manager):
            out[kernel_id] = path
        return out


def _session_paths(manager: Any) -> list[tuple[str, str]]:
    # SessionManager keeps sessions in a small sqlite table; reading it directly avoids its
    # async list_sessions(), which also asks every kernel's model.
    try:
        rows = manager.cursor.execute("SELECT kernel_id, path FROM session").fetchall()
    except Exception:  # another session manager implementation: show kernel ids only
        return []
    return [(str(k), str(p)) for k, p in rows if k and p]


class ServicesHandler(_Base):
    _track_activity = False  # polled by the panel; see the module doc

    @tornado.web.authenticated
    async def get(self) -> None:
        found = await services.live_services(
            self.directory, timeout=self.nbserve.check_timeout, notebooks=self._notebooks()
        )
        base_url = self.base_url
        self.reply({"services": [s.describe(base_url) for s in found]})


class ServiceLogsHandler(_Base):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        raw = self.get_query_argument("n", "200")
        if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
            raise tornado.web.HTTPError(
                400, f"n={raw!r} must be a whole number of lines from 1 to 10000"
            )
        service = self.owned(name)
        response = await services.admin_request(
            service, f"logs?n={raw}", timeout=self.nbserve.connect_timeout
        )
        if response.code != 200:
            raise tornado.web.HTTPError(
                502, f"service {name!r} did not return its logs (HTTP {response.code})"
            )
        self.reply(json.loads(response.body))


class ServiceStopHandler(_Base):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        service = self.owned(name)
        try:
            response = await services.admin_request(
                service, "stop", method="POST", timeout=self.nbserve.connect_timeout
            )
        except OSError as exc:  # stopped or gone between the lookup and now
            raise tornado.web.HTTPError(
                502, f"service {name!r} did not answer its stop route: {exc}"
            ) from exc
        if response.code != 202:
            raise tornado.web.HTTPError(
                502, f"service {name!r} refused to stop (HTTP {response.code})"
            )
        # The notebook's registry stops it (in-flight requests finish, on_shutdown runs) and
        # removes the discovery file; answer once the port is free, so "stopped" means it.
        deadline = time.monotonic() + self.nbserve.stop_timeout
        while time.monotonic() < deadline:
            if not service.path.exists() and not await _port_open(service):
                self.reply({"name": name, "stopped": True})
                return
            await asyncio.sleep(0.05)
        raise tornado.web.HTTPError(
            504,
            f"service {name!r} was asked to stop but still runs after {self.nbserve.stop_timeout:g} s; "
            "raise c.NbServe.stop_timeout or stop it from its notebook",
        )


async def _port_open(service: services.ServiceRecord) -> bool:
    host, port = str(service.record["host"]), int(service.record["port"])
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True
