"""Every example notebook runs clean under `pytest --nbval-lax` and leaves nothing running.

nbval runs in a subprocess (its own pytest session, this project's pytest configuration) the
way a contributor would run it: `--nbval-lax` fails on any error and compares the outputs of
the cells marked `# NBVAL_CHECK_OUTPUT` (the deterministic ones: client results, curl output).
The kernel writes its discovery files into a private runtime directory, which must be empty
once the notebook has ended with `nbserve.stop_all()` and its kernel has shut down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(660)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# The notebooks of the notebook-serving issue; other examples join this list as they land.
NOTEBOOKS = [
    EXAMPLES / "01-quickstart.ipynb",
    EXAMPLES
    / "02-real-model.ipynb",  # loads torch and an 88 MB encoder twice: minutes, not seconds
    EXAMPLES / "03-export.ipynb",
    EXAMPLES / "04-try-and-load-test.ipynb",
]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_example_notebook_runs_under_nbval_lax(notebook: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path),
        "NBSERVE_HOME": str(tmp_path / "home"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    for var in ("NBSERVE_PUBLIC_URL", "JUPYTERHUB_SERVICE_PREFIX"):
        env.pop(var, None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "--nbval-current-env", str(notebook)],
        cwd=EXAMPLES.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert sorted((tmp_path / "nbserve").glob("*.json")) == [], "a service outlived its notebook"


def test_the_quickstart_module_twin_serves_the_same_class() -> None:
    """`examples/quickstart.py` is what `nbserve serve examples/quickstart.py:Sentiment` serves."""
    import importlib.util

    import nbserve

    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLES / "quickstart.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with nbserve.serve(module.Sentiment) as handle, handle.wait_ready().client() as client:
        assert client.classify(text="I love this") == {"label": "positive", "score": 1}
