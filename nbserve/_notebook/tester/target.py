"""What the tester, dashboard and load test point at: a served service, however it was served.

`%%serve` gives a `LiveService` (registry entry), `nbserve.serve()` a `ServiceHandle`, and a
user may pass just the name. `Target` reads everything at call time (URL, token, schema), so a
re-run cell (swap) or a restart (new port) is followed without a new widget.
"""

from __future__ import annotations

from typing import Any

from nbserve._notebook.urls import public_url

__all__ = ["Target", "as_target"]


class Target:
    """One service as the tester sees it (see the module doc)."""

    def __init__(self, served: Any) -> None:
        self._served = served

    @property
    def name(self) -> str:
        return str(self._served.name)

    @property
    def url(self) -> str:
        """The service's URL inside the kernel (loopback), its path prefix included: every route
        (`/schema.json`, `/metrics`, the APIs) is under it."""
        return str(self._served.url).rstrip("/")

    @property
    def token(self) -> str | None:
        token = getattr(self._served, "token", None)
        return str(token) if token else None

    @property
    def service(self) -> Any:
        return self._served.service

    @property
    def prefix(self) -> str:
        prefix = str(getattr(self.service, "path_prefix", "") or "").strip("/")
        return f"/{prefix}" if prefix else ""

    @property
    def public_url(self) -> str:
        """The URL the user's browser and machine reach (JupyterHub/Binder proxy, base_url)."""
        url = getattr(self._served, "public_url", None)
        if url is None:
            url = public_url(int(self._served.port), str(self._served.host))
            url = url.rstrip("/") + self.prefix
        return str(url).rstrip("/")

    def schema(self) -> dict[str, Any]:
        """What `/schema.json` serves."""
        schema: dict[str, Any] = self.service.schema()
        return schema

    def stats(self) -> dict[str, Any]:
        try:
            return dict(self._served.stats())
        except Exception:  # a stopped server has no numbers
            return {}

    def state(self) -> str:
        return str(getattr(self._served, "state", "running"))

    def target(self) -> tuple[str, str | None]:
        """(base URL, token) for the bridge."""
        return self.url, self.token


def as_target(what: Any) -> Target:
    """A `Target` from a service name (served with `%%serve`), a `LiveService` or a handle."""
    if isinstance(what, Target):
        return what
    if isinstance(what, str):
        from nbserve._notebook.registry import REGISTRY

        return Target(REGISTRY.get(what))
    if all(hasattr(what, a) for a in ("url", "service", "stats", "name")):
        return Target(what)
    msg = f"cannot test {what!r}: pass a service name served with %%serve, nbserve.services()[NAME], or the handle nbserve.serve() returned"
    raise TypeError(msg)
