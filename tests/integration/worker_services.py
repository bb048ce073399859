"""Services the worker-process tests serve. A module of their own, so that a worker importing
them by name (the way classes from `.py` files reach workers) loads nothing but these."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np

import nbserve
from nbserve.exceptions import InvalidArgument


def _note(event: str) -> None:
    folder = os.environ.get("NBSERVE_TEST_EVENTS")
    if folder:
        with open(Path(folder) / f"{event}-{os.getpid()}", "w"):
            pass


@nbserve.service(workers=2)
class Sleepy:
    """Each call takes `ms` milliseconds and says which process served it."""

    def __init__(self) -> None:
        _note("init")

    @nbserve.on_deployment
    def prepare() -> None:
        _note("deployment")

    @nbserve.on_startup
    def warm(self) -> None:
        _note("startup")

    @nbserve.on_shutdown
    async def close(self) -> None:
        _note("shutdown")

    @nbserve.api
    def work(self, ms: int = 20) -> int:
        time.sleep(ms / 1000)
        return os.getpid()

    @nbserve.api
    def crash(self) -> int:
        ctypes.string_at(0)  # SIGSEGV
        return 0

    @nbserve.api
    def talk(self, text: str) -> str:
        print(f"printed {text}")
        return text

    @nbserve.api
    def count(self, n: int, ctx: nbserve.Context) -> Iterator[str]:
        ctx.response.headers["X-Worker"] = str(os.getpid())
        for i in range(n):
            yield f"{i};"

    @nbserve.api
    def shout(self, text: str, /) -> str:
        """A root input: the whole body is the one positional-only argument."""
        return text.upper()

    @nbserve.api
    async def tagged(self, ctx: nbserve.Context) -> str:
        ctx.response.headers["X-Tag"] = "from-worker"
        ctx.response.status_code = 202
        return ctx.request.headers.get("x-in", "")

    @nbserve.api
    def refuse(self, x: int) -> int:
        raise InvalidArgument(f"x={x} is not allowed here; send x < 0")

    @nbserve.api
    def fail(self) -> int:
        raise ValueError("model exploded")

    @nbserve.api
    def visible(self) -> str:
        return os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


@nbserve.service(workers=1)
class Broken:
    def __init__(self) -> None:
        raise FileNotFoundError("no such model file: /models/missing.pt")

    @nbserve.api
    def hello(self) -> str:
        return "never"


@nbserve.service(workers=1, resources={"gpu": 1})
class OnGPU:
    @nbserve.api
    def visible(self) -> str:
        time.sleep(0.02)
        return os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


@nbserve.service(workers=2, resources={"gpu": 0.5})
class OnHalfGPU:
    @nbserve.api
    def visible(self) -> str:
        time.sleep(0.02)
        return os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


@nbserve.service(workers=2)
class Doubler:
    @nbserve.api(batchable=True, max_batch_size=32, max_latency_ms=2000)
    def double(self, x: np.ndarray) -> np.ndarray:
        time.sleep(0.005)
        return x * 2


def _released(name: str) -> None:
    """Block until the test creates the file `name` in the events folder (it never times out:
    a call that hangs is what the deadline tests are about)."""
    folder = Path(os.environ["NBSERVE_TEST_EVENTS"])
    while not (folder / name).exists():
        time.sleep(0.01)


@nbserve.service(workers=1, threads=2, traffic={"timeout": 1})
class Deadlines:
    """APIs that run past the 1 s deadline until the test releases them, noting how they end."""

    @nbserve.api
    def hang(self, tag: str) -> str:
        _note(f"{tag}-started")
        _released(f"{tag}-release")
        _note(f"{tag}-ended")
        return tag

    @nbserve.api
    async def ahang(self, tag: str) -> str:
        _note(f"{tag}-started")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            _note(f"{tag}-cancelled")
            raise
        return tag

    @nbserve.api
    def shang(self, tag: str) -> Iterator[str]:
        _note(f"{tag}-started")
        _released(f"{tag}-release")
        _note(f"{tag}-ended")
        yield tag

    @nbserve.api
    async def ashang(self, tag: str) -> AsyncIterator[str]:
        _note(f"{tag}-started")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            _note(f"{tag}-cancelled")
            raise
        yield tag

    @nbserve.api
    def quick(self) -> str:
        return "quick"


MEGABYTE = b"x" * 2**20


@nbserve.service(workers=1)
class BigStream:
    """A stream of 1 MiB items that notes how many it has produced (file `produced-<n>`)."""

    @nbserve.api
    def chunks(self, n: int) -> Iterator[bytes]:
        folder = Path(os.environ["NBSERVE_TEST_EVENTS"])
        try:
            for i in range(n):
                (folder / "produced.tmp").write_text(str(i + 1))
                os.replace(folder / "produced.tmp", folder / "produced")  # never read half-written
                yield MEGABYTE
        finally:
            _note("stream-closed")

    @nbserve.api
    async def achunks(self, n: int) -> AsyncIterator[bytes]:
        folder = Path(os.environ["NBSERVE_TEST_EVENTS"])
        try:
            for i in range(n):
                (folder / "produced.tmp").write_text(str(i + 1))
                os.replace(folder / "produced.tmp", folder / "produced")
                yield MEGABYTE
        finally:
            _note("stream-closed")


@nbserve.service(workers=1)
class Blocking:
    """A sync-only service (the worker runs calls on its reading thread) that blocks until released."""

    @nbserve.api
    def block(self) -> str:
        _note("block-started")
        _released("release")
        return "done"

    @nbserve.api(batchable=True, max_batch_size=4)
    def block_rows(self, x: list[int]) -> list[int]:
        _note("block-started")
        _released("release")
        return x


@nbserve.service(workers=1)
class Probed:
    """Readiness and metrics hooks, answered by the worker (sync and async alike)."""

    def __is_ready__(self) -> bool:
        return True

    async def __metrics__(self, text: str) -> str:
        return text + f"# from worker {os.getpid()}\n"

    @nbserve.api
    def hello(self) -> str:
        return "hello"


@nbserve.service(workers=1)
class Waiting:
    """An async API that waits until cancelled, noting when it starts and when it is cancelled."""

    @nbserve.api
    async def wait(self) -> str:
        _note("wait-started")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            _note("wait-cancelled")
            raise
        return "never"
