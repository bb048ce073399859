"""Discovery files: one small JSON file per live service, for the Jupyter server extension.

Each service served from a kernel is advertised as
`{jupyter_runtime_dir()}/nbserve/<kernel-id>-<name>.json`, mirroring the `jpserver-<pid>.json`
files Jupyter servers write there, so the server extension can list every kernel's services
without talking to the kernels. The file holds what the extension's proxy needs (port, host,
routes, and the service's bearer token, which the proxy adds server-side so the browser never
sees it), what a liveness check needs (pid, kernel id), and the per-service `admin_secret` that
unlocks the service's own admin routes (`_runtime/http/admin.py`: status, logs, stop). Both secrets
live only here and in the kernel, so the file is private: mode 0600 in a 0700 directory, like
the `jpserver-<pid>.json` files that hold Jupyter's own token. Files are written atomically
(write a temp file, `os.replace`), so a reader never sees half a document, and removed when
the service stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

__all__ = [
    "DiscoveryRecord",
    "discovery_dir",
    "discovery_path",
    "kernel_id",
    "remove",
    "write",
]

# Bump when a field changes meaning; the server extension skips files it does not understand.
# 2: the bearer token itself (was its SHA-256), the admin secret, the notebook and the mode.
SCHEMA_VERSION = 2


class DiscoveryRecord(TypedDict):
    """The JSON document in a discovery file."""

    schema_version: int
    name: str
    host: str
    port: int
    url: str
    pid: int
    kernel_id: str | None
    routes: list[str]
    token: str | None
    admin_secret: str
    notebook: str | None
    mode: str
    version: int
    started: float


def discovery_dir() -> Path:
    """`<jupyter runtime dir>/nbserve`, read at each call so `JUPYTER_RUNTIME_DIR` is honoured."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / "nbserve"


def kernel_id() -> str | None:
    """This kernel's id (from its `kernel-<id>.json` connection file), or None outside a kernel."""
    if "ipykernel" not in sys.modules:  # never import ipykernel just to find out
        return None
    try:
        from ipykernel.kernelapp import IPKernelApp

        if not IPKernelApp.initialized():  # ipykernel imported, but not running a kernel
            return None
        # The name only: `ipykernel.connect.get_connection_file` would also search for the
        # file, which the launcher may already have removed.
        stem = Path(IPKernelApp.instance().connection_file).stem
    except Exception:  # an ipykernel without these names: no kernel id, the pid names the file
        return None
    return stem.removeprefix("kernel-") or None


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", part) or "_"


def discovery_path(name: str, kernel: str | None = None) -> Path:
    """Where service `name` of this kernel (or of this pid, outside a kernel) is advertised."""
    owner = kernel if kernel is not None else kernel_id()
    prefix = _safe(owner) if owner else f"pid{os.getpid()}"
    return discovery_dir() / f"{prefix}-{_safe(name)}.json"


def write(path: Path, record: DiscoveryRecord | dict[str, Any]) -> None:
    """Write `record` to `path` atomically, readable by this user only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)  # mkstemp made it 0600
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove(path: Path) -> None:
    """Remove a discovery file; a file that is already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def record(
    *,
    name: str,
    host: str,
    port: int,
    url: str,
    routes: list[str],
    token: str | None,
    admin_secret: str,
    mode: str,
    version: int,
) -> DiscoveryRecord:
    return DiscoveryRecord(
        schema_version=SCHEMA_VERSION,
        name=name,
        host=host,
        port=port,
        url=url,
        pid=os.getpid(),
        kernel_id=kernel_id(),
        routes=routes,
        token=token,
        admin_secret=admin_secret,
        # The notebook path Jupyter launched this kernel for (jupyter_server sets it); the
        # extension also asks its own session manager, which knows renames.
        notebook=os.environ.get("JPY_SESSION_NAME") or None,
        mode=mode,
        version=version,
        started=time.time(),
    )
