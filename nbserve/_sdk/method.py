"""`@api` and `@task`: one HTTP endpoint per decorated method.

Everything a request needs (route, input and output specs, batching options) is built here,
once, when the class body runs; the server only looks it up.
"""

from __future__ import annotations

import functools
import inspect
import keyword
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast, overload

from pydantic import BaseModel

from nbserve.exceptions import ServiceDefinitionError

if TYPE_CHECKING:
    from nbserve._sdk.io import InputSpec, OutputSpec

__all__ = ["APIMethod", "api", "task"]

P = ParamSpec("P")
R = TypeVar("R")

_CTX_NAMES = ("ctx", "context")


def _context_param(func: Callable[..., Any]) -> str | None:
    """The parameter that receives `Context`: named ctx/context, unannotated or annotated Context."""
    from nbserve._sdk.context import Context

    for name, param in inspect.signature(func).parameters.items():
        if name not in _CTX_NAMES:
            continue
        ann = param.annotation
        if (
            ann is inspect.Parameter.empty
            or ann is Context
            or ann in ("Context", "nbserve.Context", "bentoml.Context")
        ):
            return name
    return None


def _normalise_batch_dim(batch_dim: int | tuple[int, int], where: str) -> tuple[int, int]:
    if isinstance(batch_dim, int) and not isinstance(batch_dim, bool):
        return (batch_dim, batch_dim)
    if (
        isinstance(batch_dim, tuple)
        and len(batch_dim) == 2
        and all(isinstance(d, int) and not isinstance(d, bool) for d in batch_dim)
    ):
        return batch_dim
    msg = f"{where}: batch_dim={batch_dim!r} must be an int or an (input_dim, output_dim) pair, e.g. batch_dim=0"
    raise ServiceDefinitionError(msg)


class APIMethod(Generic[P, R]):
    """An API of a service. On an instance it is the plain method (`svc.shout("hi")`)."""

    def __init__(
        self,
        func: Callable[P, R],
        *,
        route: str | None = None,
        name: str | None = None,
        input_spec: type[BaseModel] | None = None,
        output_spec: type[BaseModel] | None = None,
        batchable: bool = False,
        batch_dim: int | tuple[int, int] = 0,
        max_batch_size: int = 100,
        max_latency_ms: int = 60_000,
        is_task: bool = False,
    ) -> None:
        from nbserve._sdk.io import input_spec_for, output_spec_for

        where = f"@api on {getattr(func, '__qualname__', func)!s}"
        if not callable(cast(object, func)):  # a typo like @api(route) passes a str here
            msg = f"{where}: expected a function, got {func!r}"
            raise ServiceDefinitionError(msg)
        fname = func.__name__
        self.name = name if name is not None else fname
        if not self.name.isidentifier() or keyword.iskeyword(self.name):
            msg = f"{where}: name={self.name!r} must be a Python identifier (it becomes the client's method name), e.g. name='predict'"
            raise ServiceDefinitionError(msg)
        if route is None:
            if fname == "__call__":
                route = "/"
            elif fname.startswith("__"):
                msg = f"{where}: a method named {fname!r} cannot be an API without an explicit route; pass route='/{fname.strip('_')}'"
                raise ServiceDefinitionError(msg)
            else:
                route = f"/{fname}"
        if not isinstance(route, str) or not route.startswith("/"):
            msg = f"{where}: route={route!r} must start with '/', e.g. route='/{fname}'"
            raise ServiceDefinitionError(msg)
        if (
            isinstance(max_batch_size, bool)
            or not isinstance(max_batch_size, int)
            or max_batch_size < 1
        ):
            msg = f"{where}: max_batch_size={max_batch_size!r} must be an integer >= 1 (rows per batch)"
            raise ServiceDefinitionError(msg)
        if (
            isinstance(max_latency_ms, bool)
            or not isinstance(max_latency_ms, int | float)
            or max_latency_ms <= 0
        ):
            msg = f"{where}: max_latency_ms={max_latency_ms!r} must be a positive number of milliseconds, e.g. max_latency_ms=20"
            raise ServiceDefinitionError(msg)

        self.func = func
        self.route = route
        self.doc = inspect.getdoc(func)
        self.batchable = bool(batchable)
        self.batch_dim = _normalise_batch_dim(batch_dim, where)
        self.max_batch_size = max_batch_size
        self.max_latency_ms = float(max_latency_ms)
        self.is_task = is_task
        self.is_stream = inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
        self.is_async = inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
        if is_task and self.is_stream:
            msg = f"{where}: a task cannot return a stream; make it return the whole result, or use @api for streaming"
            raise ServiceDefinitionError(msg)
        self.ctx_param = _context_param(func)
        self.input: InputSpec = input_spec_for(
            func, ctx_param=self.ctx_param, input_spec=input_spec
        )
        self.output: OutputSpec = output_spec_for(func, output_spec=output_spec)
        if self.output.is_stream and not self.is_stream:
            # A plain function returning an iterator would run on the server's event loop when
            # called, and an `async def` returning one would hand the server a coroutine.
            msg = f"{where}: the return type is an iterator, so this API streams, but the function is not a generator; write it with `yield` (e.g. `yield from items`)"
            raise ServiceDefinitionError(msg)
        if self.batchable:
            if self.is_stream:
                msg = f"{where}: a batchable API cannot stream; drop batchable=True or return a whole batch"
                raise ServiceDefinitionError(msg)
            if len(self.input.fields) != 1:
                msg = f"{where}: a batchable API takes exactly one input (the batch), got {list(self.input.fields)}; e.g. def {fname}(self, x: np.ndarray) -> np.ndarray"
                raise ServiceDefinitionError(msg)
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    @property
    def batch_field(self) -> str | None:
        return self.input.fields[0] if self.batchable else None

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    @overload
    def __get__(self, instance: None, owner: type) -> APIMethod[P, R]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> Callable[P, R]: ...
    def __get__(self, instance: object | None, owner: type) -> Any:
        if instance is None:
            return self
        return self.func.__get__(instance, owner)

    def local(self, instance: object, *args: Any, **kwargs: Any) -> Any:
        """Call the method directly on `instance`, bypassing HTTP."""
        return self.func(instance, *args, **kwargs)  # type: ignore[arg-type]

    def schema(self, prefix: str = "") -> dict[str, Any]:
        """This API's entry in `/schema.json` (BentoML's shape, plus the docstring)."""
        return {
            "name": self.name,
            "route": prefix + self.route,
            "description": self.doc,
            "doc": self.doc,
            "batchable": self.batchable,
            "is_task": self.is_task,
            "input": self.input.json_schema(),
            # "sse" tells nbserve's client it may ask for SSE frames (item boundaries that
            # survive proxies, and in-band errors); BentoML's client ignores the key.
            "output": {**self.output.json_schema(), "sse": True}
            if self.is_stream
            else self.output.json_schema(),
        }

    def __repr__(self) -> str:
        return f"<nbserve API {self.name} POST {self.route}>"


_Decorator = Callable[[Callable[P, R]], APIMethod[P, R]]


@overload
def api(func: Callable[P, R], /) -> APIMethod[P, R]: ...
@overload
def api(
    *,
    route: str | None = ...,
    name: str | None = ...,
    input_spec: type[BaseModel] | None = ...,
    output_spec: type[BaseModel] | None = ...,
    batchable: bool = ...,
    batch_dim: int | tuple[int, int] = ...,
    max_batch_size: int = ...,
    max_latency_ms: int = ...,
) -> Callable[[Callable[P, R]], APIMethod[P, R]]: ...
def api(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a service method an HTTP endpoint: `POST /<name>` with a JSON body keyed by parameter.

    Bare (`@api`) or with options: `route`, `name`, `batchable`, `batch_dim`,
    `max_batch_size` (rows, 1 allowed), `max_latency_ms`, `input_spec`, `output_spec`.
    """
    if func is not None:
        return APIMethod(func, **options)
    return lambda f: APIMethod(f, **options)


@overload
def task(func: Callable[P, R], /) -> APIMethod[P, R]: ...
@overload
def task(**options: Any) -> Callable[[Callable[P, R]], APIMethod[P, R]]: ...
def task(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Like `@api`, for long jobs: the route also gets `/submit`, `/status`, `/get`, `/retry`
    and `/cancel` (`?task_id=`); the call then runs in the background (`nbserve._runtime.execution.task_store`)."""
    if func is not None:
        return APIMethod(func, is_task=True, **options)
    return lambda f: APIMethod(f, is_task=True, **options)
