"""The top-level modules a model-store entry needs to load: read, never run.

A service usually loads its model with `nbserve.models.get("name").load()`, so the captured
source imports neither torch nor sklearn, yet loading needs them. Two records say what:

- `model.yaml`'s `context.framework_versions`: its keys are the import names of the frameworks
  the entry was saved with (`torch`, `cloudpickle`, `transformers`, ...);
- the pickles inside the entry: a pickle names every class and function it rebuilds as
  `module` + `qualname` (the GLOBAL and STACK_GLOBAL opcodes). `pickletools.genops` reads the
  opcodes without executing any of them, so an entry from anywhere is safe to inspect. Torch
  files are zip archives whose `*/data.pkl` is such a pickle (a whole `nn.Module` saved by
  cloudpickle names `sentence_transformers.models.Transformer`, `transformers.models.bert...`).

A pickle is recognised by its content (protocol 2+ starts with `\\x80` and the protocol
number) or by a pickle-ish suffix; weights in safetensors or `.npy` files are never read beyond
their first bytes. A pickle that ends in something else (joblib appends raw arrays) gives the
modules read up to that point.
"""

from __future__ import annotations

import _compat_pickle
import pickletools
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from nbserve._models.model import Model

__all__ = ["entry_modules", "model_modules", "pickle_modules"]

_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".pck"})
_STRINGS = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
    }
)
_NO_PUSH = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME", "PROTO"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
# (entry path, version, file hashes) -> modules: one small set per entry exported here.
_SEEN: dict[tuple[str, str, tuple[tuple[str, str], ...]], frozenset[str]] = {}


def _python3_name(module: str) -> str:
    """Protocol 2 pickles name `__builtin__`, `copy_reg`...: Python 2's names, as pickle does."""
    return _compat_pickle.IMPORT_MAPPING.get(module, module)


def _globals(stream: IO[bytes]) -> Iterator[str]:
    """The `module` of every global the pickle references, in order."""
    memo: dict[int, object] = {}
    recent: list[object] = []  # what the last opcodes pushed: STACK_GLOBAL pops two strings
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name == "GLOBAL" or name == "INST":
                yield _python3_name(str(arg).split(" ", 1)[0])
            elif name == "STACK_GLOBAL":
                if len(recent) >= 2 and isinstance(recent[-2], str):
                    yield _python3_name(recent[-2])
                recent.append(None)
            elif name in _STRINGS:
                recent.append(arg if isinstance(arg, str) else None)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                memo[arg] = recent[-1] if recent else None
            elif name in _GETS and isinstance(arg, int):
                recent.append(memo.get(arg))
            elif name not in _NO_PUSH:
                recent.append(None)
            del recent[:-2]
            if name == "STOP":
                return
    except (ValueError, EOFError, UnicodeDecodeError):
        return  # not (or no longer) a pickle: keep what was read


def pickle_modules(path: Path) -> set[str]:
    """Top-level modules the pickles in this file reference (a pickle, or a torch zip file)."""
    found: set[str] = set()
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(b"PK\x03\x04"):
            try:
                with zipfile.ZipFile(f) as archive:
                    for member in archive.namelist():
                        if member.endswith(".pkl"):
                            with archive.open(member) as inner:
                                found.update(m.split(".")[0] for m in _globals(inner))
            except zipfile.BadZipFile:
                return found
        elif (
            len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
        ) or path.suffix.lower() in _PICKLE_SUFFIXES:
            found.update(m.split(".")[0] for m in _globals(f))
    found.discard("")
    found.discard("__main__")  # a class pickled by reference to the notebook cannot be pinned
    return found


def model_modules(model: Model) -> set[str]:
    """Top-level modules needed to load `model`: its frameworks and what its pickles name.

    Remembered per entry and file hashes: the export verifies the files against those hashes
    before it writes them, so a second export of the same entry does not read its pickles again.
    """
    key = (model.path, model.version, tuple(sorted(model.info.files.items())))
    if key not in _SEEN:
        root = Path(model.path)
        paths = [root / rel for rel in sorted(model.info.files)]
        _SEEN[key] = frozenset(entry_modules(model.info.context.framework_versions, paths))
    return set(_SEEN[key])


def entry_modules(framework_versions: Mapping[str, str], paths: Iterable[Path]) -> set[str]:
    """Top-level modules an entry with these frameworks and files needs (also for an entry
    that is not in a store yet: a Hugging Face model a bento packs from its cache)."""
    modules = set(framework_versions)
    for path in paths:
        modules |= pickle_modules(path)
    return {m.split(".")[0] for m in modules if m}
