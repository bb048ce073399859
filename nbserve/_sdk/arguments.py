"""`use_arguments()`: values a service module reads at import, given on the command line.

`nbserve serve service.py --arg name=dog --arg size=3` (or a bento's build arguments) sets
them; `args = nbserve.use_arguments()` reads them as attributes, or `use_arguments(MyArgs)`
validates them with a pydantic model, as BentoML's `bentoml.use_arguments` does. They travel
to worker processes in the environment (`NBSERVE_ARGS`, JSON), so every process of a service
sees the same values.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from nbserve.exceptions import InvalidArgument

__all__ = ["ENV_VAR", "parse_arguments", "set_arguments", "use_arguments"]

ENV_VAR = "NBSERVE_ARGS"
M = TypeVar("M", bound=BaseModel)


def parse_arguments(pairs: Iterable[str]) -> dict[str, str]:
    """`["name=dog", "size=3"]` → `{"name": "dog", "size": "3"}` (values stay strings)."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            msg = f"--arg {pair!r} must be KEY=VALUE, e.g. --arg model_name=iris"
            raise InvalidArgument(msg)
        parsed[key.strip()] = value
    return parsed


def set_arguments(arguments: Mapping[str, Any]) -> None:
    """Make `arguments` what `use_arguments()` returns here and in worker processes."""
    os.environ[ENV_VAR] = json.dumps(dict(arguments), sort_keys=True)


def _current() -> dict[str, Any]:
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        msg = f"${ENV_VAR} must hold a JSON object of arguments, got {raw[:80]!r}"
        raise InvalidArgument(msg)
    return value


@overload
def use_arguments(model: type[M]) -> M: ...
@overload
def use_arguments(model: None = None) -> types.SimpleNamespace: ...
def use_arguments(model: type[BaseModel] | None = None) -> BaseModel | types.SimpleNamespace:
    """The service's arguments: a namespace, or an instance of `model` validated from them."""
    arguments = _current()
    if model is None:
        return types.SimpleNamespace(**arguments)
    try:
        return model(**arguments)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        msg = f"the service's arguments do not fit {model.__name__} ({fields}): pass them as `nbserve serve ... --arg KEY=VALUE`; {exc.errors()[0]['msg']}"
        raise InvalidArgument(msg) from None
