"""Shared fixtures: small and generic on purpose (test helpers live beside their tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest


def _running_servers() -> set[Any]:
    server_module = sys.modules.get("nbserve._runtime.server")
    if server_module is None:  # the runtime was never imported
        return set()
    return {s for s in list(server_module._RUNNING) if s._thread is not None}


@pytest.fixture(autouse=True)
def _no_server_left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """A server a test starts must be stopped by that test (`nbserve.testing.running_service`).

    Servers that were already running when the test began (a module-scoped fixture's) are not
    this test's business.
    """
    before = _running_servers()
    yield
    leaked = _running_servers() - before
    for server in leaked:
        server.stop(timeout=5)
    assert not leaked, (
        f"{request.node.nodeid} left server(s) running: {sorted(s.name for s in leaked)}"
    )
