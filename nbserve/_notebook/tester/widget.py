"""`RequestTester`: the anywidget under `%%serve`: forms, answers, history, live dashboard.

The front end (`static/tester.js`, `static/tester.css`, files loaded by path, so anywidget's
HMR works while developing them and no labextension build is needed) builds one tab per API
from the schema and examples synced here, and talks to the kernel with custom messages only:

- page → kernel: `send` (a request: see `bridge.build_request`; file contents as buffers),
  `resend` (`of`: an earlier request id, files included), `watch` (the dashboard is on screen:
  renew the lease; `on: false` drops it), `refresh` (the service was swapped: new schema).
- kernel → page: the bridge's `head` / `chunk` / `done` / `failed` messages, and `stats`.

The handlers return at once (the bridge and the poller do the work on their own threads), so
a click while a long cell runs is answered in JupyterLab 4.4+ and queued harmlessly before.
The `text/plain` form names the service and its APIs only: no port, time or id, so a saved
notebook diffs and validates (nbval) the same every run.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from nbserve._notebook.tester.bridge import Bridge, Reply
from nbserve._notebook.tester.examples import field_examples
from nbserve._notebook.tester.stats import Poller
from nbserve._notebook.tester.target import Target, as_target

__all__ = ["RequestTester"]

STATIC = Path(__file__).parent / "static"
HISTORY_LENGTH = 20


class RequestTester(anywidget.AnyWidget):
    """Try a served service's APIs from the notebook; see `nbserve.tester`."""

    _esm = STATIC / "tester.js"
    _css = STATIC / "tester.css"

    service_name = traitlets.Unicode("").tag(sync=True)
    schema = traitlets.Dict().tag(sync=True)
    examples = traitlets.Dict().tag(sync=True)
    prefix = traitlets.Unicode("").tag(sync=True)
    urls = traitlets.Dict().tag(sync=True)
    token_required = traitlets.Bool(False).tag(sync=True)
    view = traitlets.Unicode("tester").tag(sync=True)
    history: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)

    def __init__(
        self, served: Any, *, view: str = "tester", reply: Reply | None = None, **kwargs: Any
    ) -> None:
        if view not in ("tester", "dashboard"):
            msg = f"view={view!r}: use 'tester' or 'dashboard'"
            raise ValueError(msg)
        super().__init__(view=view, **kwargs)
        self.target: Target = as_target(served)
        self._reply: Reply = reply or self._to_page
        self._sent: OrderedDict[str, tuple[dict[str, Any], list[bytes]]] = OrderedDict()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.bridge = Bridge(self.target.target, self._from_bridge)
        self.poller = Poller(self.target, lambda m: self._reply(m, []))
        self.refresh()
        self.on_msg(self._on_page_message)

    # --- state ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the service's schema, examples and URLs (after a swap or restart)."""
        self._service = self.target.service
        schema = self.target.schema()
        routes = [r for r in schema.get("routes", []) if not r.get("is_task")]
        with self.hold_sync():
            self.service_name = self.target.name
            self.schema = {**schema, "routes": routes}
            self.examples = {r["name"]: field_examples(r.get("input") or {}) for r in routes}
            self.prefix = self.target.prefix
            self.urls = {
                "local": self.target.url,
                "public": self.target.public_url,
            }
            self.token_required = self.target.token is not None

    # --- messages ---------------------------------------------------------------------------
    def _to_page(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self.send(content, buffers)

    def _on_page_message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if isinstance(content, dict):
            self.handle_message(content, [bytes(b) for b in buffers or []])

    def handle_message(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """One message from the page (see the module doc); returns at once."""
        kind = content.get("type")
        if kind in ("send", "resend") and self.target.service is not self._service:
            self.refresh()  # the cell was re-run (a swap): new APIs, new examples
        if kind == "send":
            self.send_request(content, buffers)
        elif kind == "resend":
            with self._lock:
                earlier = self._sent.get(str(content.get("of")))
            if earlier is None:
                self._reply(
                    {
                        "type": "failed",
                        "id": content.get("id"),
                        "message": "that request is no longer in the history",
                    },
                    [],
                )
                return
            message, old_buffers = earlier
            self.send_request({**message, "id": content.get("id")}, old_buffers)
        elif kind == "watch":
            self.poller.watch(bool(content.get("on", True)))
        elif kind == "refresh":
            self.refresh()

    def send_request(self, message: dict[str, Any], buffers: list[bytes]) -> str:
        """Send one request (the page's `send` message); returns its id at once."""
        rid = str(message.get("id") or f"k{next(self._ids)}")
        message = {**message, "id": rid}
        with self._lock:
            self._sent[rid] = (message, buffers)
            while len(self._sent) > HISTORY_LENGTH:
                self._sent.popitem(last=False)
        self.bridge.submit(message, buffers)
        return rid

    def _from_bridge(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._reply(content, buffers)
        if content.get("type") in ("head", "done", "failed"):
            self._note(content)

    def _note(self, content: dict[str, Any]) -> None:
        """Keep the history (shown by the page, re-sendable) in step with the answers."""
        rid = content.get("id")
        with self._lock:
            sent = self._sent.get(str(rid))
            if sent is None:
                return
            entries = [dict(e) for e in self.history if e.get("id") != rid]
            old: dict[str, Any] = next((e for e in self.history if e.get("id") == rid), {})
            entry = {
                **old,
                "id": rid,
                "api": sent[0].get("api", ""),
                "path": sent[0].get("path", ""),
            }
            if content["type"] == "head":
                entry["status"] = content["status"]
            elif content["type"] == "done":
                entry.update(ms=round(content["ms"], 1), size=content["size"])
            else:
                entry.update(status=0, error=content.get("message", ""))
            entries.append(entry)
            self.history = entries[-HISTORY_LENGTH:]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget; for the dashboard also an SVG of the numbers now, which a saved notebook
        keeps where no widget renders (GitHub, nbconvert). JupyterLab shows the live widget."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if self.view != "dashboard" or bundle is None:
            return bundle
        try:
            from nbserve._notebook.tester.plots import dashboard_svg
            from nbserve._notebook.tester.stats import snapshot

            svg = dashboard_svg(snapshot(self.target))
        except ImportError:  # no matplotlib: the widget alone
            return bundle
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        return {**data, "image/svg+xml": svg}, metadata

    def close(self) -> None:
        self.poller.close()
        super().close()

    def __repr__(self) -> str:
        apis = ", ".join(r["name"] for r in self.schema.get("routes", [])) or "no APIs"
        what = "dashboard" if self.view == "dashboard" else "request tester"
        return f"nbserve {what} for {self.service_name!r}: {apis}"
