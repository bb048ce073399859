"""The notebook layer: `%%serve` / `%serve`, the kernel-wide registry, status display, URLs.

The façade (`nbserve/__init__.py`) re-exports the functions below. Importing this package is
free: IPython, the registry and the runtime load inside the functions, so `import nbserve`
stays light outside a notebook (`tests/unit/test_public_api.py`). Inside IPython, `import
nbserve` calls `register_if_in_ipython()`, so `%%serve` works without `%load_ext nbserve`;
registering magics needs only IPython (already loaded there), and no server starts until the
first `%%serve`.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

from nbserve._notebook import history

if TYPE_CHECKING:
    from nbserve._notebook.live import LiveService

__all__ = [
    "load_ipython_extension",
    "register_if_in_ipython",
    "rollback",
    "services",
    "stop",
    "stop_all",
    "unload_ipython_extension",
]

_EXTENSION = "nbserve"


def services() -> dict[str, LiveService]:
    """The services served from this kernel with `%%serve`: name → live service.

    ```python
    svc = nbserve.services()["Echo"]
    svc.url, svc.state, svc.stats(), svc.logs(20), svc.rollback(), svc.stop()
    ```
    """
    from nbserve._notebook.registry import REGISTRY

    return REGISTRY.services()


def stop(name: str, timeout: float = 30) -> None:
    """Stop service `name`: finish in-flight requests, run `on_shutdown`, free the port."""
    from nbserve._notebook.registry import REGISTRY

    REGISTRY.stop(name, timeout=timeout).refresh_display()


def stop_all(timeout: float = 30) -> None:
    """Stop every service served from this kernel, by `%%serve` or by `nbserve.serve()`."""
    from nbserve._notebook.registry import REGISTRY

    for entry in REGISTRY.stop_all(timeout=timeout):
        entry.refresh_display()
    server = sys.modules.get("nbserve._runtime.server")  # not loaded: nothing was served
    if server is not None:
        server.stop_threaded_servers(timeout)


def rollback(name: str) -> LiveService:
    """Serve the previous version of `name` again, on the same port (`%serve rollback NAME`)."""
    from nbserve._notebook.registry import REGISTRY

    entry = REGISTRY.rollback(name)
    entry.refresh_display()
    return entry


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext nbserve`: register `%%serve` / `%serve` and the shutdown cleanup."""
    from nbserve._notebook.magics import ServeMagics
    from nbserve._notebook.registry import REGISTRY

    if "ServeMagics" not in ipython.magics_manager.registry:
        ipython.register_magics(ServeMagics)
    history.install(ipython)
    # A kernel shutdown (and `exit` in a kernel) sets `exit_now` before ipykernel terminates
    # child processes and long before `atexit`: the earliest point to stop servers gracefully.
    if hasattr(ipython, "observe"):
        _unobserve(ipython)
        ipython.observe(_on_exit_now, names="exit_now")
    REGISTRY.install_atexit()


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext nbserve`: stop every service and remove the magics."""
    from nbserve._notebook.registry import REGISTRY

    REGISTRY.stop_all()
    history.uninstall(ipython)
    _unobserve(ipython)
    manager = ipython.magics_manager
    manager.registry.pop("ServeMagics", None)
    for kind in ("line", "cell"):
        manager.magics[kind].pop("serve", None)


def _unobserve(ipython: Any) -> None:
    with contextlib.suppress(ValueError, AttributeError):  # not observing: nothing to undo
        ipython.unobserve(_on_exit_now, names="exit_now")


def _on_exit_now(change: Any) -> None:
    if change.get("new"):
        from nbserve._notebook.registry import REGISTRY

        REGISTRY.shutdown()


def register_if_in_ipython() -> None:
    """Register the magics when `import nbserve` runs inside IPython; a no-op elsewhere.

    Never imports IPython: if it is not loaded, this is not an IPython session. The extension
    is also marked loaded, so `%unload_ext nbserve` cleans up after a plain import.
    """
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return
    shell = ipython_module.get_ipython()
    if shell is None:
        return
    load_ipython_extension(shell)
    manager = getattr(shell, "extension_manager", None)
    if manager is not None:
        manager.loaded.add(_EXTENSION)
