"""Lifecycle hooks: `on_deployment` (once, before workers), `on_startup` / `on_shutdown` (per worker).

The decorators only tag the function; `@service` collects the tags when the class is decorated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

__all__ = ["HOOK_ATTR", "on_deployment", "on_shutdown", "on_startup"]

F = TypeVar("F", bound=Callable[..., Any])
HOOK_ATTR = "__nbserve_hook__"
HookKind = Literal["startup", "shutdown", "deployment"]


def _tag(func: F, kind: HookKind) -> F:
    setattr(func, HOOK_ATTR, kind)
    return func


def on_startup(func: F) -> F:
    """Run `func(self)` (sync or async) in each worker after `__init__`, before serving."""
    return _tag(func, "startup")


def on_shutdown(func: F) -> F:
    """Run `func(self)` (sync or async) in each worker when the service stops."""
    return _tag(func, "shutdown")


def on_deployment(func: Callable[..., Any]) -> staticmethod[Any, Any]:
    """Run `func()` once before any worker starts (no `self`: it becomes a staticmethod)."""
    inner = func.__func__ if isinstance(func, staticmethod) else func
    _tag(inner, "deployment")
    return staticmethod(inner)
