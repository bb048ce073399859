"""`load_test()` / `%serve loadtest`: real HTTP load from a separate process, then a report.

The requests come from `loadgen.py` in a subprocess (see there why); this side picks the
bodies (the tester's example for the route, or the user's `body` / `bodies`), shows a progress
bar while it runs, and returns a pandas DataFrame with one row per request: `start_s` (since
the test began), `latency_ms`, `status` (0: no answer), `bytes`, `error`.

In a notebook it also shows a summary table (requests/s, p50/p95/p99, errors by status) and
three plots drawn with matplotlib (latency over time, latency histogram, throughput), as an
SVG output, so a saved notebook keeps them where no widget renders (GitHub, nbconvert).
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbserve._kernel import in_kernel
from nbserve._notebook.tester.examples import example_body
from nbserve._notebook.tester.plots import load_test_svg
from nbserve._notebook.tester.target import Target, as_target

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LoadTestReport", "load_test", "summarize"]

COLUMNS = ["start_s", "latency_ms", "status", "bytes", "error"]


def _route_schema(target: Target, route: str | None) -> dict[str, Any]:
    routes = [r for r in target.schema().get("routes", []) if not r.get("is_task")]
    if not routes:
        msg = f"{target.name!r} has no API to load-test"
        raise ValueError(msg)
    if route is None:
        if len(routes) == 1:
            return dict(routes[0])
        names = ", ".join(r["route"] for r in routes)
        msg = f"{target.name!r} has several APIs ({names}): pick one with route=, e.g. route={routes[0]['route']!r}"
        raise ValueError(msg)
    wanted = route.rstrip("/") or "/"
    if target.prefix and wanted.startswith(target.prefix + "/"):
        wanted = wanted[len(target.prefix) :]
    for r in routes:
        if wanted in (r["route"], "/" + r["name"], r["name"]):
            return dict(r)
    names = ", ".join(r["route"] for r in routes)
    msg = f"{target.name!r} has no API at {route!r}; its routes: {names}"
    raise ValueError(msg)


def _encode(route: dict[str, Any], body: Any) -> dict[str, str]:
    """One body as the generator sends it: raw text for a text root input, else JSON."""
    schema = route.get("input") or {}
    if schema.get("root_input") and schema.get("type") == "string" and isinstance(body, str):
        return {"content_type": "text/plain; charset=utf-8", "body": body}
    if isinstance(body, bytes | bytearray):
        return {"content_type": "application/json", "body": bytes(body).decode()}
    return {"content_type": "application/json", "body": json.dumps(body)}


def _progress(total: float, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import auto  # tqdm ships no stubs (ignored in pyproject)

    return auto.tqdm(
        total=round(total, 1), unit="s", desc="load test", bar_format="{l_bar}{bar}| {postfix}"
    )


def load_test(
    service: Any,
    route: str | None = None,
    *,
    concurrency: int = 16,
    duration: float = 10.0,
    requests: int | None = None,
    body: Any = None,
    bodies: Sequence[Any] | None = None,
    progress: bool = True,
    show: bool = True,
) -> pd.DataFrame:
    """Send `concurrency` parallel streams of requests to `route` for `duration` seconds (or
    `requests` in all, whichever ends first) and return one DataFrame row per request.

    Bodies: `bodies` (sent in turn), else `body`, else the tester's example for the route.
    `show` displays the summary and plots in a notebook; `progress` the progress bar.
    """
    import pandas as pd

    if concurrency < 1:
        msg = f"concurrency={concurrency!r}: use 1 or more parallel clients"
        raise ValueError(msg)
    if not duration > 0:
        msg = f"duration={duration!r}: use a number of seconds > 0"
        raise ValueError(msg)
    target = as_target(service)
    spec = _route_schema(target, route)
    chosen = list(bodies) if bodies is not None else [body] if body is not None else []
    if not chosen:
        chosen = [example_body(spec)]
    path = spec["route"]  # relative to target.url, which holds the path prefix
    with tempfile.TemporaryDirectory(prefix="nbserve-loadtest-") as tmp:
        out = Path(tmp) / "samples.json"
        config = {
            "url": target.url,
            "token": target.token,
            "concurrency": concurrency,
            "duration": duration,
            "requests": requests,
            "bodies": [{"path": path, **_encode(spec, b)} for b in chosen],
            "out": str(out),
        }
        bar = _progress(duration, progress)
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbserve._notebook.tester.loadgen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(config))
        proc.stdin.close()
        try:
            for line in proc.stdout:
                if bar is not None:
                    tick = json.loads(line)
                    bar.n = round(min(tick["elapsed"], duration), 1)
                    bar.set_postfix_str(f"{tick['done']} requests", refresh=True)
            stderr = proc.stderr.read() if proc.stderr else ""
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()
            if bar is not None:
                bar.close()
        if code != 0:
            msg = f"the load generator failed (exit {code}): {stderr.strip()[-2000:]}"
            raise RuntimeError(msg)
        rows = json.loads(out.read_text())["samples"]
    frame = pd.DataFrame(rows, columns=COLUMNS).sort_values("start_s", ignore_index=True)
    frame["status"] = frame["status"].astype(int)
    frame["bytes"] = frame["bytes"].astype(int)
    summary = summarize(frame, concurrency=concurrency, route=target.prefix + path)
    frame.attrs["summary"] = summary
    if show and in_kernel():
        from IPython import display as ipy_display

        put: Any = ipy_display.display  # untyped in IPython
        svg: Any = ipy_display.SVG
        put(LoadTestReport(summary))
        if len(frame):
            put(svg(load_test_svg(frame)))
    return frame


def summarize(frame: pd.DataFrame, *, concurrency: int, route: str) -> dict[str, Any]:
    """requests, seconds, requests/s, p50/p95/p99/max ms, errors by status."""
    n = len(frame)
    span = float((frame["start_s"] + frame["latency_ms"] / 1000).max()) if n else 0.0
    ok = frame[(frame["status"] >= 200) & (frame["status"] < 400)]
    failed = frame[(frame["status"] == 0) | (frame["status"] >= 400)]
    latency = frame["latency_ms"]
    return {
        "route": route,
        "concurrency": concurrency,
        "requests": n,
        "ok": len(ok),
        "seconds": span,
        "requests_per_s": n / span if span else 0.0,
        "p50_ms": float(latency.quantile(0.5)) if n else None,
        "p95_ms": float(latency.quantile(0.95)) if n else None,
        "p99_ms": float(latency.quantile(0.99)) if n else None,
        "max_ms": float(latency.max()) if n else None,
        "errors": {
            int(str(k)): int(v) for k, v in failed["status"].value_counts().sort_index().items()
        },
    }


@dataclass(frozen=True)
class LoadTestReport:
    """The summary table of a load test."""

    summary: dict[str, Any]

    def text(self) -> str:
        s = self.summary
        return f"nbserve load test of {s['route']}: {s['concurrency']} clients"

    def html(self) -> str:
        s = self.summary

        def ms(v: float | None) -> str:
            return "–" if v is None else f"{v:.1f} ms"

        errors = ", ".join(
            f"{'no answer' if code == 0 else code}: {count}" for code, count in s["errors"].items()
        )
        rows = [
            ("requests", f"{s['requests']} in {s['seconds']:.1f} s ({s['ok']} ok)"),
            ("throughput", f"{s['requests_per_s']:.1f} requests/s"),
            (
                "latency",
                f"p50 {ms(s['p50_ms'])} · p95 {ms(s['p95_ms'])} · p99 {ms(s['p99_ms'])} · max {ms(s['max_ms'])}",
            ),
            ("errors", errors or "none"),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        head = f"<b>nbserve load test</b> of <code>{html.escape(s['route'])}</code> with {s['concurrency']} clients"
        return f"<div class='nbserve-loadtest'>{head}<table>{body}</table></div>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()
