"""BentoML 1.1's legacy runners, enough for the 1.2+ migration path: `Model.to_runner()` and
`runner_service(runner=...)`.

A `Runner` wraps a stored model and loads it on first use (or `init_local()`). Its methods are
the loaded object's: `runner.predict.run(x)`, `await runner.predict.async_run(x)`, and
`runner.run(x)` for the default method (`__call__`, else `predict`). `runner_service(runner)`
turns it into a service whose APIs are the runner's methods, so that
`dep = nbserve.depends(SampleService)` followed by `self.dep.predict(x)` (1.2 style) or
`self.dep.predict.run(x)` (the 1.1 style the migration guide keeps) both work.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from nbserve.exceptions import InvalidArgument, ServiceDefinitionError

if TYPE_CHECKING:
    from nbserve._models.model import Model
    from nbserve._sdk.method import APIMethod
    from nbserve._sdk.service import Service

__all__ = ["Runner", "RunnerMethod", "runner_service"]

# Methods a runner offers when neither `method_configs` nor the model's signatures name any:
# what BentoML's framework runners expose for the common model kinds.
_DEFAULT_METHODS = ("predict", "__call__")


class RunnerMethod:
    """One method of a runner: call it directly, or with BentoML 1.1's `.run` / `.async_run`."""

    def __init__(self, runner: Runner, name: str, config: Mapping[str, Any]) -> None:
        self.runner = runner
        self.name = name
        self.batchable = bool(config.get("batchable", False))
        self.batch_dim = config.get("batch_dim", 0)
        self.max_batch_size = config.get("max_batch_size", runner.max_batch_size)
        self.max_latency_ms = config.get("max_latency_ms", runner.max_latency_ms)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        target = self.runner.loaded()
        func = getattr(target, self.name, None)
        if func is None or not callable(func):
            msg = f"runner {self.runner.name!r}: the model {type(target).__name__} has no method {self.name!r}; its runner methods are {', '.join(self.runner.method_names)}"
            raise InvalidArgument(msg)
        return func(*args, **kwargs)

    async def async_run(self, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.run, *args, **kwargs)

    __call__ = run

    def __repr__(self) -> str:
        return f"<RunnerMethod {self.runner.name}.{self.name}>"


class Runner:
    """A legacy runner over a stored model (`nbserve.models.get(tag).to_runner()`)."""

    def __init__(
        self,
        model: Model,
        *,
        name: str | None = None,
        max_batch_size: int | None = None,
        max_latency_ms: int | None = None,
        method_configs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.model = model
        self.name = name or model.name.replace("-", "_").lower()
        self.max_batch_size = 100 if max_batch_size is None else max_batch_size
        self.max_latency_ms = 60_000 if max_latency_ms is None else max_latency_ms
        signatures = model.info.options.get("signatures") or {}
        configs: dict[str, Mapping[str, Any]] = {
            str(k): (v if isinstance(v, Mapping) else {}) for k, v in signatures.items()
        }
        configs.update(method_configs or {})
        if not configs:
            configs = {m: {} for m in _DEFAULT_METHODS}
        self.methods = {m: RunnerMethod(self, m, c) for m, c in configs.items()}
        self._loaded: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # A runner travels to worker processes inside its service; each loads the model anew.
        return {k: v for k, v in self.__dict__.items() if k not in ("_loaded", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _loaded=None, _lock=threading.Lock())

    @property
    def method_names(self) -> list[str]:
        return list(self.methods)

    @property
    def models(self) -> list[Model]:
        return [self.model]

    def init_local(self, quiet: bool = False) -> None:
        """Load the model in this process now (BentoML's name for it)."""
        self.loaded()

    def loaded(self) -> Any:
        with self._lock:
            if self._loaded is None:
                self._loaded = self.model.load()
            return self._loaded

    def _default(self) -> RunnerMethod:
        for name in ("__call__", "predict"):
            if name in self.methods and callable(getattr(self.loaded(), name, None)):
                return self.methods[name]
        return next(iter(self.methods.values()))

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._default().run(*args, **kwargs)

    async def async_run(self, *args: Any, **kwargs: Any) -> Any:
        return await self._default().async_run(*args, **kwargs)

    def __getattr__(self, name: str) -> RunnerMethod:
        methods = self.__dict__.get("methods", {})
        if name in methods:
            return methods[name]  # type: ignore[no-any-return]
        msg = f"runner {self.__dict__.get('name')!r} has no method {name!r}; it has {', '.join(methods) or 'none'} (pass method_configs={{{name!r}: {{}}}} to to_runner() to add one)"
        raise AttributeError(msg)

    def __repr__(self) -> str:
        return f"<Runner {self.name} over {self.model.tag}: {', '.join(self.methods)}>"


def runner_service(runner: Runner, **config: Any) -> Service[Any]:
    """A service whose APIs are `runner`'s methods (BentoML's 1.1 → 1.2 migration helper).

    Each API takes the runner's input as the whole request body, and batches when the runner
    method was configured `batchable`.
    """
    from nbserve._sdk.service import service

    if not isinstance(cast(object, runner), Runner):
        msg = f"runner_service(runner={runner!r}): expected a runner from nbserve.models.get(tag).to_runner()"
        raise ServiceDefinitionError(msg)
    namespace: dict[str, Any] = {"__doc__": f"The legacy runner {runner.name} as a service."}
    for method in runner.methods.values():
        api = _runner_api(runner, method)
        namespace[api.name] = api
    handle = type(runner.name, (), namespace)
    handle.__module__ = __name__
    return service(name=runner.name, **config)(handle)


def _runner_api(runner: Runner, method: RunnerMethod) -> APIMethod[..., Any]:
    from nbserve._sdk.method import APIMethod

    name = method.name if method.name != "__call__" else "call"

    def call(self: Any, x: Any, /) -> Any:
        return method.run(x)

    # `self.dep.predict.run(x)`: a bound method forwards attribute lookups to its function, so
    # these work on the instance in this process and in worker processes alike.
    call.run = method.run  # type: ignore[attr-defined]
    call.async_run = method.async_run  # type: ignore[attr-defined]
    call.__name__ = name
    call.__qualname__ = f"{runner.name}.{name}"
    options: dict[str, Any] = {"route": f"/{name}"}
    if method.batchable:
        options.update(
            batchable=True,
            batch_dim=method.batch_dim,
            max_batch_size=method.max_batch_size,
            max_latency_ms=method.max_latency_ms,
        )
    return APIMethod(call, **options)
