"""The rows waiting for a batch: requests in arrival order, each split across batches if it must be.

A request is queued as one `Piece` (its rows `[0, rows)`); a batch with less room than the
head piece takes the piece's first rows and leaves the rest in place, so a request keeps its
turn. `rows` is the number of rows still waiting, which the dispatcher's queue bound and its
hold decision read. A request whose caller stopped waiting is emptied where it stands and
dropped when it reaches the head (O(1), where removing it from the middle would not be).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Piece", "Request", "RowQueue"]


@dataclass(eq=False)
class Request:
    value: Any
    rows: int
    future: asyncio.Future[Any]
    enqueued: float
    parts: dict[int, Any] = field(default_factory=dict)
    """Output pieces of a split request, by the first row they answer."""
    answered: int = 0
    taken: int = 0
    """Rows taken into batches so far; the other `rows - taken` are still queued (one piece)."""


@dataclass(eq=False)
class Piece:
    """Rows `[start, stop)` of a request: the whole request unless it had to be split."""

    request: Request
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


class RowQueue:
    """Pieces of requests waiting for a batch, oldest first (see the module docstring)."""

    def __init__(self) -> None:
        self._pieces: deque[Piece] = deque()
        self.rows = 0
        """Rows still waiting."""

    def __bool__(self) -> bool:
        return bool(self._pieces)

    def push(self, request: Request) -> Piece:
        """Queue all of `request`'s rows as one piece; it stays the request's one queued piece."""
        piece = Piece(request, 0, request.rows)
        self._pieces.append(piece)
        self.rows += request.rows
        return piece

    def oldest(self) -> float:
        """When the request at the head arrived (loop time)."""
        return self._pieces[0].request.enqueued

    def head_is(self, piece: Piece) -> bool:
        return bool(self._pieces) and self._pieces[0] is piece

    def withdraw(self, piece: Piece) -> bool:
        """The caller of `piece`'s request stopped waiting: its rows still queued leave now.

        True when none of its rows had been taken into a batch: the request never ran.
        """
        request = piece.request
        if request.taken == request.rows:
            return False  # all in batches already; `piece` is one of them and must stay whole
        # `piece` is still queued (or was dropped as settled, with no rows left): emptied, it
        # counts for nothing until `drop_answered` or `take` reaches it and drops it there.
        self.rows -= piece.rows
        piece.start = piece.stop
        return request.taken == 0

    def drop_answered(self) -> None:
        """Forget queued pieces whose request is already settled (cancelled by the caller, or failed)."""
        while self._pieces and self._pieces[0].request.future.done():
            self._drop_head()

    def _drop_head(self) -> None:
        piece = self._pieces.popleft()
        self.rows -= piece.rows
        piece.start = piece.stop  # counted out once: `withdraw` may still see it

    def take(self, max_rows: int) -> tuple[list[Piece], int]:
        """Up to `max_rows` rows from the head, splitting the last piece if it does not fit."""
        pieces: list[Piece] = []
        rows = 0
        while self._pieces and rows < max_rows:
            piece = self._pieces[0]
            if piece.request.future.done():
                self._drop_head()
                continue
            room = max_rows - rows
            if piece.rows > room:  # split: this batch takes the head, the tail keeps its place
                pieces.append(Piece(piece.request, piece.start, piece.start + room))
                piece.start += room
                taken = room
            else:
                pieces.append(self._pieces.popleft())
                taken = piece.rows
            rows += taken
            piece.request.taken += taken
            self.rows -= taken
        return pieces, rows
