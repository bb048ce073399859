"""Workers and CPU threads: a torch model inline vs in 2 worker processes, with concurrent clients.

    python benchmarks/worker_threads.py [--requests 60] [--clients 2] [--size 384]

Each request multiplies a `size × size` float32 matrix by itself a few times with torch, which
uses every thread it is given. Inline, one instance serves (sync APIs run one at a time in its
thread pool by default); with 2 workers, two instances run at once, and each worker's torch gets
the threads nbserve gives it (cores ÷ workers since issue 8; every core before, which on a
2-core machine meant 4 busy threads on 2 cores). Prints the median and p90 latency of each
mode, and the threads torch had in each. A measurement on a shared machine, not a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import threading
import time
from typing import Any

import httpx

import nbserve
from nbserve.testing import running_service


@nbserve.service
class MatMul:
    def __init__(self) -> None:
        import torch

        self.torch = torch

    @nbserve.api
    def work(self, size: int) -> dict[str, Any]:
        torch = self.torch
        x = torch.ones(size, size) / size
        for _ in range(8):
            x = x @ x
        return {"threads": torch.get_num_threads()}


def measure(
    workers: int | None, requests: int, clients: int, size: int
) -> tuple[list[float], set[int]]:
    with running_service(MatMul, workers=workers) as handle:
        local = threading.local()
        threads: set[int] = set()

        def call(_: int) -> float:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(base_url=handle.url, timeout=120)
            began = time.perf_counter()
            reply = client.post("/work", json={"size": size})
            reply.raise_for_status()
            threads.add(reply.json()["threads"])
            return time.perf_counter() - began

        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(call, range(4 * clients)))  # warm up every worker
            latencies = list(pool.map(call, range(requests)))
    return latencies, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--size", type=int, default=384)
    args = parser.parse_args()
    for workers in (None, 2):
        latencies, threads = measure(workers, args.requests, args.clients, args.size)
        latencies.sort()
        p90 = latencies[int(0.9 * (len(latencies) - 1))]
        mode = "inline" if workers is None else f"{workers} workers"
        print(
            f"{mode:>10}: median {statistics.median(latencies) * 1e3:6.1f} ms, p90 {p90 * 1e3:6.1f} ms, "
            f"torch threads per instance {sorted(threads)}"
        )


if __name__ == "__main__":
    main()
