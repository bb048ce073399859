"""What the export tests share: a kernel run cell by cell, and an archive served from a venv.

`kernel_env` and `run_cell` drive a real kernel through nbclient (as a notebook would run);
`install_bento` and `serve_archive` put an archive into a fresh virtual environment with the
archive's own `install.sh` and serve it from there, away from the source tree.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import nbformat
from nbclient import NotebookClient

__all__ = ["free_port", "install_bento", "kernel_env", "run_cell", "serve_archive"]


def kernel_env(work: Path) -> dict[str, str]:
    """A test kernel's environment: its own store and runtime dir, no debugger note on stderr."""
    return {
        **os.environ,
        "NBSERVE_HOME": str(work / "home"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def run_cell(client: NotebookClient, nb: Any, source: str) -> str:
    """Run `source` as the notebook's next cell; its printed output."""
    cell = nbformat.v4.new_code_cell(source)
    nb.cells.append(cell)
    client.execute_cell(cell, len(nb.cells) - 1)
    return "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_bento(bento: Path, python: Path, timeout: float = 900) -> None:
    """The extracted bento's own `env/python/install.sh` into `python`'s environment."""
    done = subprocess.run(
        ["sh", str(bento / "env/python/install.sh")],
        env={**os.environ, "PYTHON": str(python)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def serve_archive(
    path: Path,
    venv: Path,
    requests: list[tuple[str, Any]],
    *,
    env: Mapping[str, str],
    cwd: Path,
    ready_timeout: float,
    args: Sequence[str] = (),
) -> tuple[list[Any], str]:
    """`nbserve serve ARCHIVE [args]` from `venv`: the JSON answers to `(route, body)` requests,
    and everything the server printed (it is stopped before this returns)."""
    port = free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "nbserve"), "serve", str(path), "--port", str(port), *args],
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[0]
            assert time.monotonic() < deadline, (
                f"the archive's server did not get ready in {ready_timeout:.0f} s"
            )
            time.sleep(0.2)
        answers = [
            httpx.post(url + route, json=body, timeout=60).json() for route, body in requests
        ]
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    return answers, output
