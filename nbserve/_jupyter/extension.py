"""Wiring: the extension's routes, its settings object, and the marker kernels look for.

The marker `{runtime dir}/nbserve/server-<pid>.json` (url, base_url) tells a kernel this server
launched (`JPY_PARENT_PID`) that nbserve's proxy runs here, so `%%serve` shows the proxy URL
(`_notebook/urls.py`). It is removed when the server stops.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from pathlib import Path
from typing import Any

from jupyter_server.utils import url_path_join

from nbserve._jupyter.config import NbServe
from nbserve._jupyter.handlers import ServiceLogsHandler, ServicesHandler, ServiceStopHandler
from nbserve._jupyter.proxy import ProxyHandler, make_client
from nbserve._notebook import discovery

__all__ = ["load"]

_NAME = r"(?P<name>[^/]+)"


def load(serverapp: Any) -> None:
    nbserve = NbServe(parent=serverapp)
    directory = Path(nbserve.discovery_dir) if nbserve.discovery_dir else discovery.discovery_dir()
    base_url: str = serverapp.web_app.settings["base_url"]
    common = {"nbserve": nbserve, "directory": directory}
    api = url_path_join(base_url, "nbserve", "api", "services")
    handlers: list[tuple[str, Any, dict[str, Any]]] = [
        (api, ServicesHandler, common),
        (url_path_join(api, _NAME, "logs"), ServiceLogsHandler, common),
        (url_path_join(api, _NAME, "stop"), ServiceStopHandler, common),
        (
            url_path_join(base_url, "nbserve", "services", _NAME) + r"(?P<path>/.*)?",
            ProxyHandler,
            {**common, "client": make_client(nbserve)},
        ),
    ]
    serverapp.web_app.add_handlers(".*$", handlers)
    _write_marker(directory, serverapp, base_url)
    serverapp.log.info("nbserve: Services API and proxy at %snbserve/", base_url)


def _write_marker(directory: Path, serverapp: Any, base_url: str) -> None:
    path = directory / f"server-{os.getpid()}.json"
    try:
        url = serverapp.connection_url
    except Exception:  # not bound yet on some servers: the kernel falls back to the hub prefix
        url = ""
    try:
        discovery.write(path, {"pid": os.getpid(), "url": url, "base_url": base_url})
    except OSError:
        serverapp.log.warning("nbserve: could not write %s; %%serve shows direct URLs", path)
        return
    atexit.register(_remove, path)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
