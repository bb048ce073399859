"""`get_current_service()`: the service instance this process serves (BentoML's helper).

Set when the runtime makes the instance (inline or in a worker), so code that was not handed
`self` (a helper module, a mounted ASGI app) can reach the models and state it holds.
"""

from __future__ import annotations

from typing import Any

from nbserve.exceptions import NbserveError

__all__ = ["get_current_service", "set_current_service"]

_current: Any = None


def set_current_service(instance: Any) -> None:
    global _current
    _current = instance


def get_current_service() -> Any:
    if _current is None:
        msg = "get_current_service(): no service instance exists in this process yet; call it from an API, a hook or code that runs after the service started"
        raise NbserveError(msg)
    return _current
