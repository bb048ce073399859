"""How a service class reaches a worker process: by import path when it can, by value otherwise.

A class defined in an importable module (`svc.py`, a package) is sent as its module and
qualified name, and the worker imports it: its module-level objects are rebuilt there rather
than pickled, as BentoML's workers re-import the service from its import string. A class
defined in a notebook cell (module `__main__`) or in a function cannot be imported by name, so
it is sent by value with cloudpickle (plain pickle makes a spawned worker fail with
"Can't get attribute 'Model' on <module '__main__'>": reference/jupyter.md finding 4).

By value, the class is pickled with three substitutions, because the worker needs to call the
user's code, not to rebuild the server's view of it:
- an `@api` method becomes its plain function (the input/output specs stay in the server: they
  hold pydantic adapters, and rebuilding them would re-resolve annotations against the pickled
  function's partial globals);
- a `Service` referenced from the code (a dependency, a helper) becomes a `ServiceStub` with
  `inner`, `name` and `__call__`, which is all a worker uses of it;
- a `depends(...)` attribute is rebuilt without its lock.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import sys
from dataclasses import dataclass
from typing import Any

import cloudpickle

__all__ = ["ServiceRef", "ServiceStub", "pack_service", "unpack_service"]


@dataclass(frozen=True)
class ServiceRef:
    """Where the worker finds the user class: `module` + `qualname` (+ `file`), or `inner` by value."""

    name: str
    module: str | None = None
    qualname: str | None = None
    file: str | None = None
    inner: type | None = None


class ServiceStub:
    """A `Service` as a worker sees it: the user class and a way to instantiate it."""

    def __init__(self, inner: type, name: str) -> None:
        self.inner = inner
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<nbserve service {self.name} (in a worker)>"


def _same(obj: Any) -> Any:
    return obj


def _dependency(on: Any, url: str | None, attr: str | None, deployment: str | None = None) -> Any:
    from nbserve._sdk.dependency import Dependency

    dep: Dependency[Any] = Dependency(on, url=url, deployment=deployment)
    if attr is not None:
        dep.attr = attr
    return dep


class _ServicePickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle with the substitutions listed in the module docstring."""

    def reducer_override(self, obj: Any) -> Any:
        from nbserve._sdk.dependency import Dependency
        from nbserve._sdk.method import APIMethod
        from nbserve._sdk.service import Service

        if isinstance(obj, APIMethod):
            return _same, (obj.func,)
        if isinstance(obj, Service):
            return ServiceStub, (obj.inner, obj.name)
        if isinstance(obj, Dependency):
            return _dependency, (obj.on, obj.url, getattr(obj, "attr", None), obj.deployment)
        return super().reducer_override(obj)


def _importable(inner: type, target: object) -> bool:
    """Whether `module.qualname` names `target` (the service) or `inner`, so the worker can import it."""
    module = sys.modules.get(inner.__module__)
    if module is None or inner.__module__ == "__main__" or "<locals>" in inner.__qualname__:
        return False
    obj: Any = module
    for part in inner.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is target or obj is inner


def pack_service(service: Any) -> bytes:
    """The bytes a worker turns back into the user class (see the module docstring)."""
    inner = service.inner
    if _importable(inner, service):
        module = sys.modules[inner.__module__]
        ref = ServiceRef(
            service.name, inner.__module__, inner.__qualname__, getattr(module, "__file__", None)
        )
    else:
        ref = ServiceRef(service.name, inner=inner)
    stream = io.BytesIO()
    _ServicePickler(stream, protocol=5).dump(ref)
    return stream.getvalue()


def unpack_service(blob: bytes) -> type:
    """The user class in this (worker) process."""
    ref: ServiceRef = cloudpickle.loads(blob)
    if ref.inner is not None:
        return ref.inner
    assert ref.module is not None
    assert ref.qualname is not None
    try:
        module = importlib.import_module(ref.module)
    except ImportError:
        if ref.file is None:
            raise
        # A module the server loaded from a path (`nbserve serve svc.py:Svc`) rather than by name.
        spec = importlib.util.spec_from_file_location(ref.module, ref.file)
        if spec is None or spec.loader is None:
            raise
        module = importlib.util.module_from_spec(spec)
        sys.modules[ref.module] = module
        spec.loader.exec_module(module)
    obj: Any = module
    for part in ref.qualname.split("."):
        obj = getattr(obj, part)
    inner = getattr(obj, "inner", obj)  # the decorated Service, or the class itself
    if not isinstance(inner, type):
        msg = f"{ref.module}.{ref.qualname} is {inner!r} in the worker, not the service class; keep the @nbserve.service class at module level"
        raise TypeError(msg)
    return inner
