"""nbserve's per-request overhead against a plain Tornado handler doing the same work.

    python benchmarks/overhead.py [--requests 3000] [--rounds 3]

Both servers run in this process, each on its own thread and event loop (as `nbserve.serve`
runs a service in a notebook), and answer `POST /ping` with the JSON body `{"text": "..."}` by
returning the text as `text/plain`. The plain handler decodes the JSON with orjson and checks the
field's type, which is the least a real handler does; nbserve additionally validates through the
API's pydantic adapter, routes, applies the traffic gate and timeout, records metrics, and (for
the sync API) hops to the service's thread pool. Rows:

- `tornado`: the plain handler, work inline on the loop;
- `nbserve async`: `async def ping` (runs on the loop, like the plain handler);
- `nbserve sync`: `def ping` (runs in the thread pool, as a sync API must);
- `worker async`, `worker sync`: the same APIs served by one worker process (`workers=1`),
  so each request also crosses the server ↔ worker pipe twice.

"ratio" is the median latency over `tornado`'s; "server CPU" is this process's CPU time per
request (only the servers run here; a worker process's own CPU is not in it), steadier than
latency on a busy machine.

The client is a separate process sending sequential requests over one keep-alive connection
(`http.client`), so the numbers are latency, not throughput under load; req/s is 1 / mean.
Rounds interleave the servers so that drift on a shared machine hits each alike. This is not
a test: it prints a table (median and p99 in µs, req/s, median ratio to `tornado`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import orjson
import tornado.httpserver
import tornado.netutil
import tornado.web

import nbserve

CLIENT = r"""
import http.client, json, sys, time
host, port, path, n, warmup = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
conn = http.client.HTTPConnection(host, port)
body = b'{"text": "hello, world"}'
headers = {"Content-Type": "application/json"}
out = []
for i in range(warmup + n):
    t0 = time.perf_counter()
    conn.request("POST", path, body, headers)
    response = conn.getresponse()
    data = response.read()
    t1 = time.perf_counter()
    if response.status != 200 or data != b"hello, world":
        raise SystemExit(f"unexpected response {response.status} {data!r}")
    if i >= warmup:
        out.append(t1 - t0)
print(json.dumps(out))
"""


@nbserve.service
class Bench:
    @nbserve.api
    def ping(self, text: str) -> str:
        return text

    @nbserve.api
    async def aping(self, text: str) -> str:
        return text


class PlainPing(tornado.web.RequestHandler):
    def post(self) -> None:
        text = orjson.loads(self.request.body)["text"]
        if not isinstance(text, str):
            raise tornado.web.HTTPError(400)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text.encode())


def start_plain_tornado() -> tuple[int, threading.Event]:
    """A plain Tornado app on its own thread and loop; returns its port and a stop event."""
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    stop = threading.Event()

    def run() -> None:
        async def main() -> None:
            app = tornado.web.Application([("/ping", PlainPing)], log_function=lambda handler: None)
            server = tornado.httpserver.HTTPServer(app)
            server.add_sockets(sockets)
            while not stop.is_set():
                await asyncio.sleep(0.05)
            server.stop()

        asyncio.run(main())

    threading.Thread(target=run, daemon=True).start()
    return port, stop


def measure(port: int, path: str, requests: int, warmup: int) -> tuple[list[float], float]:
    """Latencies seen by the client, and this process's CPU seconds per request meanwhile.

    Only the servers run in this process, so its CPU time is the servers' (both threads of
    a sync API included); it is less sensitive to a busy machine than wall-clock latency.
    """
    cpu = time.process_time()
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, "127.0.0.1", str(port), path, str(requests), str(warmup)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    cpu = time.process_time() - cpu
    latencies: list[float] = json.loads(result.stdout)
    return latencies, cpu / (requests + warmup)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--requests", type=int, default=1500, help="measured requests per round and server"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)

    plain_port, stop_plain = start_plain_tornado()
    handle = nbserve.serve(Bench, port=0).wait_ready()
    worker = nbserve.serve(Bench, port=0, workers=1).wait_ready()
    targets = {
        "tornado": (plain_port, "/ping"),
        "nbserve async": (handle.port, "/aping"),
        "nbserve sync": (handle.port, "/ping"),
        "worker async": (worker.port, "/aping"),
        "worker sync": (worker.port, "/ping"),
    }
    samples: dict[str, list[float]] = {name: [] for name in targets}
    cpu: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for _ in range(args.rounds):
            for name, (port, path) in targets.items():
                latencies, cpu_per_request = measure(port, path, args.requests, args.warmup)
                samples[name].extend(latencies)
                cpu[name].append(cpu_per_request)
    finally:
        handle.stop()
        worker.stop()
        stop_plain.set()

    base = statistics.median(samples["tornado"])
    base_cpu = statistics.median(cpu["tornado"])
    rows: list[dict[str, Any]] = []
    for name, values in samples.items():
        values.sort()
        median = statistics.median(values)
        rows.append(
            {
                "server": name,
                "median_us": median * 1e6,
                "p99_us": values[int(0.99 * (len(values) - 1))] * 1e6,
                "req_s": 1.0 / statistics.fmean(values),
                "ratio": median / base,
                "cpu_us": statistics.median(cpu[name]) * 1e6,
                "cpu_ratio": statistics.median(cpu[name]) / base_cpu,
            }
        )
    print(
        f"{'server':<15} {'median µs':>10} {'p99 µs':>10} {'req/s':>9} {'ratio':>7} {'server CPU µs':>14} {'CPU ratio':>10}"
    )
    for row in rows:
        print(
            f"{row['server']:<15} {row['median_us']:>10.1f} {row['p99_us']:>10.1f} {row['req_s']:>9.0f} {row['ratio']:>7.2f} {row['cpu_us']:>14.1f} {row['cpu_ratio']:>10.2f}"
        )
    print(
        f"({args.rounds} rounds × {args.requests} sequential keep-alive requests per server, client in a separate process)"
    )


if __name__ == "__main__":
    main()
