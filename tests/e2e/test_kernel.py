"""`%%serve` in a real ipykernel, driven cell by cell through nbclient (jupyter.md appendix).

One kernel serves the module's tests in order (each starts from what the previous left), so the
suite pays for one kernel start; the shutdown test starts its own kernel because it ends it.
Everything runs twice: on this environment's ipykernel 7 and on ipykernel 6, which
`scripts/setup` installs beside it (`.venv/ipykernel6`, put first on the kernel's path); the two
differ in where output from threads goes (jupyter.md finding 2).
Each test asserts what the issue promises from the user's side: the service answers while a
cell computes, re-running a cell under load fails no request and keeps the port, rollback,
stop frees the port, and no server output ever reaches a later cell.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import psutil
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# ipykernel major → what to put first on the kernel's path (None: this environment's own).
IPYKERNELS = {7: None, 6: REPO / ".venv" / "ipykernel6"}

ECHO = """\
%%serve {options}
import logging
import nbserve

@nbserve.service
class Echo:
    def __init__(self) -> None:
        self.version = "{version}"

    @nbserve.api
    def shout(self, text: str) -> str:
        logging.getLogger("nbserve.service.Echo").info("shouting %s", text)
        return f"{{self.version}}:{{text.upper()}}"

    @nbserve.api
    def fail(self) -> str:
        raise RuntimeError("boom")
"""


TESTER = "nbserve request tester for 'Echo': shout, fail"


def echo(version: str, options: str = "") -> str:
    return ECHO.format(version=version, options=options)


class Kernel:
    """A notebook being executed one appended cell at a time."""

    def __init__(self, client: NotebookClient, nb: Any) -> None:
        self.client = client
        self.nb = nb

    def run(self, source: str) -> list[Any]:
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        return list(cell.outputs)

    def value(self, expression: str) -> Any:
        outputs = self.run(f"import json as _json\nprint(_json.dumps({expression}))")
        return json.loads("".join(o["text"] for o in outputs if o["output_type"] == "stream"))

    def texts(self, outputs: list[Any]) -> list[str]:
        return [
            o["data"]["text/plain"]
            for o in outputs
            if o["output_type"] in ("display_data", "execute_result")
        ]


def start_kernel(runtime_dir: Path, major: int = 7) -> tuple[NotebookClient, Any]:
    """A kernel of this environment's Python on ipykernel `major`; discovery files go to `runtime_dir`."""
    nb = nbformat.v4.new_notebook()
    client = NotebookClient(nb, kernel_name="python3", timeout=60, startup_timeout=60)
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(runtime_dir),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    extra = IPYKERNELS[major]
    if extra is not None:
        assert extra.is_dir(), f"{extra} is missing: run `bash scripts/setup`"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra), env.get("PYTHONPATH")) if p)
    return client, client.setup_kernel(env=env)


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="module", params=sorted(IPYKERNELS, reverse=True), ids="ipykernel{}".format)
def major(request: pytest.FixtureRequest) -> int:
    value: int = request.param
    return value


@pytest.fixture(scope="module")
def kernel(runtime_dir: Path, major: int) -> Iterator[Kernel]:
    client, context = start_kernel(runtime_dir, major)
    with context:
        k = Kernel(client, client.nb)
        assert k.value("int(__import__('ipykernel').__version__.split('.')[0])") == major
        assert k.run("%load_ext nbserve") == []
        yield k
        k.run("import nbserve\nnbserve.stop_all()")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Load:
    """Steady client traffic from a background thread; counts every failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-load", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                try:
                    r = http.post(f"http://127.0.0.1:{self.port}/shout", json={"text": "x"})
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    (self.answers if r.status_code == 200 else self.failures).append(r.text)
                time.sleep(0.005)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def test_serve_shows_one_deterministic_status(kernel: Kernel) -> None:
    outputs = kernel.run(echo("v0"))
    assert kernel.texts(outputs) == [
        "nbserve service 'Echo': running, inline, routes /shout /fail",
        TESTER,  # the request tester widget under the status (tests/e2e/test_tester_kernel.py)
    ]
    assert [o["output_type"] for o in outputs] == ["display_data", "display_data"]


NOISY = """\
%%serve --no-display
import sys
import nbserve

@nbserve.service
class Noisy:
    @nbserve.api
    def noisy(self) -> str:
        print("noise on stdout")
        print("noise on stderr", file=sys.stderr)
        return "ok"
"""


def test_service_answers_while_a_cell_sleeps(kernel: Kernel) -> None:
    """While a cell computes the service answers fast, and its output (an API that prints,
    request errors) never lands in the computing cell, as ipykernel 7 would put it there."""
    assert kernel.run(NOISY) == []
    port = kernel.value("nbserve.services()['Echo'].port")
    noisy_port = kernel.value("nbserve.services()['Noisy'].port")
    latencies: list[float] = []
    failures: list[str] = []

    def probe() -> None:
        time.sleep(0.5)  # let the sleeping cell start
        with httpx.Client(timeout=2) as http:
            for _ in range(10):
                start = time.monotonic()
                try:
                    r = http.post(f"http://127.0.0.1:{port}/shout", json={"text": "hi"})
                    assert r.text == "v0:HI"
                    http.post(f"http://127.0.0.1:{port}/fail", json={})  # logs a traceback
                    assert http.post(f"http://127.0.0.1:{noisy_port}/noisy", json={}).text == "ok"
                except (httpx.HTTPError, AssertionError) as exc:
                    failures.append(repr(exc))
                latencies.append(time.monotonic() - start)
                time.sleep(0.15)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        outputs = kernel.run("import time\ntime.sleep(3)")
        thread.join(10)
    finally:
        kernel.run("nbserve.stop('Noisy')")
    assert failures == []
    assert len(latencies) == 10
    assert max(latencies) < 1.0
    assert outputs == [], "server output leaked into the running cell"


def test_five_reruns_under_load_fail_no_request_and_keep_the_port(kernel: Kernel) -> None:
    port = kernel.value("nbserve.services()['Echo'].port")
    with Load(port) as load:
        time.sleep(0.2)
        for version in range(1, 6):
            outputs = kernel.run(echo(f"v{version}"))
            assert kernel.texts(outputs) == [
                "nbserve service 'Echo': running, inline, routes /shout /fail",
                TESTER,
            ]
            time.sleep(0.1)
    assert load.failures == []
    assert len(load.answers) > 50
    assert load.answers[-1] == "v5:X"
    seen = list(dict.fromkeys(a.split(":")[0] for a in load.answers))
    assert seen == sorted(seen), "a request was answered by an older version after a newer one"
    assert kernel.value("nbserve.services()['Echo'].port") == port
    assert kernel.value("[v.number for v in nbserve.services()['Echo'].versions]") == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]


def test_rollback_restores_the_previous_version(kernel: Kernel) -> None:
    port = kernel.value("nbserve.services()['Echo'].port")
    outputs = kernel.run("%serve rollback Echo")
    assert [o.get("text") for o in outputs] == ["rolled 'Echo' back to version 5\n"]
    assert httpx.post(f"http://127.0.0.1:{port}/shout", json={"text": "a"}).text == "v4:A"


def test_status_logs_and_list(kernel: Kernel) -> None:
    assert kernel.texts(kernel.run("%serve list")) == [
        "nbserve service 'Echo': running, inline, routes /shout /fail"
    ]
    logs = "".join(o["text"] for o in kernel.run("%serve logs Echo -n 200"))
    assert "shouting a" in logs
    assert "RuntimeError: boom" in logs
    status = kernel.run("%serve status Echo")
    assert kernel.texts(status) == ["nbserve service 'Echo': running, inline, routes /shout /fail"]
    assert "p95" in status[0]["data"]["text/html"]


def test_stop_frees_the_port_and_updates_the_status_in_place(
    kernel: Kernel, runtime_dir: Path
) -> None:
    port = kernel.value("nbserve.services()['Echo'].port")
    assert len(list((runtime_dir / "nbserve").glob("*-Echo.json"))) == 1
    outputs = kernel.run("%serve stop Echo")
    assert [o.get("text") for o in outputs] == ["stopped nbserve service 'Echo'\n"]
    assert port_is_free(port)
    assert list((runtime_dir / "nbserve").glob("*.json")) == []
    # nbclient applies update_display_data: the first %%serve cell's output now says stopped.
    first_serve = next(c for c in kernel.nb.cells if c.source.startswith("%%serve"))
    assert kernel.texts(first_serve.outputs) == [
        "nbserve service 'Echo': stopped, inline, routes /shout /fail",
        TESTER,
    ]


def test_no_thread_is_left_after_stop_all(kernel: Kernel) -> None:
    kernel.run(echo("again", "--name Again"))
    names = kernel.value(
        "(nbserve.stop_all(), __import__('time').sleep(0.5),"
        " [t.name for t in __import__('threading').enumerate() if t.name.startswith('nbserve')])[2]"
    )
    assert names == []


def test_no_service_output_in_any_later_cell(kernel: Kernel) -> None:
    """Every cell's outputs are what the cell itself produced: nothing from server threads."""
    for cell in kernel.nb.cells:
        if cell.source.startswith("%serve logs"):
            continue  # the one cell that prints the log on purpose
        for output in cell.outputs:
            if output["output_type"] == "stream":
                text = output["text"]
                assert not any(w in text for w in ("shouting", "boom", "INFO", "noise")), (
                    cell.source,
                    text,
                )
            assert output["output_type"] != "error", cell.source


def test_kernel_shutdown_leaves_no_port_process_or_discovery_file(
    tmp_path: Path, major: int
) -> None:
    client, context = start_kernel(tmp_path, major)
    with context:
        k = Kernel(client, client.nb)
        k.run("import nbserve")  # registers the magics: no %load_ext needed
        k.run(echo("a", "--name A --token auto"))
        k.run(echo("b", "--name B --workers 1"))  # a worker process, which must go too
        pid = k.value("__import__('os').getpid()")
        ports = k.value("[s.port for s in nbserve.services().values()]")
        kernel_id = k.value("__import__('nbserve._notebook.discovery', fromlist=['x']).kernel_id()")
        children = [p.pid for p in psutil.Process(pid).children(recursive=True)]
        assert children, "the --workers 1 service has no worker process"
        files = sorted(p.name for p in (tmp_path / "nbserve").glob("*.json"))
        assert files == [f"{kernel_id}-A.json", f"{kernel_id}-B.json"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and psutil.pid_exists(pid):
        time.sleep(0.1)
    assert not psutil.pid_exists(pid)
    assert not any(psutil.pid_exists(c) for c in children)
    assert list((tmp_path / "nbserve").glob("*.json")) == []
    assert all(port_is_free(p) for p in ports)
