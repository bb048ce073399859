"""The load generator's process: `python -m nbserve._notebook.tester.loadgen < config.json`.

Why a process: requests sent from the kernel would share its GIL with the server they measure
(an inline service runs on a thread of the same process), so the numbers would describe the
client as much as the server. Here `concurrency` client tasks send requests on one asyncio loop
with a keep-alive pool, each waiting for its answer before sending the next, until `duration`
seconds have passed (or `requests` were sent).

Config (JSON on stdin): `url` (base, prefix included), `token`, `concurrency`, `duration`,
`requests` (a cap, or null), `bodies` (list of `{path, content_type, body}`; sent round-robin),
`out` (a file for the samples). Stdout carries one JSON progress line about every 0.2 s
(`{"done": n, "elapsed": s}`); the samples file holds `{"samples": [[start_s, latency_ms,
status, bytes, error], ...]}`, one row per request (status 0 and an error when no answer came).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["main", "run"]

Sample = tuple[float, float, int, int, str]


async def run(config: dict[str, Any]) -> list[Sample]:
    url = str(config["url"]).rstrip("/")
    concurrency = int(config["concurrency"])
    duration = float(config["duration"])
    cap = config.get("requests")
    bodies = list(config["bodies"])
    headers = {"Authorization": f"Bearer {config['token']}"} if config.get("token") else {}
    samples: list[Sample] = []
    order = itertools.cycle(range(len(bodies)))
    sent = itertools.count()
    begin = time.perf_counter()
    deadline = begin + duration

    async def user(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            if cap is not None and next(sent) >= cap:
                return
            spec = bodies[next(order)]
            start = time.perf_counter()
            status, size, error = 0, 0, ""
            try:
                response = await client.post(
                    url + spec["path"],
                    content=str(spec["body"]).encode(),
                    headers={**headers, "Content-Type": spec["content_type"]},
                )
                status, size = response.status_code, len(response.content)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            end = time.perf_counter()
            samples.append((start - begin, (end - start) * 1000, status, size, error))

    async def report() -> None:
        while True:
            print(
                json.dumps({"done": len(samples), "elapsed": time.perf_counter() - begin}),
                flush=True,
            )
            await asyncio.sleep(0.2)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # trust_env=False: a proxy from the environment must not sit between us and loopback.
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:
        reporter = asyncio.ensure_future(report())
        try:
            await asyncio.gather(*(user(client) for _ in range(concurrency)))
        finally:
            reporter.cancel()
    print(json.dumps({"done": len(samples), "elapsed": time.perf_counter() - begin}), flush=True)
    return samples


def main() -> None:
    config = json.loads(sys.stdin.read())
    samples = asyncio.run(run(config))
    Path(config["out"]).write_text(json.dumps({"samples": samples}))


if __name__ == "__main__":
    main()
