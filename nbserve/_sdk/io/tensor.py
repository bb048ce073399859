"""`np.ndarray` and `torch.Tensor` values: nested JSON lists on the wire.

Decoding is `np.asarray(value, dtype)` (or `torch.as_tensor`), then a shape check. The shape is
checked, never reshaped: a request whose data has the wrong shape is an error the client should
see, with the expected and the received shape. `-1` in a `Shape` matches any size.
The JSON schema is BentoML's extension (`{"type": "tensor", "format": "numpy-array", ...}`) in
validation mode, and plain nested number arrays in serialization mode (OpenAPI).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticCustomError, core_schema

from nbserve._sdk.io.errors import field_error
from nbserve._sdk.io.jsonschema import format_shape
from nbserve.exceptions import ServiceDefinitionError

if TYPE_CHECKING:
    from pydantic.json_schema import JsonSchemaMode, JsonSchemaValue

    from nbserve.validators import TensorSchema

__all__ = ["tensor_core_schema", "tensor_json_schema", "tensor_to_list"]


def _check_shape(got: tuple[int, ...], expected: Sequence[int] | None) -> None:
    if expected is None:
        return
    if len(got) != len(expected) or any(
        e not in (-1, g) for e, g in zip(expected, got, strict=True)
    ):
        template = "Input should be an array of shape {expected}{wildcard}, got shape {got}"
        raise field_error(
            template,
            kind="tensor_shape",
            expected=format_shape(expected),
            wildcard=" (-1: any size)" if -1 in expected else "",
            got=format_shape(got),
        )


def _not_a_tensor(what: str, reason: str) -> PydanticCustomError:
    return field_error(
        "Input should be {what}: {reason}", kind="tensor_type", what=what, reason=reason
    )


_RAGGED = "rows differ in length"


def _reason(exc: Exception) -> str:
    """numpy's and torch's complaint, shortened where it has a plain meaning."""
    text = str(exc)
    if "inhomogeneous" in text or "expected sequence of length" in text:
        return _RAGGED
    return text


def _numpy_validator(spec: TensorSchema) -> Callable[[Any], Any]:
    import numpy as np

    try:
        dtype = np.dtype(spec.dtype) if spec.dtype is not None else None
    except TypeError:
        msg = f"DType({spec.dtype!r}) is not a numpy dtype; use a name such as 'float32', 'int64' or 'bool'"
        raise ServiceDefinitionError(msg) from None
    what = (
        f"a nested list of {dtype.name} values" if dtype is not None else "a nested list of numbers"
    )

    def validate(value: Any) -> Any:
        if isinstance(value, np.ndarray) and (dtype is None or value.dtype == dtype):
            arr = value
        else:
            if isinstance(value, str | bytes | dict):
                raise _not_a_tensor(what, f"got {type(value).__name__}")
            try:
                # A value the dtype cannot hold (1e300 as float32) is the client's error: a
                # 400, not a RuntimeWarning and a silent inf (found by the fuzz test).
                # errstate is per thread (a context variable), unlike the warnings filters.
                with np.errstate(over="raise", invalid="raise"):
                    arr = np.asarray(value, dtype=dtype)
            except FloatingPointError as exc:
                raise _not_a_tensor(what, f"a value does not fit {dtype} ({exc})") from None
            except (ValueError, TypeError, OverflowError) as exc:
                raise _not_a_tensor(what, _reason(exc)) from None
            if dtype is None and arr.dtype == object:
                # Mixed or ragged data (nulls, dicts, rows of different lengths).
                raise _not_a_tensor(what, f"{_RAGGED}, or hold values that are not numbers")
        _check_shape(arr.shape, spec.shape)
        return arr

    return validate


def _torch_validator(spec: TensorSchema) -> Callable[[Any], Any]:
    import torch

    dtype = getattr(torch, spec.dtype, None) if spec.dtype is not None else None
    if spec.dtype is not None and not isinstance(dtype, torch.dtype):
        msg = f"DType({spec.dtype!r}) is not a torch dtype; use a name such as 'float32', 'int64' or 'bool'"
        raise ServiceDefinitionError(msg)
    what = (
        f"a nested list of {spec.dtype} values" if dtype is not None else "a nested list of numbers"
    )

    def validate(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            tensor = value if dtype is None or value.dtype == dtype else value.to(dtype)
        else:
            if isinstance(value, str | bytes | dict):
                raise _not_a_tensor(what, f"got {type(value).__name__}")
            try:
                tensor = torch.as_tensor(value, dtype=dtype)
            except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
                raise _not_a_tensor(what, _reason(exc)) from None
        _check_shape(tuple(tensor.shape), spec.shape)
        return tensor

    return validate


def tensor_to_list(value: Any) -> Any:
    """An ndarray or tensor as nested Python lists (for pydantic's JSON serializer)."""
    if hasattr(value, "detach"):  # torch, possibly on a GPU
        value = value.detach().cpu()
    tolist = getattr(value, "tolist", None)
    return tolist() if tolist is not None else value


def tensor_core_schema(spec: TensorSchema) -> core_schema.CoreSchema:
    validate = _numpy_validator(spec) if spec.format == "numpy-array" else _torch_validator(spec)
    return core_schema.no_info_plain_validator_function(
        validate,
        serialization=core_schema.plain_serializer_function_ser_schema(
            tensor_to_list, when_used="json"
        ),
    )


def _leaf_type(dtype: str | None) -> dict[str, Any]:
    name = (dtype or "").lower()
    if name.startswith("bool"):
        return {"type": "boolean"}
    if name.startswith(("int", "uint", "long", "short")):
        return {"type": "integer"}
    if name.startswith(("str", "unicode", "bytes", "<u", "|s")):
        return {"type": "string"}
    return {"type": "number"}


def tensor_json_schema(spec: TensorSchema, mode: JsonSchemaMode) -> JsonSchemaValue:
    if mode == "validation":
        out: dict[str, Any] = {"type": "tensor", "format": spec.format}
        if spec.dtype is not None:
            out["dtype"] = spec.dtype
        if spec.shape is not None:
            out["shape"] = list(spec.shape)
        if spec.dim is not None:
            out["dim"] = spec.dim
        return out
    # Serialization (OpenAPI): nested arrays, one level per axis when the shape is known.
    if spec.shape is None:
        return {"type": "array", "items": {}}
    node = _leaf_type(spec.dtype)
    for _ in spec.shape:
        node = {"type": "array", "items": node}
    return node
