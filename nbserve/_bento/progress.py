"""Progress of an export: bytes hashed and bytes written, as tqdm bars.

A notebook kernel gets tqdm's notebook bar (`tqdm.auto` picks it when the widgets are there, a
text bar otherwise); a terminal gets a text bar on stderr. Elsewhere (a test, a pipe, a CI
log) the bars are off unless asked for with `progress=True`, so output stays clean. A bar
appears only after half a second: a warm export, which takes less, shows nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from nbserve._kernel import in_kernel

__all__ = ["Bar", "notice", "progress_bar", "shown"]

_DELAY_S = 0.5

Bar = Any
"""A tqdm bar (`update(n)`, `close()`); tqdm's own class is generic and untyped for mypy."""


def shown(progress: bool | None) -> bool:
    """`progress` as given, or by default: in a kernel, or when stderr is a terminal."""
    if progress is not None:
        return progress
    return in_kernel() or sys.stderr.isatty()


def progress_bar(total: int | None, description: str, progress: bool | None) -> Bar:
    """A bar counting `total` bytes, or the elapsed time when the total is not known (None);
    a disabled one (no output at all) when not `shown`."""
    if in_kernel():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(
        total=total,
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not shown(progress),
        delay=0 if progress else _DELAY_S,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format=None if total is not None else "{desc}: {elapsed}",
    )


def notice(message: str) -> None:
    """One readable line on stderr for the person exporting (not a warning with a source line)."""
    from tqdm import tqdm

    tqdm.write(f"nbserve: {message}", file=sys.stderr)
