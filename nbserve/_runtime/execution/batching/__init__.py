"""Adaptive batching: one `Dispatcher` per batchable API, merging requests into batches."""

from nbserve._runtime.execution.batching.dispatcher import Dispatcher

__all__ = ["Dispatcher"]
