"""Reading an API function's signature: its inputs (without `self` and the context parameter),
their resolved type hints and defaults, and the declaration errors BentoML users hit
(`*args`, a positional-only parameter beside others), raised at decoration with the fix.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic.fields import FieldInfo

from nbserve.exceptions import ServiceDefinitionError

__all__ = [
    "SCHEMA_ERRORS",
    "Param",
    "api_params",
    "first_line",
    "qualname",
    "return_hint",
    "type_name",
]

EMPTY: Any = inspect.Parameter.empty
# What building a pydantic schema for a type nbserve cannot publish raises.
SCHEMA_ERRORS = (PydanticSchemaGenerationError, PydanticUserError, TypeError, ValueError)


@dataclass(frozen=True)
class Param:
    """One input of an API."""

    name: str
    hint: Any
    """The resolved annotation (`Any` when there is none), `Annotated` metadata kept."""
    default: Any
    """`EMPTY`, a plain default, or the `pydantic.Field(...)` given as the default."""
    positional_only: bool

    @property
    def field_info(self) -> FieldInfo | None:
        """The default as a pydantic `FieldInfo` (None for a required plain parameter)."""
        if isinstance(self.default, FieldInfo):
            return self.default
        if self.default is EMPTY:
            return None
        info: FieldInfo = FieldInfo(default=self.default)
        return info

    @property
    def required(self) -> bool:
        info = self.field_info
        return info is None or info.is_required()


def qualname(func: Callable[..., Any]) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return name if isinstance(name, str) else repr(func)


def first_line(exc: Exception) -> str:
    """The first line of an error's message (pydantic's run long), or its type's name."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return (
            tp.__qualname__
            if tp.__module__ in ("builtins", "__main__")
            else f"{tp.__module__}.{tp.__qualname__}"
        )
    return repr(tp).replace("typing.", "")


def _hints(func: Callable[..., Any], where: str) -> dict[str, Any]:
    """The function's annotations, evaluated (they may be strings under
    `from __future__ import annotations`), with `Annotated` metadata kept."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # find and name the annotation that failed, below
        pass
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    namespace = dict(vars(module)) if module is not None else {}
    namespace.update(getattr(func, "__globals__", {}))
    hints: dict[str, Any] = {}
    for name, annotation in getattr(func, "__annotations__", {}).items():
        if not isinstance(annotation, str):
            hints[name] = annotation
            continue
        try:
            hints[name] = eval(annotation, namespace)  # the user's own annotation, as typing does
        except Exception as exc:
            what = "the return type" if name == "return" else f"parameter '{name}'"
            msg = f"{where}: cannot resolve the type {annotation!r} of {what} ({type(exc).__name__}: {exc}); import or define it at module level, before the class"
            raise ServiceDefinitionError(msg) from None
    return hints


def return_hint(func: Callable[..., Any]) -> Any:
    """The return annotation, resolved; `Any` when there is none."""
    if "return" not in getattr(func, "__annotations__", {}):
        return Any
    return _hints(func, qualname(func)).get("return", Any)


def api_params(func: Callable[..., Any], *, ctx_param: str | None) -> list[Param]:
    """The API's inputs in declaration order, without `self` and the context parameter.

    `func` is the function as written in the class body: its first parameter is the instance
    and is skipped (a bound method's signature has none)."""
    where = qualname(func)
    parameters = list(inspect.signature(func).parameters.values())
    if (
        not inspect.ismethod(func)
        and parameters
        and parameters[0].kind
        in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ):
        parameters = parameters[1:]
    hints = _hints(func, where) if getattr(func, "__annotations__", None) else {}
    params: list[Param] = []
    for p in parameters:
        if p.name == ctx_param:
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            msg = f"{where}: *{p.name} is not supported in an API signature, because a request names each of its inputs; declare each input as a parameter (def {where.rsplit('.', 1)[-1]}(self, text: str, n: int = 1)) or take one list (items: list[str])"
            raise ServiceDefinitionError(msg)
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            msg = f"{where}: **{p.name} is not supported in an API signature, because the input schema must list every field; declare each input as a parameter, or take one dict parameter (options: dict[str, Any])"
            raise ServiceDefinitionError(msg)
        params.append(
            Param(
                name=p.name,
                hint=hints.get(p.name, Any),
                default=p.default,
                positional_only=p.kind is inspect.Parameter.POSITIONAL_ONLY,
            )
        )
    root = [p.name for p in params if p.positional_only]
    if root and len(params) > 1:
        others = ", ".join(repr(p.name) for p in params if p.name != root[0])
        msg = f"{where}: positional-only parameter '{root[0]}' (before '/') makes the raw request body the API's single input, so there can be no other inputs, but there are {others}; remove the '/' to take a JSON object keyed by parameter name, or keep '{root[0]}' as the only input"
        raise ServiceDefinitionError(msg)
    return params
