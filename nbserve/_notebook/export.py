"""`nbserve.export(...)` and `%serve export`: a live service → a `.bento` archive.

In a kernel the source is the service's `%%serve` cell plus what it uses from the cells that
ran (IPython's raw input history) and, for names the cells alone do not explain, the kernel's
namespace. Outside a kernel (a script, a module) the source is the file that defines the
service, as it is.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Any

from nbserve._bento.builder import BuildError
from nbserve._bento.sources import build_source, export_service
from nbserve._sdk.service import Service

__all__ = ["export"]


def _shell() -> Any:
    """The running IPython shell, without importing IPython where it is not already loaded."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _service(service_or_name: Service[Any] | str) -> Service[Any]:
    if isinstance(service_or_name, Service):
        return service_or_name
    from nbserve._notebook.registry import REGISTRY

    return REGISTRY.get(service_or_name).service


def export(
    service_or_name: Service[Any] | str,
    out_dir: str | os.PathLike[str] = "dist",
    *,
    requirements: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """Write `<out_dir>/<name>-<version>.bento` for a service and return its path.

    `service_or_name`: the `@nbserve.service` class, or the name of a service served from this
    kernel. `requirements`: a requirements file whose lines override or extend the pins
    inferred from the imports. `progress`: show hashing and writing as bars (default: in a
    kernel or a terminal). Same inputs, same bytes: the version is a content hash.

    ```python
    path = nbserve.export(Iris, "dist")      # dist/iris-<version>.bento
    ```
    """
    service = _service(service_or_name)
    shell = _shell()
    if shell is not None:
        from nbserve._notebook.history import executed_cells

        cells = executed_cells(shell)
        return export_service(
            service,
            out_dir,
            cells=cells,
            namespace=shell.user_ns,
            requirements=requirements,
            progress=progress,
        )
    module = sys.modules.get(service.inner.__module__)
    file = getattr(module, "__file__", None)
    if module is None or file is None:
        msg = f"cannot find the source of {service.name}: it was defined neither in a notebook nor in a file; define it in a .py file or a notebook cell and export again"
        raise BuildError(msg)
    variable = next((k for k, v in vars(module).items() if v is service), service.inner.__name__)
    return build_source(
        service,
        inspect.getsource(module),
        variable,
        out_dir,
        requirements=requirements,
        progress=progress,
    )
