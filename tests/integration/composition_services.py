"""Services the composition tests serve: a depended service with its own pool of 2 workers and
the services that use it. A module of its own, so a worker importing it by name loads only these."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import nbserve


@nbserve.service(workers=2)
class Pool:
    """The depended service: runs in its own 2 worker processes when composed."""

    @nbserve.api(batchable=True, max_batch_size=8, max_latency_ms=5000)
    def double(self, xs: list[int]) -> list[int]:
        return [2 * x for x in xs]

    @nbserve.api
    def pid(self) -> int:
        return os.getpid()

    @nbserve.api
    def meet(self, where: str, who: str, other: str) -> dict[str, object]:
        """Say `who` has arrived, then wait (up to 30 s) for `other` to arrive too.

        Two calls that run one after the other never meet: the first gives up waiting.
        Two that run at once both see the other: concurrency shown by order, not by time.
        """
        folder = Path(where)
        (folder / who).write_text(str(os.getpid()))
        deadline = time.monotonic() + 30
        while not (folder / other).exists():
            if time.monotonic() > deadline:
                return {"who": who, "met": False, "pid": os.getpid()}
            time.sleep(0.01)
        return {"who": who, "met": True, "pid": os.getpid()}


@nbserve.service
class Front:
    """Uses `Pool` from a sync API and from an async API (`to_async` + `asyncio.gather`)."""

    pool = nbserve.depends(Pool)

    @nbserve.api
    def double(self, xs: list[int]) -> list[int]:
        result: list[int] = self.pool.double(xs)
        return result

    @nbserve.api
    def where(self) -> dict[str, int]:
        return {"front": os.getpid(), "pool": self.pool.pid()}

    @nbserve.api
    async def both(self, where: str) -> list[dict[str, object]]:
        first, second = await asyncio.gather(
            self.pool.to_async.meet(where=where, who="a", other="b"),
            self.pool.to_async.meet(where=where, who="b", other="a"),
        )
        return [first, second]


@nbserve.service
class Plain:
    """A depended service that declares neither workers nor resources: stays in process."""

    @nbserve.api
    def pid(self) -> int:
        return os.getpid()


@nbserve.service
class UsesPlain:
    plain = nbserve.depends(Plain)

    @nbserve.api
    def pids(self) -> dict[str, int]:
        return {"front": os.getpid(), "plain": self.plain.pid()}
