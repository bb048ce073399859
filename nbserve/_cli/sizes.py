"""Byte counts as the `nbserve` commands print them (`inspect`'s sizes, `models list`'s SIZE).

Not a command: a helper the command modules share, so their columns read the same.
"""

from __future__ import annotations

__all__ = ["human_size"]


def human_size(n: float) -> str:
    """`n` bytes in binary units: "160 B", "1.5 KiB", "231.0 MiB"; GiB is the largest unit."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
