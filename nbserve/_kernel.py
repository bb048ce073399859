"""Whether this process is a Jupyter kernel: where a person sees the output of each call.

The one test every layer asks (a 500's body names the exception there, dependencies stay in
process there, bars and widgets are shown there). It imports nothing: no IPython loaded means
no kernel.
"""

from __future__ import annotations

import sys

__all__ = ["in_kernel"]


def in_kernel() -> bool:
    """True in an ipykernel process (a notebook, JupyterLab, VS Code), False in a terminal
    IPython, a script or a server."""
    ipython = sys.modules.get("IPython")
    if ipython is None or "ipykernel" not in sys.modules:
        return False
    return getattr(ipython.get_ipython(), "kernel", None) is not None
