"""What a failed `%%serve` run shows: the user's own frames and what is serving now.

When a new version's `__init__` or `on_startup` raises, the exception reaches the magic through
the registry, the server's thread and the executor: a traceback of some eighteen frames, nearly
all nbserve's and asyncio's, around the two lines of the user's code that matter. The user
needs those two lines, and to know whether the service they were calling is still there.

`for_the_user(exc, name)` trims the traceback to the frames outside nbserve and the standard
library (the cell, the user's modules, the libraries they call), and likewise the text of a
worker's traceback, which arrives as a note (its frames were in another process), and adds one
note, which
IPython prints under the error: "version 2 of 'Echo' keeps serving at http://…", or that
nothing is serving. The exception object is the user's own (same type, same message), so
`except ValueError` around `%%serve` in a script still works. The full traceback stays in the
service log (`%serve logs NAME`).
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbserve._notebook.registry import Registry

__all__ = ["for_the_user", "user_frames", "user_frames_text"]

_NBSERVE = str(Path(__file__).resolve().parents[1])
_STDLIB = tuple(
    {str(Path(sysconfig.get_paths()[key]).resolve()) for key in ("stdlib", "platstdlib")}
)


def _internal(filename: str) -> bool:
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return False
    if path.startswith(_NBSERVE):
        return True
    # The standard library, but not site-packages inside it (a venv-less install keeps those there).
    return path.startswith(_STDLIB) and "-packages" not in path


def user_frames(tb: TracebackType | None) -> TracebackType | None:
    """`tb` without nbserve's frames and the standard library's (a new chain; `tb` is untouched)."""
    kept: list[TracebackType] = []
    while tb is not None:
        if not _internal(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    chain: TracebackType | None = None
    for frame_tb in reversed(kept):
        chain = TracebackType(chain, frame_tb.tb_frame, frame_tb.tb_lasti, frame_tb.tb_lineno)
    return chain


_FRAME = re.compile(r'^  File "([^"]+)", line \d+')


def user_frames_text(text: str) -> str:
    """A traceback printed as text (from a worker process) without nbserve's and the standard
    library's frames; lines that are not part of a frame (the header, the error) are kept."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        frame = _FRAME.match(line)
        if frame is not None:
            skipping = _internal(frame.group(1))
        elif not line.startswith("    "):  # a frame's source and caret lines are indented more
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out)


def serving_now(registry: Registry, name: str) -> str:
    """One line: which version of `name` is serving after a failed run, if any."""
    entry = registry.services().get(name)
    if entry is None:
        return f"nbserve: {name!r} was not started; fix the error and run the cell again"
    if entry.state in ("running", "starting"):
        number = entry.versions[-1].number
        return f"nbserve: the new version failed; version {number} of {name!r} keeps serving at {entry.public_url}"
    return f"nbserve: {name!r} is stopped until this cell runs without error"


def for_the_user(exc: BaseException, name: str, registry: Registry) -> BaseException:
    """`exc` with only the user's frames and a note saying what serves now (see the module doc)."""
    exc = exc.with_traceback(user_frames(exc.__traceback__))
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):  # a worker's traceback comes as a note (its frames were there)
        notes[:] = [
            user_frames_text(n) if "Traceback (most recent call last)" in n else n for n in notes
        ]
    if hasattr(exc, "add_note"):
        exc.add_note(serving_now(registry, name))
    # An exception chained behind it inside nbserve (a failed cleanup) is noise here; the user's
    # own `raise ... from ...` (a __cause__) is kept.
    exc.__suppress_context__ = True
    return exc
