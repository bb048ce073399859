"""Merge requests into one batch and split the batch's output back, along `batch_dim`.

Supported containers: `list` (and `tuple`), `np.ndarray`, `pd.DataFrame` / `pd.Series` and
`torch.Tensor`. The input and output axes are `batch_dim = (in_dim, out_dim)`; lists and pandas
objects batch along axis 0 only. pandas and torch are looked up in `sys.modules` rather than
imported: a value can only be a DataFrame if pandas is already loaded, so a service that never
touches pandas never pays for importing it.

BentoML's containers treat a `torch.Tensor` as one row unless a torch integration module was
imported first, and then `list.extend` splits it into row tensors (reference/bentoml.md §4.1);
here every container is known up front.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["BatchTypeError", "batch_size", "merge", "slice_rows", "split"]


class BatchTypeError(TypeError):
    """A value a batchable API received or returned cannot be batched along the given axis.

    `role` is `"input"` (the request's value: the client's mistake) or `"output"` (what the
    API returned: the service's).
    """

    def __init__(self, message: str, role: str = "input") -> None:
        super().__init__(message)
        self.role = role


def _pandas(value: Any) -> Any:
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame | pd.Series):
        return pd
    return None


def _torch(value: Any) -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return torch
    return None


def _kind(value: Any, dim: int, role: str) -> str:
    if isinstance(value, np.ndarray):
        if value.ndim <= dim:
            msg = f"batch_dim={dim} is out of range for the {role} array of shape {value.shape}; a batch needs at least {dim + 1} dimension(s)"
            raise BatchTypeError(msg, role)
        return "ndarray"
    if isinstance(value, list | tuple):
        kind = "list"
    elif _pandas(value) is not None:
        kind = "pandas"
    elif _torch(value) is not None:
        if value.dim() <= dim:
            msg = f"batch_dim={dim} is out of range for the {role} tensor of shape {tuple(value.shape)}"
            raise BatchTypeError(msg, role)
        return "torch"
    else:
        msg = f"a batchable API's {role} must be a list, np.ndarray, pd.DataFrame, pd.Series or torch.Tensor with one row per item, got {type(value).__name__}"
        raise BatchTypeError(msg, role)
    if dim != 0:
        msg = f"batch_dim={dim}: a {type(value).__name__} batches along axis 0 only; use batch_dim=0 or an ndarray/tensor"
        raise BatchTypeError(msg, role)
    return kind


def batch_size(value: Any, dim: int = 0) -> int:
    """The number of rows in `value` along `dim`."""
    kind = _kind(value, dim, "input")
    if kind == "ndarray" or kind == "torch":
        return int(value.shape[dim])
    return len(value)


def slice_rows(value: Any, start: int, stop: int, dim: int = 0) -> Any:
    """Rows `[start, stop)` of `value` along `dim` (a view where the container allows one)."""
    kind = _kind(value, dim, "input")
    if kind == "ndarray":
        return value[(slice(None),) * dim + (slice(start, stop),)]
    if kind == "torch":
        return value.narrow(dim, start, stop - start)
    if kind == "pandas":  # each caller gets rows numbered from 0, as an unbatched call would
        return value.iloc[start:stop].reset_index(drop=True)
    return value[start:stop]


def merge(values: Sequence[Any], dim: int = 0) -> Any:
    """One batch from several values of the same container type, concatenated along `dim`."""
    if len(values) == 1:
        return values[0]
    kinds = {_kind(v, dim, "input") for v in values}
    if len(kinds) > 1:
        names = sorted({type(v).__name__ for v in values})
        msg = f"cannot batch values of different types together: {', '.join(names)}"
        raise BatchTypeError(msg, "input")
    first = values[0]
    kind = kinds.pop()
    if kind == "ndarray":
        return np.concatenate(values, axis=dim)
    if kind == "torch":
        return _torch(first).cat(list(values), dim=dim)
    if kind == "pandas":
        return _pandas(first).concat(values, ignore_index=True)
    merged: list[Any] = []
    for v in values:
        merged.extend(v)
    return merged


def split(output: Any, sizes: Sequence[int], dim: int = 0) -> list[Any]:
    """Split a batch's `output` into pieces of `sizes` rows along `dim` (views where possible).

    Raises `BatchTypeError` when the output is not a container or its row count is not
    `sum(sizes)`: a batchable API must return one result row per input row.
    """
    kind = _kind(output, dim, "output")
    total = sum(sizes)
    rows = int(output.shape[dim]) if kind == "ndarray" or kind == "torch" else len(output)
    if rows != total:
        msg = f"a batchable API returned {rows} row(s) for a batch of {total}; it must return one row per input row along batch_dim={dim}"
        raise BatchTypeError(msg, "output")
    if len(sizes) == 1:
        return [output]
    pieces = []
    start = 0
    for size in sizes:
        pieces.append(slice_rows(output, start, start + size, dim))
        start += size
    return pieces
