"""The public façade is pinned: adding or removing a name is a deliberate API change."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import nbserve

PINNED = [
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


def test_all_is_pinned() -> None:
    assert sorted(nbserve.__all__) == PINNED


def test_every_public_name_resolves() -> None:
    for name in nbserve.__all__:
        assert getattr(nbserve, name) is not None, name


def test_unknown_attribute_names_itself() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        nbserve.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


_PROBE = """
import json, sys
import numpy as np
import nbserve

@nbserve.service(resources={"cpu": "1"}, traffic={"timeout": 10, "max_concurrency": 32})
class Echo:
    @nbserve.api
    def shout(self, text: str, times: int = 1) -> str:
        return text * times

    @nbserve.api(route="/stats")
    def stats(self, x: np.ndarray) -> dict:
        return {}

heavy = ["tornado", "multiprocessing", "httpx", "nbserve._runtime", "nbserve._bento", "nbserve._models", "nbserve._client", "torch", "pandas"]
print(json.dumps([m for m in heavy if m in sys.modules]))
"""


def test_import_and_decorate_stay_light() -> None:
    """`import nbserve` and decorating a class load no server, client, multiprocessing or export code."""
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
