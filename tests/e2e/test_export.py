"""From a live notebook service to an archive that serves the same answers anywhere.

A real kernel (nbclient) runs a notebook whose `%%serve` cell uses a helper and a constant from
other cells and a model from the store. The service is exported twice (byte-identical), the
archive is installed into a brand-new virtual environment by its own `env/python/install.sh`
(no system site-packages: only what the archive pins, plus nbserve's bundled wheel), served
there with `nbserve serve ARCHIVE`, and must answer exactly as the notebook's service does.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from nbclient import NotebookClient

from nbserve._bento import archive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CELLS = [
    "%load_ext nbserve\nimport numpy as np\nimport nbserve\nfrom nbserve import services, stop_all",
    # The helper and the constant live in another cell than the service.
    "def featurize(x):\n    x = np.asarray(x, dtype=float)\n    return np.hstack([x, x**2]) * SCALE\n\nSCALE = 0.5",
    "rng = np.random.default_rng(0)\nX = rng.normal(size=(64, 2))\ny = X[:, 0] - 2 * X[:, 1] + 0.1 * X[:, 0] ** 2\n"
    "w, *_ = np.linalg.lstsq(featurize(X), y, rcond=None)\nnbserve.models.save('tiny-linear', w)",
    "%%serve\n@nbserve.service\nclass Linear:\n    model = nbserve.models.BentoModel('tiny-linear:latest')\n\n"
    "    def __init__(self) -> None:\n        self.w = self.model.load()\n\n"
    "    @nbserve.api\n    def predict(self, x: np.ndarray) -> np.ndarray:\n        return featurize(x) @ self.w\n",
]
QUERIES = [{"x": [[1.0, 2.0], [3.0, -4.0]]}, {"x": [[0.25, 0.5]]}]


def run_cell(client: NotebookClient, nb: Any, source: str) -> str:
    cell = nbformat.v4.new_code_cell(source)
    nb.cells.append(cell)
    client.execute_cell(cell, len(nb.cells) - 1)
    return "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], list[Path]]:
    """Run the notebook; return the live answers and two exports of the service."""
    work = tmp_path_factory.mktemp("notebook")
    nb = nbformat.v4.new_notebook()
    client = NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=60)
    env = {
        **os.environ,
        "NBSERVE_HOME": str(work / "home"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    with client.setup_kernel(env=env, cwd=str(work)):
        for source in CELLS:
            run_cell(client, nb, source)
        answers = json.loads(
            run_cell(
                client,
                nb,
                f"import httpx, json\nurl = services()['Linear'].url\nprint(json.dumps([httpx.post(url + '/predict', json=q).json() for q in {QUERIES!r}]))",
            )
        )
        paths = []
        for out in ("dist-1", "dist-2"):
            run_cell(client, nb, f"%serve export Linear -o {work / out}")
            paths += sorted((work / out).glob("*.bento"))
        run_cell(client, nb, "stop_all()")
    return answers, paths


def test_exporting_twice_gives_the_same_bytes(exported: tuple[list[Any], list[Path]]) -> None:
    _, (first, second) = exported
    assert first.name == second.name
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )


def test_the_archive_carries_the_helper_the_model_and_nbserve(
    exported: tuple[list[Any], list[Path]], tmp_path: Path
) -> None:
    _, (path, _) = exported
    bento = archive.extract(path, home=tmp_path)
    source = (bento / "src/service.py").read_text()
    for expected in ("import numpy as np", "SCALE = 0.5", "def featurize(x):"):
        assert expected in source
    for unexpected in (
        "rng",
        "lstsq",
        "\n%%serve",
        "%load_ext",
    ):  # training code and magics stay behind
        assert unexpected not in source
    info = archive.read_bento_yaml(bento)
    assert [m["tag"].split(":")[0] for m in info["models"]] == ["tiny-linear"]
    requirements = (bento / "env/python/requirements.txt").read_text().split()
    assert any(r.startswith("numpy==") for r in requirements)
    assert any(r.startswith("jupyter-nbserve==") for r in requirements)
    assert list((bento / "env/python/wheels").glob("jupyter_nbserve-*.whl"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_archive_serves_the_same_answers_from_a_fresh_venv(
    exported: tuple[list[Any], list[Path]], tmp_path: Path
) -> None:
    answers, (path, _) = exported
    bento = archive.extract(path, home=tmp_path / "cache")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    started = time.monotonic()
    install = subprocess.run(
        ["sh", str(bento / "env/python/install.sh")],
        env={**os.environ, "PYTHON": str(python)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    print(
        f"install.sh took {time.monotonic() - started:.1f}s"
    )  # shown with -s; the brief asks for it
    # Away from the source tree (-c puts the working directory on sys.path) and any PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["NBSERVE_HOME"] = str(tmp_path / "serve-home")
    probe = subprocess.run(
        [str(python), "-c", "import nbserve; print(nbserve.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stdout.startswith(str(venv))  # the bundled wheel, not the source tree

    port = _free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "nbserve"), "serve", str(path), "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[0]
            assert time.monotonic() < deadline, "the archive's server did not get ready in 60 s"
            time.sleep(0.2)
        served = [httpx.post(url + "/predict", json=q, timeout=10).json() for q in QUERIES]
        assert served == answers
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
