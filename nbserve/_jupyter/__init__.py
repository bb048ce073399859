"""nbserve's Jupyter server extension: the Services API and an authenticated proxy to services.

Enabled automatically on install (`jupyter-config/jupyter_server_config.d/nbserve.json`, shipped
as wheel shared-data); `jupyter server extension disable nbserve._jupyter` turns it off. Routes,
all under the server's `base_url` and all requiring the user's Jupyter login:

| route | what |
|---|---|
| `GET nbserve/api/services` | every live service of every kernel (discovery files, checked live) |
| `GET nbserve/api/services/<name>/logs` | the service's last log records |
| `POST nbserve/api/services/<name>/stop` | stop it through its own admin route, wait for the port |
| `* nbserve/services/<name>/...` | the proxy: the browser reaches the service through Jupyter |

Settings are traitlets: `c.NbServe.check_timeout = 2` (see `config.py`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_jupyter_server_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbserve._jupyter"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from nbserve._jupyter.extension import load

    load(serverapp)


# The name older loaders (and `jupyter server extension list`'s validation) look for.
load_jupyter_server_extension = _load_jupyter_server_extension
