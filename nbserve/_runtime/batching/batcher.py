"""The glue between a `Deployment` and a `Dispatcher`: one `APIBatcher` per batchable API.

`Deployment.call` hands a batchable API's validated kwargs here; the batch field's value goes
to the dispatcher, and each merged batch goes to the executor as one ordinary call, so inline
and worker-process executors batch the same way. The dispatcher keeps one batch in flight per
ready worker (`Executor.batch_slots`: one for the inline executor) and is woken through
`Executor.capacity_listeners` when a worker becomes ready or goes away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbserve._runtime.batching.dispatcher import Dispatcher
from nbserve._sdk.context import Context

if TYPE_CHECKING:
    from nbserve._runtime.executor import Executor
    from nbserve._runtime.metrics import ServiceMetrics
    from nbserve._sdk.method import APIMethod
    from nbserve._sdk.service import Service

__all__ = ["APIBatcher", "batchers_for"]


class APIBatcher:
    """Adaptive batching for one API of one deployment."""

    def __init__(
        self, api: APIMethod[..., Any], executor: Executor, metrics: ServiceMetrics | None = None
    ) -> None:
        assert api.batch_field is not None, f"{api!r} is not batchable"
        self.api = api
        self.field: str = api.batch_field
        self.executor = executor
        slots: Callable[[], int] = lambda: executor.batch_slots  # noqa: E731
        observe = None
        if metrics is not None:
            name = api.name
            observe = lambda rows, wait: metrics.observe_batch(name, rows, wait)  # noqa: E731
        self.dispatcher = Dispatcher(
            self._run,
            name=f"API {api.name!r}",
            max_batch_size=api.max_batch_size,
            max_latency_ms=api.max_latency_ms,
            batch_dim=api.batch_dim,
            slots=slots,
            observe=observe,
        )
        executor.capacity_listeners.append(self.dispatcher.wake)

    async def submit(self, kwargs: dict[str, Any], ctx: Context) -> Any:
        return await self.dispatcher.submit(kwargs[self.field])

    async def _run(self, batch: Any) -> Any:
        # One batch serves many requests, so no single request's context applies to it.
        return await self.executor.call(self.api, {self.field: batch}, Context())

    async def stop(self) -> None:
        await self.dispatcher.close()

    def __repr__(self) -> str:
        return f"<APIBatcher {self.api.name} {self.dispatcher!r}>"


def batchers_for(
    service: Service[Any], executor: Executor, metrics: ServiceMetrics | None = None
) -> dict[str, APIBatcher]:
    """A batcher for each batchable API of `service`, keyed by API name."""
    return {
        api.name: APIBatcher(api, executor, metrics)
        for api in service.apis.values()
        if api.batchable
    }
