"""Worker processes: `ProcessExecutor` runs a service in spawned interpreters (see `pool.py`).

The worker's own entry module (`entry.py`) must stay importable without the server side, so this
package's `__init__` only loads the pool on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbserve._runtime.execution.workers.pool import ProcessExecutor

__all__ = ["ProcessExecutor"]


def __getattr__(name: str) -> Any:
    if name == "ProcessExecutor":
        from nbserve._runtime.execution.workers.pool import ProcessExecutor

        return ProcessExecutor
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
