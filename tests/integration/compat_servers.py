"""Launchers for the compatibility tests: one BentoML service file, served by BentoML or nbserve.

`bentoml_services/echo_service.py` is a plain BentoML 1.4 service (`import bentoml`). It is served
either by `bentoml serve` from .venv-bentoml (made by `bash scripts/setup`;
`NBSERVE_BENTOML_PYTHON` overrides the interpreter), or by `nbserve serve --port 0` from this
interpreter through `bentoml_services/nbserve_as_bentoml.py`, which aliases the `bentoml`
modules to nbserve's first (DESIGN: "a BentoML service.py runs with `import nbserve as
bentoml`"). Aliasing happens in that subprocess only, so no other test sees a fake `bentoml`.

Each server runs in its own process group with its output in a log file (never the terminal)
and is killed, group and all, by `stop()`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest

__all__ = [
    "SERVICES",
    "Backend",
    "ServerProcess",
    "bentoml_python",
    "serve_echo",
    "start_bentoml",
    "start_nbserve",
]

Backend = Literal["bentoml", "nbserve"]
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = Path(__file__).resolve().parent / "bentoml_services"
START_TIMEOUT = 90.0
_SERVING = re.compile(rb"nbserve: serving \S+ at (http://[^\s/]+)")


def bentoml_python() -> Path:
    override = os.environ.get("NBSERVE_BENTOML_PYTHON")
    python = Path(override) if override else REPO_ROOT / ".venv-bentoml" / "bin" / "python"
    if not python.exists():
        pytest.fail(
            f"BentoML's interpreter {python} is missing; run `bash scripts/setup` to create "
            ".venv-bentoml (or set NBSERVE_BENTOML_PYTHON to a python with bentoml==1.4.39)",
            pytrace=False,
        )
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A server subprocess in its own process group, logging to a file.

    `origin` is `http://127.0.0.1:<port>` (no path prefix); it is known at once when the port
    was chosen up front, or read from nbserve's "serving ... at URL" line once it has started.
    """

    def __init__(
        self, name: str, command: list[str], log: Path, env: dict[str, str], port: int | None
    ) -> None:
        self.name = name
        self.log = log
        self.origin = f"http://127.0.0.1:{port}" if port is not None else ""
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=SERVICES,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() can end its workers too
            )

    def wait_ready(self, readyz: str) -> None:
        """Wait until `GET <origin><readyz>` answers 200; fail the test with the log's tail."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            if not self.origin:
                found = _SERVING.search(self.log.read_bytes())
                if found is not None:
                    self.origin = found.group(1).decode()
            if self.origin:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(self.origin + readyz, timeout=1).status_code == 200:
                        return
            time.sleep(0.1)
        pytest.fail(f"{self.name} was not ready after {START_TIMEOUT} s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # workers left behind share the group
            os.killpg(self.process.pid, signal.SIGKILL)


def start_bentoml(
    target: str, home: Path, log: Path, module: str = "echo_service", *extra: str
) -> ServerProcess:
    """`bentoml serve <module>:<target>` on a free port."""
    port = _free_port()
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("PYTHONPATH", None)
    command = [
        str(bentoml_python()),
        *("-m", "bentoml", "serve", f"{module}:{target}"),
        *("--port", str(port), "--host", "127.0.0.1", *extra),
    ]
    return ServerProcess(f"bentoml serve {module}:{target}", command, log, env, port)


def start_nbserve(
    target: str, log: Path, module: str = "echo_service", *extra: str
) -> ServerProcess:
    """`nbserve serve <module>.py:<target> --port 0`, with `bentoml` aliased to nbserve."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # PYTHONPATH stays: a checkout that puts its own nbserve first keeps it first here too.
    # Worker processes import the service file afresh: alias/ gives them `bentoml` as nbserve.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (env.get("PYTHONPATH", ""), str(SERVICES / "alias")) if p
    )
    command = [
        sys.executable,
        str(SERVICES / "nbserve_as_bentoml.py"),
        *("serve", f"{module}.py:{target}", "--port", "0", "--host", "127.0.0.1", *extra),
    ]
    return ServerProcess(f"nbserve serve {module}.py:{target}", command, log, env, None)


@contextlib.contextmanager
def serve_echo(backend: Backend, root: Path) -> Iterator[dict[str, ServerProcess]]:
    """`Echo` at the root and `Prefixed` (the same APIs) under `/v2`, both ready."""
    started: dict[str, ServerProcess] = {}
    try:
        for target in ("Echo", "Prefixed"):  # both start at once; readiness is awaited below
            log = root / f"{backend}-{target}.log"
            if backend == "bentoml":
                started[target] = start_bentoml(target, root / f"home-{target}", log)
            else:
                started[target] = start_nbserve(target, log)
        started["Echo"].wait_ready("/readyz")
        started["Prefixed"].wait_ready("/v2/readyz")
        yield started
    finally:
        for server in started.values():
            server.stop()
