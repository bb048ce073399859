"""The plots of the load test and the dashboard, drawn with matplotlib as SVG.

SVG outputs stay in a saved notebook next to (or instead of) the live widget, so GitHub,
nbconvert and a reopened notebook still show them. No pyplot: no global figure state, no GUI
backend, nothing left open in the kernel; a fixed hash salt and no date make the same numbers
draw the same file.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from matplotlib import rc_context
from matplotlib.figure import Figure

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["dashboard_svg", "load_test_svg"]

_BLUE, _RED, _GREEN, _GREY = "#0969da", "#cf222e", "#1a7f37", "#57606a"


@contextlib.contextmanager
def _style() -> Iterator[None]:
    style: Any = {"svg.hashsalt": "nbserve", "svg.fonttype": "none", "font.size": 9}
    with rc_context(style):
        yield


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _throughput(ends: pd.Series) -> tuple[Any, Any]:
    """Answers per second in about 20 full-width bins (a last, partial bin would look like a drop)."""
    import numpy as np

    span = float(ends.max()) if len(ends) else 0.0
    width = next(
        (w for w in (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0) if span / w <= 20), span / 20 or 1.0
    )
    full = max(1, int(span // width))
    edges = np.arange(full + 1) * width
    counts, _ = np.histogram(ends, bins=edges)  # answers after the last full bin: left out
    return (edges[:-1] + edges[1:]) / 2, counts / width


def load_test_svg(frame: pd.DataFrame) -> str:
    """Latency over time, latency histogram and throughput per second, as one SVG."""
    with _style():
        fig = Figure(figsize=(11, 3), layout="constrained")
        over_time, histogram, throughput = fig.subplots(1, 3)
        ok = frame[frame["status"].between(200, 399)]
        bad = frame[~frame["status"].between(200, 399)]
        over_time.scatter(
            ok["start_s"], ok["latency_ms"], s=3, alpha=0.5, label="ok", color="#0969da"
        )
        if len(bad):
            over_time.scatter(
                bad["start_s"], bad["latency_ms"], s=6, label="error", color="#cf222e"
            )
            over_time.legend(loc="upper right")
        over_time.set(title="latency over time", xlabel="time (s)", ylabel="latency (ms)")
        histogram.hist(frame["latency_ms"], bins=40, color="#0969da")
        for q, style_ in ((0.5, "-"), (0.95, "--"), (0.99, ":")):
            value = frame["latency_ms"].quantile(q)
            histogram.axvline(
                value, color="#57606a", linestyle=style_, label=f"p{round(q * 100)} {value:.1f} ms"
            )
        histogram.legend(loc="upper right")
        histogram.set(title="latency histogram", xlabel="latency (ms)", ylabel="requests")
        centers, rates = _throughput(frame["start_s"] + frame["latency_ms"] / 1000)
        throughput.plot(centers, rates, marker="o", markersize=3, color="#1a7f37")
        throughput.set(title="throughput", xlabel="time (s)", ylabel="requests/s", ylim=(0, None))
        return _svg(fig)


def dashboard_svg(frame: Mapping[str, Any]) -> str:
    """A dashboard frame (`stats.snapshot`): p50/p95/p99 per route, and batch sizes per API."""
    import numpy as np

    routes = [r for r in frame.get("routes", []) if r.get("count")]
    batches = dict(frame.get("batches") or {})
    with _style():
        fig = Figure(figsize=(11, 2.6), layout="constrained")
        latency, sizes = fig.subplots(1, 2)
        if routes:
            x = np.arange(len(routes))
            for i, (key, colour) in enumerate(
                (("p50_ms", _BLUE), ("p95_ms", _GREY), ("p99_ms", _RED))
            ):
                values = [float(r.get(key) or 0) for r in routes]
                latency.bar(x + (i - 1) * 0.27, values, width=0.27, color=colour, label=key[:3])
            latency.set_xticks(
                x, [f"{r['route']}\n{r['count']} req, {r['errors']} err" for r in routes]
            )
            latency.legend(loc="upper right")
        else:
            latency.text(
                0.5, 0.5, "no requests yet", ha="center", va="center", transform=latency.transAxes
            )
        latency.set(title="latency per route", ylabel="ms")
        if batches:
            for api, rows in batches.items():
                labels = [f"≤{b:g}" if b is not None else "more" for b, _ in rows]
                sizes.bar(labels, [c for _, c in rows], alpha=0.7, label=api)
            sizes.legend(loc="upper right")
        else:
            sizes.text(
                0.5, 0.5, "no batches yet", ha="center", va="center", transform=sizes.transAxes
            )
        sizes.set(title="batch sizes", xlabel="rows per batch", ylabel="batches")
        return _svg(fig)
