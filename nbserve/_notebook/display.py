"""What a served service looks like in a notebook: one output per service, updated in place.

`ServiceStatus` is a snapshot with two forms:
- `text/plain`, deterministic: `nbserve service 'Echo': running, inline, routes /shout /stats`.
  No port, URL, time or pid, so a notebook run twice gives the same text and nbval can compare
  it (jupyter.md §8, §11.2); GitHub, nbconvert and terminals show this form.
- `text/html`: the browser-facing URL as a link, mode, state, version, and per-route request
  counts, error rate and p50/p95/p99 latency.

While worker processes start, `%%serve` shows a `StartProgress` (each worker: started, loading,
ready, with its CPU threads) under a display id of its own and updates it in place from the
cell's thread as the workers get on; once the service runs, that output is emptied and the
status takes over (its HTML lists the workers). Nothing of it is in the `text/plain` status,
which must not depend on timing.

Each service owns one display id. `%%serve` shows the status under that id; a swap, rollback,
stop or `%serve status` re-renders every output with the id (`update_display_data`), so the
cell that started the service always shows its current state. Updates are only ever sent from
the thread running the user's code (a magic or a `nbserve.*` call), never from server threads,
whose output ipykernel 7 would attach to whatever cell runs next (jupyter.md §0.2).
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbserve._kernel import in_kernel

__all__ = [
    "ProgressDisplay",
    "ServiceList",
    "ServiceStatus",
    "StartProgress",
    "WorkerLine",
    "show",
    "update",
    "worker_lines",
]

MimeBundle = dict[str, str]

_STATE_COLOURS = {
    "running": "#1a7f37",
    "starting": "#9a6700",
    "stopping": "#9a6700",
    "stopped": "#57606a",
    "failed": "#cf222e",
}


@dataclass(frozen=True)
class RouteLine:
    """One route's numbers as shown: counts and latency percentiles in milliseconds."""

    route: str
    count: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0


@dataclass(frozen=True)
class WorkerLine:
    """One worker process as shown: its index, phase (started / loading / ready / ...), CPU threads."""

    index: int
    phase: str
    cpu_threads: int | None = None
    restarts: int = 0
    error: str | None = None

    def text(self) -> str:
        threads = f" ({self.cpu_threads} CPU thread{'s' if self.cpu_threads != 1 else ''})"
        return f"worker {self.index} {self.phase}" + (threads if self.cpu_threads else "")


def worker_lines(workers: Sequence[Mapping[str, Any]]) -> list[WorkerLine]:
    """`ServiceHandle.workers()` as `WorkerLine`s."""
    return [
        WorkerLine(
            index=int(w.get("index", i)),
            phase=str(w.get("phase") or w.get("state") or "?"),
            cpu_threads=w.get("cpu_threads") if isinstance(w.get("cpu_threads"), int) else None,
            restarts=int(w.get("restarts", 0) or 0),
            error=str(w["error"]) if w.get("error") else None,
        )
        for i, w in enumerate(workers)
    ]


_PHASE_COLOURS = {"ready": "#1a7f37", "failed": "#cf222e", "restarting": "#cf222e"}


def _workers_html(workers: Sequence[WorkerLine]) -> str:
    e = html.escape
    items = []
    for w in workers:
        colour = _PHASE_COLOURS.get(w.phase, "#9a6700")
        threads = (
            f" · {w.cpu_threads} CPU thread{'s' if w.cpu_threads != 1 else ''}"
            if w.cpu_threads
            else ""
        )
        restarts = f" · {w.restarts} restart{'s' if w.restarts != 1 else ''}" if w.restarts else ""
        error = f' <span style="opacity:.7">{e(w.error)}</span>' if w.error else ""
        items.append(
            f'<li>worker {w.index}: <span style="color:{colour};font-weight:600">{e(w.phase)}</span>'
            f"{threads}{restarts}{error}</li>"
        )
    return f'<ul class="nbserve-workers" style="margin:2px 0">{"".join(items)}</ul>'


@dataclass(frozen=True)
class StartProgress:
    """Worker processes starting: one line per worker, updated in place by `ProgressDisplay`."""

    name: str
    workers: Sequence[WorkerLine]

    def text(self) -> str:
        ready = sum(1 for w in self.workers if w.phase == "ready")
        lines = "; ".join(w.text() for w in self.workers)
        return f"nbserve service {self.name!r}: starting {len(self.workers)} workers ({ready} ready): {lines}"

    def html(self) -> str:
        return (
            f'<div class="nbserve-progress"><b>nbserve</b> service <code>{html.escape(self.name)}</code>: '
            f"starting {len(self.workers)} workers{_workers_html(self.workers)}</div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MimeBundle:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


class _Cleared:
    """An empty output: what a finished progress display becomes."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MimeBundle:
        return {"text/plain": "", "text/html": ""}


class ProgressDisplay:
    """`%%serve`'s start progress: shown on the first report, updated in place, emptied at the end.

    Called from the cell's own thread (the registry's wait loop), never from a server thread.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.display_id = f"nbserve-progress-{uuid.uuid4().hex}"
        self.shown = False
        self.updates = 0

    def __call__(self, workers: list[dict[str, Any]]) -> None:
        progress = StartProgress(self.name, worker_lines(workers))
        if not self.shown:
            show(progress, self.display_id)
            self.shown = True
        else:
            update(progress, self.display_id)
        self.updates += 1

    def close(self) -> None:
        if self.shown:
            update(_Cleared(), self.display_id)


@dataclass(frozen=True)
class ServiceStatus:
    """A snapshot of one service for display; build it with `LiveService.status()`."""

    name: str
    state: str
    mode: str
    routes: Sequence[str]
    url: str = ""
    local_url: str = ""
    version: int = 1
    token_required: bool = False
    stats: Sequence[RouteLine] = field(default_factory=tuple)
    workers: Sequence[WorkerLine] = field(default_factory=tuple)
    """Worker processes (HTML only: their phases depend on timing, the text must not)."""

    def text(self) -> str:
        routes = " ".join(self.routes) if self.routes else "(none)"
        return f"nbserve service {self.name!r}: {self.state}, {self.mode}, routes {routes}"

    def html(self) -> str:
        e = html.escape
        colour = _STATE_COLOURS.get(self.state, "#57606a")
        link = ""
        if self.url and self.state in ("running", "starting"):
            link = f' at <a href="{e(self.url)}" target="_blank" rel="noopener"><code>{e(self.url)}</code></a>'
            if self.local_url and self.local_url.rstrip("/") != self.url.rstrip("/"):
                link += f' <span style="opacity:.7">(in the kernel: <code>{e(self.local_url)}</code>)</span>'
        token = " · bearer token required" if self.token_required else ""
        head = (
            f'<div class="nbserve-status"><b>nbserve</b> service <code>{e(self.name)}</code>{link}<br>'
            f'<span style="color:{colour};font-weight:600">{e(self.state)}</span> · {e(self.mode)}'
            f" · version {self.version}{token}</div>"
        )
        if self.workers and self.state in ("running", "starting"):
            head += _workers_html(self.workers)
        rows = "".join(_html_row(self._stats_for(route)) for route in self.routes)
        table = (
            '<table class="nbserve-routes" style="margin-top:4px"><thead><tr>'
            "<th>route</th><th>requests</th><th>errors</th><th>p50</th><th>p95</th><th>p99</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
        return head + (table if self.routes else "")

    def _stats_for(self, route: str) -> RouteLine:
        return next((s for s in self.stats if s.route == route), RouteLine(route))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MimeBundle:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"


def _html_row(s: RouteLine) -> str:
    errors = f"{s.errors} ({s.error_rate:.0%})" if s.errors else "0"
    # No request yet: no latency to show (the runtime reports 0.0 for an empty window).
    p50, p95, p99 = (_ms(v) if s.count else "–" for v in (s.p50_ms, s.p95_ms, s.p99_ms))
    return (
        f"<tr><td><code>{html.escape(s.route)}</code></td><td>{s.count}</td><td>{errors}</td>"
        f"<td>{p50}</td><td>{p95}</td><td>{p99}</td></tr>"
    )


@dataclass(frozen=True)
class ServiceList:
    """`%serve list`: one line (text) or one table row (HTML) per service."""

    services: Sequence[ServiceStatus]

    def text(self) -> str:
        if not self.services:
            return "no nbserve services in this kernel"
        return "\n".join(s.text() for s in self.services)

    def html(self) -> str:
        if not self.services:
            return "<i>no nbserve services in this kernel</i>"
        e = html.escape
        rows = "".join(
            f"<tr><td><code>{e(s.name)}</code></td><td>{e(s.state)}</td><td>{e(s.mode)}</td>"
            f"<td>{s.version}</td><td><a href='{e(s.url)}' target='_blank' rel='noopener'>{e(s.url)}</a></td>"
            f"<td>{e(' '.join(s.routes))}</td></tr>"
            for s in self.services
        )
        return (
            "<table class='nbserve-list'><thead><tr><th>service</th><th>state</th><th>mode</th>"
            f"<th>version</th><th>URL</th><th>routes</th></tr></thead><tbody>{rows}</tbody></table>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MimeBundle:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def route_lines(stats: Mapping[str, Mapping[str, Any]]) -> list[RouteLine]:
    """`handle.stats()` (route → {count, errors, p50_ms, p95_ms, p99_ms}) as `RouteLine`."""
    out = []
    for route, numbers in stats.items():
        out.append(
            RouteLine(
                route=route,
                count=int(numbers.get("count", 0) or 0),
                errors=int(numbers.get("errors", 0) or 0),
                p50_ms=_number(numbers.get("p50_ms")),
                p95_ms=_number(numbers.get("p95_ms")),
                p99_ms=_number(numbers.get("p99_ms")),
            )
        )
    return out


def show(
    status: ServiceStatus | ServiceList | StartProgress, display_id: str | None = None
) -> None:
    """Display `status` in the current cell (under `display_id`, so later updates reach it)."""
    from IPython import display as ipy_display

    show_: Any = ipy_display.display  # untyped in IPython
    show_(status, display_id=display_id)


def update(status: ServiceStatus | StartProgress | _Cleared, display_id: str) -> None:
    """Re-render every output shown under `display_id`, wherever its cell is (kernels only).

    A terminal shell has no outputs to update and would print the status again instead.
    """
    from IPython import display as ipy_display

    if not in_kernel():
        return
    update_: Any = ipy_display.update_display  # untyped in IPython
    update_(status, display_id=display_id)
