"""`nbserve serve` from a shell: one ready line, real requests, a clean stop on SIGTERM / Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

SERVICE = textwrap.dedent(
    """
    import os
    import nbserve

    @nbserve.service
    class Echo:
        @nbserve.api
        def shout(self, text: str) -> str:
            return text.upper()

        @nbserve.on_shutdown
        def bye(self) -> None:
            with open(os.environ["SHUTDOWN_MARKER"], "w") as f:
                f.write("bye")
    """
)
READY = re.compile(r"^nbserve: serving (\w+) at (http://\S+) \(routes: (.*)\)$")


class Served:
    """A running `nbserve serve` process and the lines it wrote to stderr."""

    def __init__(self, args: list[str], cwd: Path, marker: Path) -> None:
        env = {**os.environ, "SHUTDOWN_MARKER": str(marker), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nbserve._cli.main", "serve", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self.stderr.append(line)
                self.lines.put(line.rstrip("\n"))

    def ready_line(self, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            match = READY.match(line)
            if match:
                return match
        self.process.kill()
        raise AssertionError(f"no ready line; stderr was: {''.join(self.stderr)!r}")

    def finish(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self._reader.join(10)


@pytest.fixture
def service_file(tmp_path: Path) -> Path:
    path = tmp_path / "echo_service.py"
    path.write_text(SERVICE)
    return path


def port_of(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def served(service_file: Path) -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.finish()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_file_and_class_then_stop_cleanly(
    service_file: Path, tmp_path: Path, served: list[Served], stop_signal: signal.Signals
) -> None:
    marker = tmp_path / "shutdown.txt"
    proc = Served([f"{service_file}:Echo", "--port", "0"], tmp_path, marker)
    served.append(proc)
    name, url, routes = proc.ready_line().groups()
    assert (name, routes) == ("Echo", "/shout")
    assert url.startswith("http://127.0.0.1:")
    assert httpx.post(url + "/shout", json={"text": "hi"}).text == "HI"
    proc.process.send_signal(stop_signal)
    assert proc.finish() == 0
    assert marker.read_text() == "bye"  # on_shutdown ran
    assert port_is_free(port_of(url))
    ready = [line for line in proc.stderr if line.startswith("nbserve: serving")]
    assert len(ready) == 1


def test_serve_module_colon_class_and_lone_service(
    service_file: Path, tmp_path: Path, served: list[Served]
) -> None:
    for target in ("echo_service:Echo", "echo_service", "echo_service.py"):
        proc = Served([target, "--port", "0"], tmp_path, tmp_path / "marker")
        served.append(proc)
        _, url, _ = proc.ready_line().groups()
        assert httpx.post(url + "/shout", json={"text": "a"}).text == "A"
        proc.process.terminate()
        assert proc.finish() == 0


def test_bad_targets_say_what_to_pass(tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(
        "import nbserve\n"
        "@nbserve.service\nclass A:\n    pass\n"
        "@nbserve.service\nclass B:\n    pass\n"
    )
    cases = {
        "two.py": "several services (A, B); pick one, e.g. two.py:A",
        "two.py:C": "two.py has no 'C'; it defines A, B",
        "missing.py:A": "no such file: missing.py",
        "no_such_module:A": "no module named 'no_such_module'",
    }
    for target, message in cases.items():
        result = subprocess.run(
            [sys.executable, "-m", "nbserve._cli.main", "serve", target, "--port", "0"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (target, result.stderr)
        assert message in result.stderr, (target, result.stderr)


def test_service_that_fails_to_start_exits_1(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(
        "import nbserve\n"
        "@nbserve.service\nclass Broken:\n"
        "    def __init__(self):\n        raise RuntimeError('no weights')\n"
        "    @nbserve.api\n    def f(self) -> int:\n        return 1\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "nbserve._cli.main", "serve", "broken.py", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Broken failed to start: RuntimeError: no weights" in result.stderr


def test_version_and_help() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "nbserve._cli.main", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.returncode == 0
    assert version.stdout.startswith("nbserve ")
    helped = subprocess.run(
        [sys.executable, "-m", "nbserve._cli.main", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--timeout-graceful" in helped.stdout


@pytest.mark.parametrize("debug", [False, True], ids=["default", "debug"])
def test_a_500_names_the_exception_only_with_debug(
    tmp_path: Path, served: list[Served], debug: bool
) -> None:
    (tmp_path / "buggy.py").write_text(
        "import nbserve\n"
        "@nbserve.service\nclass Buggy:\n"
        "    @nbserve.api\n    def f(self) -> int:\n        raise ValueError('secret detail')\n"
    )
    proc = Served(
        ["buggy.py", "--port", "0", *(["--debug"] if debug else [])], tmp_path, tmp_path / "m"
    )
    served.append(proc)
    _, url, _ = proc.ready_line().groups()
    reply = httpx.post(url + "/f", json={})
    assert reply.status_code == 500
    assert ("ValueError: secret detail" in reply.text) is debug
    assert "Traceback" not in reply.text
    proc.process.terminate()


def test_a_host_from_bentoml_host_is_said_at_start_up(
    service_file: Path, tmp_path: Path, served: list[Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_HOST", "127.0.0.1")
    proc = Served(
        [f"{service_file}:Echo", "--port", "0", "--max-connections", "50", "--body-timeout", "5"],
        tmp_path,
        tmp_path / "shutdown.txt",
    )
    served.append(proc)
    url = proc.ready_line().group(2)
    assert any("BENTOML_HOST='127.0.0.1'" in line for line in proc.stderr), proc.stderr
    assert httpx.post(url + "/shout", json={"text": "hi"}).text == "HI"
    proc.process.send_signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_json_logs_on_stdout_name_the_address_actually_bound(
    service_file: Path, tmp_path: Path
) -> None:
    """As in the image: `--host 0.0.0.0`, logs on stdout, one JSON object per line."""
    env = {**os.environ, "NBSERVE_LOGS": "stdout", "NBSERVE_HOST": "0.0.0.0", "PORT": "0"}
    env["SHUTDOWN_MARKER"] = str(tmp_path / "marker")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nbserve._cli.main",
            "serve",
            f"{service_file}:Echo",
            "--log-format",
            "json",
            "-v",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        events = []
        for line in process.stdout:
            events.append(json.loads(line))  # every line is one JSON object
            if events[-1].get("event") == "serving":
                break
        ready = events[-1]
        assert ready["address"].startswith("http://0.0.0.0:")  # what is bound, not 127.0.0.1
        assert ready["routes"] == ["/shout"]
        port = port_of(ready["address"])
        assert httpx.post(f"http://127.0.0.1:{port}/shout", json={"text": "x"}).text == "X"
        process.send_signal(signal.SIGTERM)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0
    assert errors == ""  # nothing on stderr: the logs went to stdout
    later = [json.loads(line) for line in rest.splitlines()]
    assert {e["level"] for e in events + later} <= {"info", "warning"}
    assert any("stopped" in e["message"] for e in later), later
