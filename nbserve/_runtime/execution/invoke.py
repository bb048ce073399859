"""Calling the user's code: the one module both the inline executor and a worker process use.

`executor.InlineExecutor` (the server's process) and `workers.entry.Worker` (a worker process)
differ in where the call runs and how its outcome travels back, never in how the user's method
is called. That part lives here, once:

- **binding** (`Signature.bind`): a root input (the one positional-only parameter) is passed
  positionally, the request's `Context` goes to the parameter that asked for it;
- **context in and out**: `current_context` is set around the call in whichever thread or task
  runs it, and reset after, so `nbserve.get_current_context()` works in user code and nothing
  leaks into the next call on that thread; what the method writes to `ctx.response` is the
  caller's to read afterwards (a worker ships it back with the result);
- **dispatch** (`Signature.is_async`, `is_stream`): a sync method is called (`call_sync`, in a
  thread the caller chose), an async one awaited (`call_async`), a sync generator is advanced
  one item per `SyncSteps.step()` (each step in a thread the caller chose, so a slow generator
  never blocks an event loop and can be abandoned between items), an async generator is
  iterated on the loop;
- **error capture** (`captured`): whatever the user's code raised becomes an `Exception`, so a
  `SystemExit` or `KeyboardInterrupt` from an API never escapes into an event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbserve._sdk.context import Context, current_context

if TYPE_CHECKING:
    from nbserve._sdk.method import APIMethod

__all__ = ["END", "Signature", "SyncSteps", "call_async", "call_sync", "captured"]

END: Any = object()
"""What `SyncSteps.step()` returns once the generator is exhausted."""


@dataclass(frozen=True, slots=True)
class Signature:
    """How one API is called: the facts of its declaration the call needs, and nothing else.

    Built from an `APIMethod` in the server; a worker gets these (not the `APIMethod`, whose
    validators and encoders it has no use for) in its `init` message.
    """

    attr: str
    """The attribute of the user's class that holds the method."""
    is_async: bool
    """A coroutine function or an async generator: runs on an event loop."""
    is_stream: bool
    """A generator (sync or async): yields items."""
    ctx_param: str | None
    """The parameter that receives the request's `Context`, if any."""
    root: str | None
    """The one positional-only parameter of a root input (`def f(self, x, /)`), if any."""

    @classmethod
    def of(cls, api: APIMethod[..., Any]) -> Signature:
        return cls(
            attr=getattr(api, "attr", api.func.__name__),  # set by __set_name__ in a class body
            is_async=api.is_async,
            is_stream=api.is_stream,
            ctx_param=api.ctx_param,
            root=api.input.fields[0] if api.input.root else None,
        )

    def bind(
        self, kwargs: dict[str, Any], ctx: Context | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for the call (`kwargs` is updated in place)."""
        if self.ctx_param is not None:
            kwargs[self.ctx_param] = ctx
        if self.root is not None:
            return (kwargs.pop(self.root),), kwargs
        return (), kwargs


def call_sync(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], ctx: Context | None
) -> Any:
    """Call a sync method in this thread with `ctx` as the current context."""
    token = current_context.set(ctx)
    try:
        return fn(*args, **kwargs)
    finally:
        current_context.reset(token)


def call_async(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], ctx: Context | None
) -> Awaitable[Any]:
    """Start an async method with `ctx` as the current context; await the result at once, in
    the task that runs the call.

    A plain function is accepted too (the server's probes and `__metrics__` may be either).
    When the task already carries `ctx` (an HTTP request's task does) the method's own
    coroutine is returned: no wrapper, no extra frame on the path every async request takes.
    """
    if current_context.get(None) is ctx:
        value = fn(*args, **kwargs)
        return value if inspect.isawaitable(value) else _ready(value)
    return _in_context(fn, args, kwargs, ctx)


async def _in_context(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], ctx: Context | None
) -> Any:
    token = current_context.set(ctx)
    try:
        value = fn(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value
    finally:
        current_context.reset(token)


async def _ready(value: Any) -> Any:
    return value


class SyncSteps:
    """A sync generator advanced one item per `step()`, each in whatever thread calls it.

    `step()` returns the next item or `END`; after an exception, `END`, or `close()`, the
    generator is finished and `done` is True.
    """

    __slots__ = ("_ctx", "_generator", "done")

    def __init__(self, generator: Iterator[Any], ctx: Context | None) -> None:
        self._generator = generator
        self._ctx = ctx
        self.done = False

    def step(self) -> Any:
        token = current_context.set(self._ctx)
        try:
            item = next(self._generator, END)
        except BaseException:
            self.done = True
            raise
        finally:
            current_context.reset(token)
        if item is END:
            self.done = True
        return item

    def close(self) -> None:
        """Stop the generator (its `finally` blocks run here); idempotent."""
        self.done = True
        close = getattr(self._generator, "close", None)
        if close is not None:
            close()


def captured(exc: BaseException) -> Exception:
    """What an API raised, as an exception an event loop or a future may carry.

    `SystemExit`, `KeyboardInterrupt` (and other `BaseException`s) would stop the loop or the
    worker; they become a `RuntimeError` naming them, which the caller reports as a 500.
    """
    if isinstance(exc, Exception):
        return exc
    return RuntimeError(f"the API raised {exc!r}")
