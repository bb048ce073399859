"""The cells this kernel ran, in order, for the exporter's source capture.

IPython's input history holds only cells run with `store_history=True`; nbval and some
frontends run cells without it, so the exporter would miss a helper defined in such a cell.
nbserve therefore also records each cell as it starts (IPython's `pre_run_cell` event).
"""

from __future__ import annotations

import collections
from typing import Any

__all__ = ["executed_cells", "install", "uninstall"]

# Bounded: a long-lived kernel must not grow without limit; 10,000 cells is days of work.
_CELLS: collections.deque[str] = collections.deque(maxlen=10_000)


def _record(info: Any) -> None:
    raw = getattr(info, "raw_cell", None)
    if isinstance(raw, str) and raw.strip():
        _CELLS.append(raw)


def install(ipython: Any) -> None:
    """Start recording cells (idempotent)."""
    events = getattr(ipython, "events", None)
    if events is None:
        return
    uninstall(ipython)
    events.register("pre_run_cell", _record)


def uninstall(ipython: Any) -> None:
    events = getattr(ipython, "events", None)
    if events is not None and _record in events.callbacks.get("pre_run_cell", []):
        events.unregister("pre_run_cell", _record)


def executed_cells(shell: Any) -> list[str]:
    """IPython's history, then the recorded cells it lacks (run without store_history)."""
    history = [c for c in shell.history_manager.input_hist_raw if c]
    seen = set(history)
    return history + [c for c in _CELLS if c not in seen]
