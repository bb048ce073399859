"""The admin routes a Jupyter server extension uses to watch and stop a kernel's service.

| route | answer |
|---|---|
| `GET /_nbserve/admin/status` | `{"name", "state", "workers", "routes", "stats"}` |
| `GET /_nbserve/admin/logs?n=200` | `{"lines": [...]}`, the service's last log records |
| `POST /_nbserve/admin/stop` | 202 `{"stopping": true}`; the service then stops as `%serve stop` would |

They exist only when the server was started with an `admin_secret` (the notebook registry makes
one per service and writes it to the discovery file, mode 0600, and nowhere else), and answer only
to `X-Nbserve-Admin: <secret>`. They sit outside the service's `path_prefix` so no API route can
shadow them. Stopping goes through the service's own server, never through a signal to the
kernel: the kernel and its other services keep running, and the notebook's registry (through
`on_admin_stop`) forgets the service and refreshes its status output.
"""

from __future__ import annotations

import hmac
import threading

import orjson

from nbserve._runtime.http.errors import BaseHandler

__all__ = ["ADMIN_HEADER", "ADMIN_PREFIX", "admin_handler"]

ADMIN_PREFIX = "/_nbserve/admin/"
ADMIN_HEADER = "X-Nbserve-Admin"


class _AdminHandler(BaseHandler):
    PUBLIC = True  # the bearer token is not asked for: the admin secret is, below

    def prepare(self) -> None:
        secret = self.server.admin_secret
        presented = self.request.headers.get(ADMIN_HEADER, "")
        if secret is None or not hmac.compare_digest(presented.encode(), secret.encode()):
            self.reply_error(
                403,
                f"Missing or wrong {ADMIN_HEADER} header; the admin routes answer only the Jupyter server extension, which reads the secret from the service's discovery file",
            )

    def _json(self, value: object, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(orjson.dumps(value))


class StatusHandler(_AdminHandler):
    async def get(self) -> None:
        server = self.server
        workers = server.workers
        if workers is None:
            workers = server.service.config.worker_count
        self._json(
            {
                "name": server.name,
                "state": server.state,
                "workers": workers or 0,
                "routes": server.routes,
                "stats": server.deployment.stats_summary(),
            }
        )


class LogsHandler(_AdminHandler):
    async def get(self) -> None:
        raw = self.get_query_argument("n", "200")
        if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
            self.reply_error(400, f"n={raw!r} must be a whole number of lines from 1 to 10000")
            return
        self._json({"name": self.server.name, "lines": self.server.log.tail(int(raw))})


class StopHandler(_AdminHandler):
    ALLOW = "POST"

    async def post(self) -> None:
        server = self.server
        self._json({"name": server.name, "stopping": True}, status=202)
        callback = server.on_admin_stop
        if callback is None:
            server.request_stop()  # on this loop: begins the graceful stop after this reply
        else:
            # The notebook's registry waits for the server's loop to finish stopping, so it
            # cannot run on that loop: a short-lived thread of its own.
            threading.Thread(target=callback, name=f"nbserve-stop-{server.name}").start()


_ROUTES: dict[str, type[_AdminHandler]] = {
    ADMIN_PREFIX + "status": StatusHandler,
    ADMIN_PREFIX + "logs": LogsHandler,
    ADMIN_PREFIX + "stop": StopHandler,
}


def admin_handler(path: str) -> type[BaseHandler] | None:
    """The admin handler for `path`, or None when it is not an admin route."""
    return _ROUTES.get(path)
