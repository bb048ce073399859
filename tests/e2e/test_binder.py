"""binder/ and the packaging promise: a fresh environment, no node, the extensions just work.

repo2docker cannot run here (no Docker engine), so binder/ is checked statically (jupyter.md §9):
build nbserve's wheel once (its labextension prebuilt by scripts/setup), install
`binder/requirements.txt` into a fresh virtual environment with the repository line pointing at
that wheel (PyPI for everything else), and, with a PATH that holds that environment only (so
no node), check that Jupyter lists both extensions as enabled and OK and that JupyterLab's
`browser_check` passes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BINDER = REPO / "binder"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> str:
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False, cwd=REPO
    )
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return _ANSI.sub("", done.stdout + done.stderr)  # jupyter colours "enabled" and "OK"


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not (REPO / "nbserve" / "labextension" / "package.json").exists():
        pytest.fail(
            "nbserve/labextension/ is not built; run scripts/setup (it builds labextension/)"
        )
    root = tmp_path_factory.mktemp("binder")
    wheels = root / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)])
    (wheel,) = wheels.glob("jupyter_nbserve-*.whl")
    requirements = root / "requirements.txt"
    lines = BINDER.joinpath("requirements.txt").read_text().splitlines()
    assert ".[notebook]" in lines, "binder/requirements.txt must install the repository itself"
    requirements.write_text(
        "\n".join(
            f"jupyter-nbserve[notebook] @ {wheel.as_uri()}" if line == ".[notebook]" else line
            for line in lines
        )
    )
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)])
    (root / "home").mkdir()
    return {
        "PATH": str(bin_dir),  # nothing else: no node, no system jupyter
        "HOME": str(root / "home"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_DATA_DIR": str(root / "data"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONNOUSERSITE": "1",
        "LANG": "C.UTF-8",
    }


def test_runtime_txt_names_a_current_python() -> None:
    assert re.fullmatch(r"python-3\.(1[2-9])\n", BINDER.joinpath("runtime.txt").read_text())


def test_no_postbuild_is_needed() -> None:
    # Both extensions are enabled by the install itself (wheel shared-data).
    assert not (BINDER / "postBuild").exists()


def test_the_server_extension_is_enabled_and_ok(binder_env: dict[str, str]) -> None:
    out = _run(["jupyter", "server", "extension", "list"], env=binder_env)
    assert re.search(r"nbserve\._jupyter\s+enabled", out), out
    assert re.search(r"nbserve\._jupyter\s+\S*\s*OK", out), out


def test_the_labextension_is_enabled_and_ok_without_node(binder_env: dict[str, str]) -> None:
    assert shutil.which("node", path=binder_env["PATH"]) is None
    out = _run(["jupyter", "labextension", "list"], env=binder_env)
    assert re.search(r"@nbserve/labextension v\S+ enabled OK \(python, jupyter-nbserve\)", out), out


def test_jupyterlab_browser_check_passes(binder_env: dict[str, str]) -> None:
    out = _run(
        # --allow-root: CI runs as root on Debian; the check itself is unchanged.
        ["python", "-m", "jupyterlab.browser_check", "--no-browser-test", "--allow-root"],
        env=binder_env,
        timeout=300,
    )
    assert "Traceback" not in out
