"""A real Jupyter server (pytest-jupyter) with nbserve's extension and no unauthenticated access.

pytest-jupyter's fixtures and its async-test hook are imported here rather than registered as a
plugin, so they (and their autouse fixtures) apply to this directory only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

from nbserve._notebook.registry import REGISTRY


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    from traitlets.config import Config

    return Config(
        {
            "ServerApp": {
                # terminals' websocket is undecorated, which strict auth refuses to load
                "jpserver_extensions": {
                    "nbserve._jupyter": True,
                    "jupyter_server_terminals": False,
                },
                # Every handler must be explicitly authenticated (jupyter.md §7).
                "allow_unauthenticated_access": False,
            }
        }
    )


@pytest.fixture
def discovery(jp_runtime_dir: Path, jp_environ: None) -> Iterator[Path]:
    """The discovery directory the server reads and in-process services write."""
    yield Path(jp_runtime_dir) / "nbserve"
    REGISTRY.stop_all(timeout=10)


@pytest.fixture
def jp_url(jp_serverapp: Any, http_server: Any, jp_http_port: int, jp_base_url: str) -> str:
    """The running server's base URL (base_url included), for requests without jp_fetch's token."""
    return f"http://localhost:{jp_http_port}{jp_base_url}"
