"""The URL a service is reachable at *from the user's browser*, which is not always the kernel's.

A kernel-side server listens on the kernel's host. The browser may be elsewhere: on JupyterHub
or Binder it only reaches the kernel's ports through the single-user server's
jupyter-server-proxy route (`{prefix}proxy/{port}/`); behind a local Jupyter server with a
`base_url` the same route works, and is the only one that survives an SSH tunnel or a Docker
port mapping that publishes just the Jupyter port. Resolution, first match wins:

1. `NBSERVE_PUBLIC_URL`, a template with `{port}` (the user knows best: VS Code port
   forwarding, a reverse proxy, a tunnel). TensorBoard's `TENSORBOARD_PROXY_URL` is the model.
2. nbserve's own Jupyter server extension (`nbserve._jupyter`), when it runs in the server that
   launched this kernel (it leaves `{runtime dir}/nbserve/server-<pid>.json`, matched against
   `JPY_PARENT_PID`): `{server url}nbserve/services/{name}/`, or on a hub
   `JUPYTERHUB_SERVICE_PREFIX` + `nbserve/services/{name}/`. That proxy asks for the user's
   Jupyter login and adds the service's token itself, and needs no jupyter-server-proxy.
3. `JUPYTERHUB_SERVICE_PREFIX` + `proxy/{port}/`, the route JupyterHub and Binder users reach
   kernel ports through (prefixed with `JUPYTERHUB_HOST` where the hub uses subdomains, else a
   path the browser resolves against the page's own origin).
4. The local Jupyter server that launched this kernel (its pid is `JPY_PARENT_PID`), when
   jupyter-server-proxy is installed: `{server url}proxy/{port}/`.
5. `http://{host}:{port}`, with a wildcard bind shown as loopback.

`resolve_public_url` is pure (every input is a parameter) so each rule is tested without a hub;
`public_url` gathers the inputs from this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["extension_marker", "local_url", "public_url", "resolve_public_url"]

ENV_TEMPLATE = "NBSERVE_PUBLIC_URL"
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def local_url(host: str, port: int) -> str:
    """`http://host:port/`-style URL for code on this machine (a wildcard bind means loopback)."""
    if host in _WILDCARDS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal, RFC 3986 §3.2.2
    return f"http://{host}:{port}"


def _from_template(template: str, port: int) -> str:
    if "{port}" not in template:
        msg = f"{ENV_TEMPLATE}={template!r} has no {{port}} placeholder; set it to a template such as 'https://example.org/proxy/{{port}}/'"
        raise ValueError(msg)
    # str.replace, not str.format: a URL may hold other braces (or a literal '{}') on purpose.
    return template.replace("{port}", str(port))


def _running_server_url(servers: Iterable[Mapping[str, Any]], parent_pid: str | None) -> str | None:
    """The URL (base_url included) of the Jupyter server whose pid launched this kernel."""
    if not parent_pid:
        return None
    for server in servers:
        if str(server.get("pid")) == parent_pid and isinstance(server.get("url"), str):
            url: str = server["url"]
            return url if url.endswith("/") else url + "/"
    return None


def resolve_public_url(
    port: int,
    host: str = "127.0.0.1",
    *,
    environ: Mapping[str, str],
    running_servers: Iterable[Mapping[str, Any]] = (),
    proxy_installed: bool = False,
    name: str | None = None,
    extension_server: Mapping[str, Any] | None = None,
) -> str:
    """The browser-facing URL of a service on `host:port`, from explicit inputs (see module doc).

    `running_servers` are `jupyter_server.serverapp.list_running_servers()` entries; only read
    when `proxy_installed` (the `/proxy/` route exists only with jupyter-server-proxy).
    `extension_server` is the `server-<pid>.json` marker nbserve's server extension left for the
    server that launched this kernel (None when it does not run there); its proxy needs `name`.
    """
    template = environ.get(ENV_TEMPLATE, "").strip()
    if template:
        return _from_template(template, port)
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX", "").strip()
    if prefix:
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        prefix = prefix if prefix.startswith("/") else "/" + prefix
    if name and extension_server is not None:
        route = f"nbserve/services/{urllib.parse.quote(name, safe='')}/"
        if prefix:
            return f"{environ.get('JUPYTERHUB_HOST', '').rstrip('/')}{prefix}{route}"
        server_url = extension_server.get("url")
        if isinstance(server_url, str) and server_url:
            return (server_url if server_url.endswith("/") else server_url + "/") + route
    if prefix:
        return f"{environ.get('JUPYTERHUB_HOST', '').rstrip('/')}{prefix}proxy/{port}/"
    if proxy_installed:
        server = _running_server_url(running_servers, environ.get("JPY_PARENT_PID"))
        if server is not None:
            return f"{server}proxy/{port}/"
    return local_url(host, port)


def _list_running_servers() -> list[dict[str, Any]]:
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:  # a kernel without jupyter_server in its environment: fine
        return []
    try:
        return list(list_running_servers())
    except (OSError, ValueError):  # an unreadable runtime dir or a half-written jpserver file
        return []


def extension_marker(parent_pid: str | None) -> dict[str, Any] | None:
    """The marker nbserve's server extension wrote for Jupyter server `parent_pid`, if any."""
    if not parent_pid or not parent_pid.isdigit():
        return None
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        path = os.path.join(jupyter_runtime_dir(), "nbserve", f"server-{parent_pid}.json")
        with open(path, encoding="utf-8") as fh:
            marker = json.load(fh)
    except (ImportError, OSError, ValueError):  # no extension there (or no jupyter_core here)
        return None
    return marker if isinstance(marker, dict) else None


def public_url(port: int, host: str = "127.0.0.1", *, name: str | None = None) -> str:
    """`resolve_public_url` with this process's environment and Jupyter servers."""
    environ = dict(os.environ)
    marker = extension_marker(environ.get("JPY_PARENT_PID")) if name else None
    proxy = importlib.util.find_spec("jupyter_server_proxy") is not None
    # Reading jpserver-*.json only pays off when the kernel was launched by a server.
    needs_servers = proxy and "JPY_PARENT_PID" in environ and not environ.get(ENV_TEMPLATE)
    servers = _list_running_servers() if needs_servers else []
    return resolve_public_url(
        port,
        host,
        environ=environ,
        running_servers=servers,
        proxy_installed=proxy,
        name=name,
        extension_server=marker,
    )
