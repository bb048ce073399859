"""The glue between a `Deployment` and a `Dispatcher`: one `APIBatcher` per batchable API.

`Deployment.call` hands a batchable API's validated kwargs here; the batch field's value goes
to the dispatcher, and each merged batch goes to the executor as one ordinary call, so inline
and worker-process executors batch the same way. The dispatcher keeps one batch in flight per
ready worker (`Executor.batch_slots`: one for the inline executor) and is woken through
`Executor.capacity_listeners` when a worker becomes ready or goes away.

Requests the dispatcher turns away (503: queue full, deployment stopping) are counted in
`/metrics` (`nbserve_batch_shed_total`) and logged to the service log, where `%serve logs` and
`handle.logs()` show them; under a flood the log gets one line per second with the count, not
a line per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbserve._runtime.execution.batching.containers import BatchTypeError
from nbserve._runtime.execution.batching.dispatcher import Dispatcher
from nbserve._sdk.context import Context
from nbserve.exceptions import InvalidArgument

if TYPE_CHECKING:
    from nbserve._runtime.execution.executor import Executor
    from nbserve._runtime.metrics import ServiceMetrics
    from nbserve._sdk.method import APIMethod
    from nbserve._sdk.service import Service

__all__ = ["APIBatcher", "batchers_for"]

_SHED_LOG_INTERVAL_S = 1.0


class APIBatcher:
    """Adaptive batching for one API of one deployment."""

    def __init__(
        self,
        api: APIMethod[..., Any],
        executor: Executor,
        metrics: ServiceMetrics | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        assert api.batch_field is not None, f"{api!r} is not batchable"
        self.api = api
        self.field: str = api.batch_field
        self.executor = executor
        self.metrics = metrics
        self.logger = logger or logging.getLogger(f"nbserve.batching.{api.name}")
        self._shed_logged_at = -_SHED_LOG_INTERVAL_S
        self._shed_unlogged = 0
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
            on_shed=self._on_shed,
        )
        executor.capacity_listeners.append(self.dispatcher.wake)

    async def submit(self, kwargs: dict[str, Any], ctx: Context) -> Any:
        value = kwargs[self.field]
        try:
            return await self.dispatcher.submit(value)
        except BatchTypeError as exc:
            if exc.role != "input":
                raise  # the API's own output is wrong: a bug in the service, a 500
            raise self._not_a_batch(value, exc) from None

    def _not_a_batch(self, value: Any, exc: BatchTypeError) -> InvalidArgument:
        """The 400 for a value with no rows to batch, e.g. `{"x": 3}` for an ndarray input."""
        in_dim = self.api.batch_dim[0]
        shape = getattr(value, "shape", None)
        got = f"an array of shape {tuple(shape)}" if shape is not None else type(value).__name__
        msg = (
            f"Field {self.field!r}: {self.api.name} is batchable (batch_dim={in_dim}), so {self.field!r} "
            f"must hold rows along axis {in_dim}, got {got}; send a list of rows, "
            f'e.g. {{"{self.field}": [[1.0, 2.0]]}} for one row'
        )
        return InvalidArgument(
            msg, detail=[{"loc": [self.field], "msg": str(exc), "type": "batch_dim"}]
        )

    def _on_shed(self, reason: str, message: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_shed(self.api.name, reason)
        now = time.monotonic()
        if now - self._shed_logged_at < _SHED_LOG_INTERVAL_S:
            self._shed_unlogged += 1
            return
        more = (
            f" ({self._shed_unlogged} more turned away since the last line)"
            if self._shed_unlogged
            else ""
        )
        self.logger.warning("503 for a request to %s: %s%s", self.api.name, message, more)
        self._shed_logged_at, self._shed_unlogged = now, 0

    async def _run(self, batch: Any) -> Any:
        # One batch serves many requests, so no single request's context applies to it.
        return await self.executor.call(self.api, {self.field: batch}, Context())

    async def stop(self) -> None:
        await self.dispatcher.close()

    def __repr__(self) -> str:
        return f"<APIBatcher {self.api.name} {self.dispatcher!r}>"


def batchers_for(
    service: Service[Any],
    executor: Executor,
    metrics: ServiceMetrics | None = None,
    logger: logging.Logger | None = None,
) -> dict[str, APIBatcher]:
    """A batcher for each batchable API of `service`, keyed by API name."""
    return {
        api.name: APIBatcher(api, executor, metrics, logger)
        for api in service.apis.values()
        if api.batchable
    }
