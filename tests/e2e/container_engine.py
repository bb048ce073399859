"""The container engine the container tests build and run images with (`docker_engine` fixture).

Docker's daemon is started here when none is running (as root, where `scripts/setup` installed
`docker.io`) and stopped after the session; the local base image (`scripts/base-image`: Debian
bookworm + python3 from the Debian mirror, no registry) is built once, and reused while its
recipe hash does not change. Where no engine can run (not root, no Docker, no debootstrap), the
tests that need one are skipped with the reason (`-ra` prints it); everything else still runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DockerEngine:
    docker: str  # the CLI
    base_image: str  # the local base image's name

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        done = subprocess.run(
            [self.docker, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            msg = f"docker {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}"
            raise AssertionError(msg)
        return done.stdout.strip()


def _daemon_answers(docker: str) -> bool:
    done = subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


def _start_dockerd(log: Path) -> subprocess.Popen[bytes]:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.skip(
            "container tests: Docker's daemon is not installed (scripts/setup installs docker.io as root on Debian)"
        )
    with log.open("wb") as out:
        return subprocess.Popen(
            [dockerd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def docker_engine_session() -> Iterator[DockerEngine]:
    """Start what is missing, yield the engine, stop what was started (a session fixture's body)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip(
            "container tests: no docker CLI (scripts/setup installs docker.io as root on Debian)"
        )
    started: subprocess.Popen[bytes] | None = None
    log = Path(tempfile.gettempdir()) / "nbserve-tests-dockerd.log"
    if not _daemon_answers(docker):
        if os.geteuid() != 0:
            pytest.skip("container tests: no Docker daemon running, and starting one needs root")
        started = _start_dockerd(log)
        deadline = time.monotonic() + 60
        while not _daemon_answers(docker):
            if started.poll() is not None or time.monotonic() > deadline:
                started.kill()
                started.wait(10)
                pytest.skip(f"container tests: dockerd did not start: {log.read_text()[-500:]}")
            time.sleep(0.5)
    try:
        done = subprocess.run(
            [str(ROOT / "scripts/base-image")],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "ENGINE": docker},
        )
        if done.returncode == 3:  # cannot be built here (no debootstrap, not root)
            pytest.skip(f"container tests: {done.stderr.strip().splitlines()[-1]}")
        if done.returncode != 0:
            pytest.fail(f"scripts/base-image failed: {done.stderr[-2000:]}")
        yield DockerEngine(docker, done.stdout.strip().splitlines()[-1])
    finally:
        if started is not None:  # ours: stop it (SIGTERM lets it stop its containerd too)
            started.terminate()
            try:
                started.wait(60)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(10)
