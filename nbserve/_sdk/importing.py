"""`with nbserve.importing(): import torch`: imports a service needs only where it serves.

Building or inspecting a service (exporting a bento, reading its schema) happens where its
heavy runtime libraries may be missing; inside the block a missing module is skipped there,
with one log line. Where the service is served (a server or worker process) the import error
is raised as usual, since the service could not work without it, as in BentoML.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

__all__ = ["importing", "mark_serving", "serving_here"]

_log = logging.getLogger("nbserve.service")
_serving = False


def mark_serving() -> None:
    """This process exists to serve (`nbserve serve`): guarded imports must succeed."""
    global _serving
    _serving = True


def serving_here() -> bool:
    """Whether this process serves a service: `nbserve serve`, a worker, or a process whose
    server already runs (a kernel serving a cell imports before its server starts, so a
    notebook skips as a build does, and the service fails where it uses the module)."""
    if _serving:
        return True
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(main_spec, "name", "") == "nbserve._runtime.execution.workers.entry":
        return True
    server = sys.modules.get("nbserve._runtime.server")
    return bool(server is not None and getattr(server, "_RUNNING", None))


@contextlib.contextmanager
def importing() -> Iterator[None]:
    try:
        yield
    except ImportError as exc:
        if serving_here():
            raise
        _log.info(
            "skipping import of %s: not installed here (needed where the service runs)", exc.name
        )
