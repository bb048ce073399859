"""JSON for response values, with orjson on the hot path.

`dumps` writes compact JSON (BentoML's `json.dumps` adds spaces; no client depends on them).
numpy arrays and scalars go through orjson natively (`OPT_SERIALIZE_NUMPY`); pydantic models,
DataFrames, tensors and everything pydantic knows (dates, Decimal, Path, sets, ...) through
`_default`. Dict keys that are not strings are written as strings, as pydantic does.

NaN and ±Infinity are written as `null`, as orjson and pydantic do: the body is always valid
JSON, which a browser's `JSON.parse` accepts (Python's `json` module would write `NaN`, which
it does not). A client that wants NaN back declares a float dtype: `np.array([None], "f4")`
is `[nan]`.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python

__all__ = ["dumps"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
# Types that skip the BaseModel check: pydantic's metaclass makes `isinstance` cost ~0.5 µs.
_PLAIN = frozenset({dict, list, tuple, str, int, float, bool, type(None)})


def _default(obj: Any) -> Any:
    """What orjson cannot write itself, as something it can."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    module = type(obj).__module__
    if module.startswith("numpy"):
        # Non-contiguous arrays, object or float128 arrays, and odd scalars.
        return obj.tolist() if hasattr(obj, "tolist") else obj.item()
    if module.startswith("pandas"):
        if hasattr(obj, "to_dict") and hasattr(obj, "columns"):
            return obj.to_dict(orient="records")
        if hasattr(obj, "tolist"):
            return obj.tolist()  # Series, Index
        if hasattr(obj, "isoformat"):
            return obj.isoformat()  # Timestamp
    if module.startswith("torch") and hasattr(obj, "detach"):
        tensor = obj.detach().cpu()
        try:
            return tensor.numpy()  # orjson writes the array natively
        except (TypeError, RuntimeError):
            return tensor.tolist()  # bfloat16 and others numpy lacks
    try:
        return to_jsonable_python(obj)
    except PydanticSerializationError:
        msg = f"Type is not JSON serializable: {type(obj).__name__}"
        raise TypeError(msg) from None


def dumps(value: Any) -> bytes:
    """`value` as compact JSON bytes."""
    if type(value) not in _PLAIN and isinstance(value, BaseModel):
        return value.__pydantic_serializer__.to_json(value, fallback=_default)
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        # orjson refuses integers beyond 64 bits and nesting deeper than 254; pydantic-core
        # writes both.
        try:
            return to_json(value, fallback=_default)
        except (PydanticSerializationError, TypeError, ValueError):
            msg = f"cannot encode the API's return value of type {type(value).__name__} as JSON ({exc}); return JSON types, pydantic models, numpy arrays or DataFrames"
            raise TypeError(msg) from None
