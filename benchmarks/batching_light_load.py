"""Issue 8's batching scenario: a slow batched model at light load, with a small `max_latency_ms`.

    python benchmarks/batching_light_load.py [--workers 0] [--requests 24] [--clients 8]

The service's one API is `@api(batchable=True, max_batch_size=32, max_latency_ms=20)` and each
batch takes about 100 ms whatever its size (a model whose cost is all fixed, like a GPU call).
`--clients` threads send `--requests` requests between them (one row each) over keep-alive
connections. It prints how many got each status, the batch sizes the model saw, and the wall
time. This is a measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import threading
import time
from typing import Any

import httpx
import numpy as np

import nbserve
from nbserve.testing import running_service

BATCH_SECONDS = 0.1


@nbserve.service
class SlowModel:
    @nbserve.api(batchable=True, max_batch_size=32, max_latency_ms=20)
    def predict(self, x: np.ndarray) -> np.ndarray:
        time.sleep(BATCH_SECONDS)
        # Each row answers with the size of the batch it was in, so the client sees the batches.
        return np.full((len(x), 1), len(x))


def run(workers: int | None, requests: int, clients: int) -> dict[str, Any]:
    with running_service(SlowModel, workers=workers) as handle:
        local = threading.local()

        def post(i: int) -> tuple[int, int]:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(base_url=handle.url, timeout=60)
            reply = client.post("/predict", json={"x": [[i, 1.0]]})
            return reply.status_code, int(reply.json()[0][0]) if reply.status_code == 200 else 0

        began = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            replies = list(pool.map(post, range(requests)))
        wall = time.perf_counter() - began
    sizes = collections.Counter(size for _, size in replies if size)
    return {
        "codes": dict(collections.Counter(code for code, _ in replies)),
        # k requests answered from batches of k rows: k / k batches of that size
        "batches": {size: n // size for size, n in sorted(sizes.items())},
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=0, help="0: inline (default)")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    result = run(args.workers or None, args.requests, args.clients)
    mode = f"{args.workers} worker(s)" if args.workers else "inline"
    print(f"{mode}: {args.requests} requests from {args.clients} clients")
    print(f"  status codes: {result['codes']}")
    print(f"  batches (rows: count): {result['batches']}")
    print(f"  wall time:    {result['wall_s']:.2f} s")


if __name__ == "__main__":
    main()
