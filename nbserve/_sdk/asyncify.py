"""`svc.to_async.method(...)` and `svc.to_sync.method(...)`, as BentoML's service instances have.

BentoML's "Convert synchronous to asynchronous" pattern calls a depended service's sync APIs
from an async API with `asyncio.gather(self.dep.to_async.a(...), self.dep.to_async.b(...))`.
`to_async` runs a sync API in a thread (so the event loop keeps serving) and turns a sync
generator into an async one; async APIs are returned as they are. `to_sync` is the mirror.
Both are attached to every service class as descriptors, so they exist on instances made
inline, in worker processes and by `depends()` alike.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

__all__ = ["AsyncView", "SyncView", "ToAsync", "ToSync"]

_DONE = object()


def _api_function(instance: object, name: str) -> Callable[..., Any]:
    """The API `name` of `instance`, bound; anything that is not an API is refused by name."""
    from nbserve._sdk.method import APIMethod

    declared = inspect.getattr_static(type(instance), name, None)
    if not isinstance(declared, APIMethod):
        apis = sorted(
            attr
            for klass in type(instance).__mro__
            for attr, value in vars(klass).items()
            if isinstance(value, APIMethod)
        )
        msg = f"{type(instance).__name__} has no API {name!r} (its APIs: {', '.join(apis) or 'none'}); to_async/to_sync wrap @api methods only"
        raise AttributeError(msg)
    bound: Callable[..., Any] = getattr(instance, name)
    return bound


class AsyncView:
    """`instance.to_async`: every API of `instance` as an awaitable (or async generator)."""

    def __init__(self, instance: object) -> None:
        self._instance = instance

    def __getattr__(self, name: str) -> Callable[..., Any]:
        func = _api_function(self._instance, name)
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            return func
        if inspect.isgeneratorfunction(func):
            return _async_generator(func)

        @functools.wraps(func)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(func, *args, **kwargs)

        return call


def _async_generator(
    func: Callable[..., Generator[Any, None, None]],
) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(func)
    async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        items = func(*args, **kwargs)
        try:
            while (item := await asyncio.to_thread(next, items, _DONE)) is not _DONE:
                yield item
        finally:
            items.close()

    return stream


class SyncView:
    """`instance.to_sync`: every API of `instance` as a plain call (async ones run to completion)."""

    def __init__(self, instance: object) -> None:
        self._instance = instance

    def __getattr__(self, name: str) -> Callable[..., Any]:
        func = _api_function(self._instance, name)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            def call(*args: Any, **kwargs: Any) -> Any:
                return _run(func(*args, **kwargs))

            return call
        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
                agen = func(*args, **kwargs)
                try:
                    while (item := _run(anext(agen, _DONE))) is not _DONE:
                        yield item
                finally:
                    _run(agen.aclose())

            return stream
        return func


def _run(awaitable: Any) -> Any:
    """Run a coroutine from sync code, also when this thread already runs a loop (a kernel)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _await(awaitable)).result()


async def _await(awaitable: Any) -> Any:
    return await awaitable


class ToAsync:
    """Descriptor put on a service class: `instance.to_async` is an `AsyncView` of it."""

    def __get__(self, instance: object | None, owner: type) -> Any:
        return self if instance is None else AsyncView(instance)


class ToSync:
    """Descriptor put on a service class: `instance.to_sync` is a `SyncView` of it."""

    def __get__(self, instance: object | None, owner: type) -> Any:
        return self if instance is None else SyncView(instance)
