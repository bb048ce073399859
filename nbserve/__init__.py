"""nbserve: serve a model class from a notebook cell, BentoML-compatible.

```python
import nbserve

@nbserve.service
class Echo:
    @nbserve.api
    def shout(self, text: str, times: int = 1) -> str:
        return (text.upper() + " ") * times

handle = nbserve.serve(Echo)           # a Tornado server on its own thread, 127.0.0.1, free port
nbserve.SyncHTTPClient(handle.url).shout(text="hi", times=2)
```
This module is the whole public API (pinned by `tests/unit/test_public_api.py`); everything
else is private. Importing it is cheap: the server, the client and the export code load on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from nbserve import exceptions, validators
from nbserve._notebook import (
    load_ipython_extension,
    rollback,
    services,
    stop,
    stop_all,
    unload_ipython_extension,
)
from nbserve._sdk.context import Context
from nbserve._sdk.dependency import depends
from nbserve._sdk.hooks import on_deployment, on_shutdown, on_startup
from nbserve._sdk.method import api, task
from nbserve._sdk.service import Service, service
from nbserve._version import __version__

if TYPE_CHECKING:
    from nbserve import models, testing
    from nbserve._bento.export import export
    from nbserve._client import AsyncHTTPClient, SyncHTTPClient
    from nbserve._notebook.tester import dashboard, load_test, tester
    from nbserve._runtime.server import ServiceHandle, serve

__all__ = [
    "AsyncHTTPClient",
    "Context",
    "Field",
    "Service",
    "ServiceHandle",
    "SyncHTTPClient",
    "__version__",
    "api",
    "dashboard",
    "depends",
    "exceptions",
    "export",
    "load_ipython_extension",
    "load_test",
    "models",
    "on_deployment",
    "on_shutdown",
    "on_startup",
    "rollback",
    "serve",
    "service",
    "services",
    "stop",
    "stop_all",
    "task",
    "tester",
    "testing",
    "unload_ipython_extension",
    "validators",
]

# name -> module that defines it; loaded on first access so `import nbserve` stays light.
_LAZY = {
    "AsyncHTTPClient": "nbserve._client",
    "SyncHTTPClient": "nbserve._client",
    "ServiceHandle": "nbserve._runtime.server",
    "serve": "nbserve._runtime.server",
    "models": "nbserve.models",
    "export": "nbserve._bento.export",
    "tester": "nbserve._notebook.tester",
    "dashboard": "nbserve._notebook.tester",
    "load_test": "nbserve._notebook.tester",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in ("models", "testing"):
        return importlib.import_module(f"nbserve.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    msg = f"module 'nbserve' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# Inside IPython, `import nbserve` alone makes %%serve available (no server starts yet).
from nbserve._notebook import register_if_in_ipython as _register_if_in_ipython  # noqa: E402

_register_if_in_ipython()
