"""Pickles that come out byte-identical from any process, and the warning when they cannot.

The model store names an entry by the hash of its files, so the same object must pickle to
the same bytes in a new kernel. Plain pickle gets close but not all the way:

- a `set`/`frozenset` is written in iteration order, which for strings depends on the
  per-process hash seed (`PYTHONHASHSEED`): torch's `_non_persistent_buffers_set` is one;
- the protocol must be fixed (pickle's highest protocol changes between Pythons);
- cloudpickle writes a class or function that cannot be imported (defined in a notebook or
  `__main__`) *by value*, with a random per-process class id and the cell's temporary file
  name, so those bytes differ in every kernel.

The first two are fixed here: `stable_dumps`'s pickler writes every set as its sorted items through
pickle's persistent-id hook (the C pickler offers no other hook for sets), and
`stable_load` turns them back into sets. The third cannot be fixed without changing what
the object means, so `warn_unstable` says so once per object and reason, as an
`UnstableVersionWarning` a user sees in the notebook and can filter, and tests can assert.
Pickle's persistent-id hook is also how `torch_files.py` keeps tensors out of the pickle.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import sys
import threading
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "PROTOCOL",
    "UnstableVersionWarning",
    "stable_dumps",
    "stable_load",
    "warn_unstable",
]

# Fixed rather than HIGHEST_PROTOCOL, whose value depends on the Python that saves.
PROTOCOL = 5
_SET = "nbserve.set"
_FROZENSET = "nbserve.frozenset"


class UnstableVersionWarning(UserWarning):
    """Saving this object again from a new process will give a new model version."""


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_unstable(what: str, why: str) -> None:
    """Warn once per process and reason that `what` (the object) will not keep its version.

    The warning points at the first caller outside nbserve (the user's `save` line), so the
    source line Python shows with it is the user's own."""
    with _warned_lock:
        if why in _warned:
            return
        _warned.add(why)
    package = str(Path(__file__).resolve().parents[1]) + os.sep
    level, frame = 1, sys._getframe(0)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    message = f"{what}: {why}. Saving it again from a new kernel or process gives a new model version (the store keeps both)."
    warnings.warn(message, UnstableVersionWarning, stacklevel=level)


def _by_reference(obj: Any) -> bool:
    """What cloudpickle decides: True when `obj` is written as an importable name."""
    import cloudpickle

    decide = getattr(cloudpickle.cloudpickle, "_should_pickle_by_reference", None)
    if decide is not None:
        return bool(decide(obj))
    return getattr(obj, "__module__", "__main__") != "__main__"  # older cloudpickle


def _sorted_items(items: set[Any] | frozenset[Any]) -> list[Any] | None:
    """`items` in an order that does not depend on the hash seed, or None when they have none."""
    try:
        return sorted(items)
    except TypeError:
        pass
    try:  # mixed types (e.g. ints and strings): by type name, then value
        return sorted(items, key=lambda v: (type(v).__qualname__, v))
    except TypeError:
        return None


@functools.cache
def _pickler_class() -> type[Any]:
    """`StablePickler`, made on first use so that importing the store skips cloudpickle."""
    import cloudpickle

    class StablePickler(cloudpickle.Pickler):  # type: ignore[misc]
        """cloudpickle with sets sorted, a fixed protocol, and a record of what went by value.

        `tensor_id`, when given, is asked first for every object: a non-None answer is written
        as a persistent id (and must be understood by the `persistent_load` given to
        `stable_load`). `by_value` lists the classes and functions cloudpickle wrote by value.
        """

        def __init__(self, file: IO[bytes], tensor_id: Callable[[Any], Any] | None = None):
            super().__init__(file, protocol=PROTOCOL)
            self._tensor_id = tensor_id
            self.sort_sets = True
            # id -> (set, its persistent id): a set met twice is written as the same id tuple,
            # which pickle then memoizes; holding the set keeps its id from being reused.
            self._set_ids: dict[int, tuple[Any, tuple[str, list[Any]]]] = {}
            self.by_value: list[str] = []

        def persistent_id(self, obj: Any) -> Any:
            if self._tensor_id is not None:
                pid = self._tensor_id(obj)
                if pid is not None:
                    return pid
            kind = type(obj)
            if (kind is set or kind is frozenset) and self.sort_sets and len(obj) > 1:
                known = self._set_ids.get(id(obj))
                if known is not None:
                    return known[1]
                items = _sorted_items(obj)
                if items is not None:
                    pid = (_SET if kind is set else _FROZENSET, items)
                    self._set_ids[id(obj)] = (obj, pid)
                    return pid
            return None

        def reducer_override(self, obj: Any) -> Any:
            if (
                isinstance(obj, (type, types.FunctionType))
                and getattr(obj, "__module__", None) != "builtins"  # e.g. types.CodeType
                and not _by_reference(obj)
            ):
                name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
                # A by-value class brings its methods along: name the class only.
                if not any(name == n or name.startswith(f"{n}.") for n in self.by_value):
                    self.by_value.append(name)
            return super().reducer_override(obj)

    return StablePickler


def stable_dumps(
    obj: Any, tensor_id: Callable[[Any], Any] | None = None
) -> tuple[bytes, list[str]]:
    """`obj` pickled by `StablePickler`, and why its bytes may still differ in a new process
    (empty when they will not)."""
    buffer = io.BytesIO()
    pickler = _pickler_class()(buffer, tensor_id)
    try:
        pickler.dump(obj)
    except RecursionError:
        # A set that (through its items) contains itself: the sorted copy would recurse
        # forever, so write sets as they are; the bytes may then vary between processes.
        buffer = io.BytesIO()
        pickler = _pickler_class()(buffer, tensor_id)
        pickler.sort_sets = False
        pickler.dump(obj)
        return buffer.getvalue(), ["it holds a set that contains itself, which cannot be sorted"]
    if not pickler.by_value:
        return buffer.getvalue(), []
    names = ", ".join(pickler.by_value)
    return buffer.getvalue(), [
        f"cloudpickle writes {names} by value (defined in a notebook or __main__, or registered as an external module), with a per-process id; define it in an importable .py module to keep one version"
    ]


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], tensor_load: Callable[[Any], Any] | None):
        super().__init__(file)
        self._tensor_load = tensor_load

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] in (_SET, _FROZENSET):
            return set(pid[1]) if pid[0] == _SET else frozenset(pid[1])
        if self._tensor_load is not None:
            return self._tensor_load(pid)
        msg = f"This pickle refers to an outside object {pid!r} that nbserve does not know; it was not written by nbserve's model store."
        raise pickle.UnpicklingError(msg)


def stable_load(file: IO[bytes], tensor_load: Callable[[Any], Any] | None = None) -> Any:
    """Read a pickle written by `StablePickler` (or any plain pickle)."""
    return _Unpickler(file, tensor_load).load()
