"""A BentoML 1.4 service file (plain `import bentoml`) for the composition parity test: a
depended service on 2 workers called from sync and async APIs (`to_async` + `asyncio.gather`).
Served unchanged by `bentoml serve` and by nbserve (with `bentoml` aliased to nbserve).
`Files` is a `cmd=` service: Python's `http.server` on `COMPOSITION_PROXY_PORT`, serving
`COMPOSITION_FILES` (BentoML's proxy mode needs fastapi in the oracle venv: scripts/setup)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import bentoml

PROXY_PORT = int(os.environ.get("COMPOSITION_PROXY_PORT", "8000"))
FILES = os.environ.get("COMPOSITION_FILES", ".")


@bentoml.service(workers=2)
class Pool:
    @bentoml.api(batchable=True, max_batch_size=8, max_latency_ms=5000)
    def double(self, xs: list[int]) -> list[int]:
        return [2 * x for x in xs]

    @bentoml.api
    def meet(self, where: str, who: str, other: str) -> bool:
        """Whether `other` arrived while `who` waited: only concurrent calls meet."""
        (Path(where) / who).write_text("here")
        deadline = time.monotonic() + 30
        while not (Path(where) / other).exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


@bentoml.service
class Front:
    pool = bentoml.depends(Pool)

    @bentoml.api
    def double(self, xs: list[int]) -> list[int]:
        return self.pool.double(xs)

    @bentoml.api
    async def both(self, where: str) -> list[bool]:
        first, second = await asyncio.gather(
            self.pool.to_async.meet(where=where, who="a", other="b"),
            self.pool.to_async.meet(where=where, who="b", other="a"),
        )
        return [first, second]


@bentoml.service(
    cmd=[
        sys.executable,
        "-m",
        "http.server",
        str(PROXY_PORT),
        "--bind",
        "127.0.0.1",
        "--directory",
        FILES,
    ],
    http={"proxy_port": PROXY_PORT},
    endpoints={"livez": "/"},
)
class Files:
    pass
