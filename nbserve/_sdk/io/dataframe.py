"""`pd.DataFrame` values: a list of row objects (`orient="records"`, the default) or an
object of column lists (`orient="columns"`), as BentoML sends them. pandas is imported only
when a schema mentions a DataFrame."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticCustomError, core_schema

from nbserve._sdk.io.errors import field_error

if TYPE_CHECKING:
    from pydantic.json_schema import JsonSchemaMode, JsonSchemaValue

    from nbserve.validators import DataframeSchema

__all__ = ["dataframe_core_schema", "dataframe_json_schema", "dataframe_to_jsonable"]


def _example(spec: DataframeSchema) -> str:
    cols = list(spec.columns or ("a", "b"))[:2]
    if spec.orient == "records":
        return "[{" + ", ".join(f'"{c}": {i + 1}' for i, c in enumerate(cols)) + "}]"
    return "{" + ", ".join(f'"{c}": [{i + 1}, {i + 2}]' for i, c in enumerate(cols)) + "}"


def _error(expected: str, example: str, reason: str | None) -> PydanticCustomError:
    context = {"expected": expected, "example": example, "reason": reason or ""}
    template = "Input should be {expected}, e.g. {example}" + (": {reason}" if reason else "")
    return field_error(template, kind="dataframe_type", **context)


def _validator(spec: DataframeSchema) -> Callable[[Any], Any]:
    import pandas as pd

    columns = list(spec.columns) if spec.columns else None
    records = spec.orient == "records"
    if records:
        expected = "a list of row objects (orient='records')"
    else:
        expected = "an object of column lists (orient='columns')"
    example = _example(spec)

    def validate(value: Any) -> Any:
        if isinstance(value, pd.DataFrame):
            return value
        if not isinstance(value, list if records else dict):
            raise _error(expected, example, None)
        try:
            return pd.DataFrame(value, columns=columns)
        except (ValueError, TypeError) as exc:
            raise _error(expected, example, str(exc)) from None

    return validate


def dataframe_to_jsonable(value: Any, orient: str = "records") -> Any:
    """A DataFrame as JSON-ready Python: a list of row dicts, or a dict of column lists."""
    if orient == "columns":
        return value.to_dict(orient="list")
    return value.to_dict(orient="records")


def dataframe_core_schema(spec: DataframeSchema) -> core_schema.CoreSchema:
    return core_schema.no_info_plain_validator_function(
        _validator(spec),
        serialization=core_schema.plain_serializer_function_ser_schema(
            lambda df: dataframe_to_jsonable(df, spec.orient), when_used="json"
        ),
    )


def dataframe_json_schema(spec: DataframeSchema, mode: JsonSchemaMode) -> JsonSchemaValue:
    if mode == "validation":
        out: dict[str, Any] = {"type": "dataframe", "orient": spec.orient}
        if spec.columns is not None:
            out["columns"] = list(spec.columns)
        return out
    if spec.orient == "records":
        return {"type": "array", "items": {"type": "object"}}
    return {"type": "object", "additionalProperties": {"type": "array", "items": {}}}
