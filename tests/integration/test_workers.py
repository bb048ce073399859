"""Worker processes for real: spawned interpreters, crashes, respawns, parent death, GPU placement."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import nbformat
import psutil
import pytest
from nbclient import NotebookClient
from worker_services import (
    BigStream,
    Broken,
    Deadlines,
    Doubler,
    OnGPU,
    OnHalfGPU,
    Probed,
    Sleepy,
)

from nbserve._runtime.execution.placement import Device
from nbserve._runtime.execution.workers.pool import ProcessExecutor
from nbserve._sdk.context import Context
from nbserve.exceptions import WorkerError
from nbserve.testing import running_service

pytestmark = pytest.mark.slow


def wait_until(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_notebook_class_is_served_by_two_workers(tmp_path: Path) -> None:
    cells = [
        "import os, concurrent.futures, httpx, nbserve",
        # a helper defined in the notebook, used by the service: it must travel by value too
        "def scale(values, k):\n    return [v * k for v in values]",
        textwrap.dedent("""
            @nbserve.service(workers=2)
            class Notebooked:
                def __init__(self):
                    self.k = 3

                @nbserve.api
                def triple(self, values: list[float]) -> dict:
                    import time
                    time.sleep(0.05)
                    print("this line must not reach any cell")
                    return {"out": scale(values, self.k), "pid": os.getpid()}
        """),
        "handle = nbserve.serve(Notebooked)\nhandle.wait_ready(60)",
        textwrap.dedent("""
            def ask(i):
                return httpx.post(handle.url + "/triple", json={"values": [i, 1.5]}, timeout=30).json()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(ask, range(16)))
            pids = {a["pid"] for a in answers}
            assert [a["out"] for a in answers] == [[3 * i, 4.5] for i in range(16)], answers
            assert len(pids) == 2 and os.getpid() not in pids, pids
        """),
        "import psutil\nhandle.stop()\nassert not psutil.Process().children(), psutil.Process().children()\nprint('ok', len(pids))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    texts = [o.get("text", "") for o in outputs if o.get("output_type") == "stream"]
    assert texts == ["ok 2\n"], outputs  # nothing from the workers leaked into a cell


def test_kill_9_under_load_loses_only_that_workers_calls_and_recovers() -> None:
    with running_service(Sleepy) as handle:
        stop = threading.Event()
        results: list[tuple[int, Any]] = []

        def load() -> None:
            with httpx.Client(base_url=handle.url, timeout=30) as client:
                while not stop.is_set():
                    r = client.post("/work", json={"ms": 10})
                    results.append((r.status_code, r.json()))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until(
                lambda: len({b for s, b in results if s == 200}) == 2, what="both workers to answer"
            )
            victim = next(b for s, b in results if s == 200)
            os.kill(victim, signal.SIGKILL)
            wait_until(
                lambda: len({b for s, b in results if s == 200} - {victim}) == 2,
                what="a replacement worker",
            )
            mark = len(results)
            wait_until(lambda: len(results) > mark + 40, what="steady load after recovery")
            metrics = httpx.get(handle.url + "/metrics").text
        finally:
            stop.set()
            for t in threads:
                t.join()
    # /metrics shows each worker, its state, pid and devices, and the restart
    assert metrics.count('state="ready"') == 2
    assert re.search(
        r'nbserve_worker_info\{service_name="Sleepy",worker_index="\d",state="ready",pid="\d+",devices="CPU"',
        metrics,
    )
    assert sorted(re.findall(r"nbserve_worker_restarts_total\{[^}]*\} (\d+)", metrics)) == [
        "0",
        "1",
    ]
    failures = [b for s, b in results if s != 200]
    assert len(failures) <= 3, failures  # the calls the victim held (2 × threads), plus a race
    assert all("was killed by SIGKILL (exit -9" in f["error"] for f in failures), failures
    assert all(s == 200 for s, _ in results[mark:])
    assert any(
        "was killed by SIGKILL" in line and "restarting it" in line for line in handle.logs(200)
    )


def test_a_crash_in_native_code_is_reported_and_the_worker_comes_back() -> None:
    with (
        running_service(Sleepy, workers=1) as handle,
        httpx.Client(base_url=handle.url, timeout=30) as client,
    ):
        first = client.post("/work", json={"ms": 0}).json()
        r = client.post("/crash", json={})
        assert r.status_code == 503
        assert "was killed by SIGSEGV (exit -11" in r.json()["error"]
        assert "while handling this request" in r.json()["error"]
        again = client.post("/work", json={"ms": 0})  # waits for the replacement, then succeeds
        assert again.status_code == 200
        assert again.json() != first
        assert any(
            "Segmentation fault" in line for line in handle.logs(200)
        )  # faulthandler's stack


def test_parent_death_leaves_no_worker_behind(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent("""
            import os, sys, time, httpx, nbserve

            @nbserve.service(workers=2)
            class InMain:
                @nbserve.api
                def pid(self) -> int:
                    time.sleep(0.05)
                    return os.getpid()

            handle = nbserve.serve(InMain)   # no __main__ guard: spawn would have re-run this file
            handle.wait_ready(60)
            import concurrent.futures
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                pids = set(pool.map(lambda _: httpx.post(handle.url + "/pid", json={}).json(), range(8)))
            print(" ".join(map(str, sorted(pids))), flush=True)
            time.sleep(120)
        """)
    )
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    ) as app:
        try:
            assert app.stdout is not None
            line = app.stdout.readline()
            pids = [int(p) for p in line.split()]
            assert len(pids) == 2, line
            assert {c.pid for c in psutil.Process(app.pid).children()} == set(pids)
        finally:
            app.kill()
    wait_until(lambda: all(gone(p) for p in pids), timeout=5, what="the orphaned workers to exit")


def test_an_init_that_always_fails_stops_retrying_and_says_why() -> None:
    with pytest.raises(WorkerError) as info, running_service(Broken):
        pass
    message = str(info.value)
    assert (
        "Broken.__init__ failed in worker 0: FileNotFoundError: no such model file: /models/missing.pt"
        in message
    )
    assert "gave up after 3 attempts" in message


def test_hooks_run_once_per_deployment_and_per_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBSERVE_TEST_EVENTS", str(tmp_path))
    with running_service(Sleepy) as handle:
        wait_until(
            lambda: len(list(tmp_path.glob("startup-*"))) == 2, what="both workers' on_startup"
        )
        assert httpx.post(handle.url + "/work", json={"ms": 0}).json() != os.getpid()
    events = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert events == ["deployment", "init", "init", "shutdown", "shutdown", "startup", "startup"]
    assert (
        tmp_path / f"deployment-{os.getpid()}"
    ).exists()  # in the server process, before workers


def test_worker_output_becomes_log_lines_not_output(capfd: pytest.CaptureFixture[str]) -> None:
    with running_service(Sleepy, workers=1) as handle:
        assert httpx.post(handle.url + "/talk", json={"text": "hello"}).text == "hello"
        wait_until(
            lambda: any("[worker 0] printed hello" in line for line in handle.logs(100)),
            what="the log line",
        )
    out, err = capfd.readouterr()
    assert "printed hello" not in out + err


def test_streams_context_and_errors_cross_the_process_boundary() -> None:
    with (
        running_service(Sleepy, workers=1) as handle,
        httpx.Client(base_url=handle.url, timeout=30) as client,
    ):
        r = client.post("/count", json={"n": 4})
        assert r.text == "0;1;2;3;"
        assert r.headers["X-Worker"] != str(os.getpid())
        r = client.post("/tagged", json={}, headers={"X-In": "abc"})
        assert (r.status_code, r.text, r.headers["X-Tag"]) == (202, "abc", "from-worker")
        r = client.post("/shout", content=b"quiet", headers={"Content-Type": "text/plain"})
        assert (r.status_code, r.text) == (200, "QUIET")
        r = client.post("/refuse", json={"x": 3})
        assert (r.status_code, r.json()["error"]) == (400, "x=3 is not allowed here; send x < 0")
        r = client.post("/fail", json={})
        assert r.status_code == 500
        assert "model exploded" not in r.text  # a bug's message stays in the log
        wait_until(
            lambda: any("model exploded" in line for line in handle.logs(200)),
            what="the traceback in the log",
        )


def visible_devices(service: Any, devices: list[Device], workers: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES each worker of `service` sees, started on simulated `devices`."""

    async def scenario() -> list[str]:
        executor = ProcessExecutor(service, workers=workers, devices=devices)
        await executor.start()
        try:
            while not all(s["state"] == "ready" for s in executor.status()):
                await asyncio.sleep(0.02)
            api = service.apis["visible"]
            seen = await asyncio.gather(
                *(executor.call(api, {}, Context()) for _ in range(2 * workers))
            )
            assert sorted(s["cuda_visible_devices"] for s in executor.status()) == sorted(
                seen[:workers]
            )
            return list(seen[:workers])
        finally:
            await executor.stop()

    return asyncio.run(scenario())


def test_each_worker_gets_its_own_gpu_on_a_simulated_machine() -> None:
    devices = [Device(i, "NVIDIA H100 80GB HBM3", f"GPU-{i}") for i in range(2)]
    assert sorted(visible_devices(OnGPU, devices, workers=2)) == ["0", "1"]
    assert visible_devices(OnHalfGPU, devices[:1], workers=2) == ["0", "0"]
    with pytest.raises(WorkerError, match=r"needs 3 GPUs, but 2 are visible"):
        asyncio.run(ProcessExecutor(OnGPU, workers=3, devices=devices).start())


def test_a_swap_starts_new_workers_and_drains_the_old_ones_without_a_failed_request() -> None:
    # Children of this process that are not this service's (a session's dockerd, say).
    others = {c.pid for c in psutil.Process().children()}
    with running_service(Doubler) as handle:
        stop = threading.Event()
        codes: list[int] = []

        def load() -> None:
            with httpx.Client(base_url=handle.url, timeout=30) as client:
                while not stop.is_set():
                    codes.append(client.post("/double", json={"x": [[1.0, 2.0]]}).status_code)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(codes) > 20, what="load on the first deployment")
            old = {c.pid for c in psutil.Process().children()} - others
            handle.swap(Doubler)
            mark = len(codes)
            wait_until(lambda: len(codes) > mark + 20, what="load on the new deployment")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert set(codes) == {200}
        assert len(old) == 2
        wait_until(lambda: all(gone(p) for p in old), timeout=5, what="the old workers to exit")


# --- deadlines: the WorkContinues contract with workers -------------------------------------------
@pytest.mark.parametrize("route", ["/hang", "/shang"])
def test_a_hanging_sync_call_in_a_worker_gets_its_504_at_the_deadline(
    route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 504 comes while the call still runs (it cannot end before the test releases it,
    which the test does only after the 504), and the worker's capacity comes back after."""
    monkeypatch.setenv("NBSERVE_TEST_EVENTS", str(tmp_path))
    tag = route.strip("/")
    with (
        running_service(Deadlines) as handle,
        httpx.Client(base_url=handle.url, timeout=60) as client,
    ):
        r = client.post(route, json={"tag": tag})
        assert r.status_code == 504, r.text
        assert "traffic.timeout" in r.json()["error"]
        assert list(tmp_path.glob(f"{tag}-started-*"))
        assert not list(tmp_path.glob(f"{tag}-ended-*"))  # still running when the 504 came
        assert client.post("/quick", json={}).text == "quick"  # the other thread serves
        (tmp_path / f"{tag}-release").touch()
        wait_until(lambda: list(tmp_path.glob(f"{tag}-ended-*")), what="the call to end")
        executor = handle_executor(handle)
        wait_until(lambda: not executor.slots[0].calls, what="the worker's answer to be dropped")
        assert executor.slots[0].sync_busy == 0


@pytest.mark.parametrize("route", ["/ahang", "/ashang"])
def test_an_async_call_in_a_worker_past_its_deadline_is_cancelled_there(
    route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBSERVE_TEST_EVENTS", str(tmp_path))
    tag = route.strip("/")
    with (
        running_service(Deadlines) as handle,
        httpx.Client(base_url=handle.url, timeout=60) as client,
    ):
        r = client.post(route, json={"tag": tag})
        assert r.status_code == 504, r.text
        wait_until(lambda: list(tmp_path.glob(f"{tag}-cancelled-*")), what="the worker to cancel")
        executor = handle_executor(handle)
        wait_until(lambda: not executor.slots[0].calls, what="the worker's answer")


def handle_executor(handle: Any) -> ProcessExecutor:
    executor = handle._server.deployment.executor
    assert isinstance(executor, ProcessExecutor)
    return executor


# --- stream flow control ---------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["/chunks", "/achunks"])
def test_a_slow_reader_of_a_large_worker_stream_slows_its_producer_and_keeps_memory_flat(
    route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """400 items of 1 MiB, read at a trickle: the worker stays a few items ahead of the reader,
    the server's memory stays within a small bound, and leaving stops the generator."""
    monkeypatch.setenv("NBSERVE_TEST_EVENTS", str(tmp_path))
    server = psutil.Process()
    produced = tmp_path / "produced"
    with running_service(BigStream) as handle:
        assert httpx.post(handle.url + route, json={"n": 2}).content == 2 * 2**20 * b"x"
        baseline = server.memory_info().rss
        reader = socket.create_connection(("127.0.0.1", handle.port))
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        body = b'{"n": 400}'
        reader.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" % route.encode()
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        got, peak = 0, 0
        try:
            for _ in range(40):  # ~4 MiB read in total, far less than an unbounded worker sends
                got += len(reader.recv(100 * 1024))
                time.sleep(0.05)
                peak = max(peak, server.memory_info().rss - baseline)
            items_read = got // 2**20
            wait_until(produced.exists, what="the generator to start")
            ahead = int(produced.read_text()) - items_read
            # The window (8 items) plus what the socket buffers on both sides hold.
            assert ahead < 40, f"the worker ran {ahead} items ahead of a slow reader"
            assert peak < 100 * 2**20, f"server memory grew by {peak / 2**20:.0f} MiB"
        finally:
            reader.close()
        wait_until(
            lambda: list(tmp_path.glob("stream-closed-*")), what="leaving to stop the generator"
        )
        assert int(produced.read_text()) < 400
        executor = handle_executor(handle)
        wait_until(lambda: not executor.slots[0].calls, what="the stream's call to end")
        assert server.memory_info().rss - baseline < 100 * 2**20
        assert httpx.post(handle.url + route, json={"n": 1}).status_code == 200


def test_probes_and_the_metrics_hook_are_answered_by_the_worker() -> None:
    with running_service(Probed) as handle:
        assert httpx.get(handle.url + "/readyz").status_code == 200
        text = httpx.get(handle.url + "/metrics").text
        (line,) = [line for line in text.splitlines() if line.startswith("# from worker")]
        assert line != f"# from worker {os.getpid()}"
        assert "nbserve_worker_info" in text  # the text the hook was given
