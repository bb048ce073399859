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
from nbserve._sdk.context import Context, Cookie
from nbserve._sdk.dependency import depends
from nbserve._sdk.hooks import on_deployment, on_shutdown, on_startup
from nbserve._sdk.method import api, task
from nbserve._sdk.service import Service, service
from nbserve._version import __version__

if TYPE_CHECKING:
    from nbserve import images, models, testing
    from nbserve._client import AsyncHTTPClient, SyncHTTPClient
    from nbserve._notebook.export import export
    from nbserve._notebook.tester import dashboard, load_test, tester
    from nbserve._runtime.handle import ServiceHandle, serve
    from nbserve._runtime.http.connections import ConnectionLimits
    from nbserve._sdk.arguments import use_arguments
    from nbserve._sdk.asgi import asgi_app
    from nbserve._sdk.current import get_current_service
    from nbserve._sdk.importing import importing
    from nbserve._sdk.loading import load
    from nbserve._sdk.monitoring import monitor
    from nbserve._sdk.runner import runner_service

__all__ = [
    "AsyncHTTPClient",
    "ConnectionLimits",
    "Context",
    "Cookie",
    "Field",
    "Service",
    "ServiceHandle",
    "SyncHTTPClient",
    "__version__",
    "api",
    "asgi_app",
    "dashboard",
    "depends",
    "exceptions",
    "export",
    "get_current_service",
    "images",
    "importing",
    "load",
    "load_ipython_extension",
    "load_test",
    "models",
    "monitor",
    "on_deployment",
    "on_shutdown",
    "on_startup",
    "rollback",
    "runner_service",
    "serve",
    "service",
    "services",
    "stop",
    "stop_all",
    "task",
    "tester",
    "testing",
    "unload_ipython_extension",
    "use_arguments",
    "validators",
]

# name -> module that defines it; loaded on first access so `import nbserve` stays light.
_LAZY = {
    "AsyncHTTPClient": "nbserve._client",
    "ConnectionLimits": "nbserve._runtime.http.connections",
    "SyncHTTPClient": "nbserve._client",
    "ServiceHandle": "nbserve._runtime.handle",
    "serve": "nbserve._runtime.handle",
    "models": "nbserve.models",
    "export": "nbserve._notebook.export",
    "runner_service": "nbserve._sdk.runner",
    "asgi_app": "nbserve._sdk.asgi",
    "get_current_service": "nbserve._sdk.current",
    "importing": "nbserve._sdk.importing",
    "load": "nbserve._sdk.loading",
    "monitor": "nbserve._sdk.monitoring",
    "use_arguments": "nbserve._sdk.arguments",
    "tester": "nbserve._notebook.tester",
    "dashboard": "nbserve._notebook.tester",
    "load_test": "nbserve._notebook.tester",
}


# BentoML's framework modules (`bentoml.sklearn.save_model`): submodules, imported on first use.
_FRAMEWORK_MODULES = (
    "sklearn",
    "pytorch",
    "transformers",
    "xgboost",
    "lightgbm",
    "picklable_model",
)


def __getattr__(name: str) -> Any:
    import importlib

    if name in ("models", "testing", "images", *_FRAMEWORK_MODULES):
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
