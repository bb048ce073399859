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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from notebook_export import kernel_env, run_cell, serve_archive

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


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], list[Path]]:
    """Run the notebook; return the live answers and two exports of the service."""
    work = tmp_path_factory.mktemp("notebook")
    nb = nbformat.v4.new_notebook()
    client = NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=60)
    env = kernel_env(work)
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

    served, output = serve_archive(
        path, venv, [("/predict", q) for q in QUERIES], env=env, cwd=tmp_path, ready_timeout=60
    )
    assert served == answers
    assert "Traceback" not in output, output
