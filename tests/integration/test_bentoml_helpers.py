"""BentoML's service helpers under nbserve: `use_arguments`, `importing`, `get_current_service`,
`load`, `serve(target, working_dir=...)` as a context manager, `monitor`, `images.Image`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

import nbserve
from nbserve.exceptions import InvalidArgument
from nbserve.testing import running_service

SERVICE = textwrap.dedent(
    """
    import nbserve
    from pydantic import BaseModel

    class Args(BaseModel):
        animal: str
        legs: int = 4

    args = nbserve.use_arguments(Args)
    loose = nbserve.use_arguments()

    with nbserve.importing():
        import a_module_that_only_exists_where_the_service_runs  # noqa: F401

    @nbserve.service(workers=WORKERS)
    class Zoo:
        @nbserve.api
        def describe(self) -> dict:
            return {
                "animal": args.animal,
                "legs": args.legs,
                "loose": vars(loose),
                "current_is_self": nbserve.get_current_service() is self,
            }
    """
)


def _write(tmp_path: Path, workers: str) -> Path:
    path = tmp_path / "zoo.py"
    path.write_text(SERVICE.replace("WORKERS", workers))
    return path


def test_arguments_reach_the_service_and_its_workers(tmp_path: Path) -> None:
    """`nbserve serve --arg` sets what `use_arguments` reads, in the worker process too."""
    path = _write(tmp_path, "1")
    # The missing import is fine at build/inspect time, but a worker cannot serve without it:
    # give the worker a stand-in module so the test is about arguments.
    (tmp_path / "a_module_that_only_exists_where_the_service_runs.py").write_text("")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nbserve._cli.main",
            "serve",
            f"{path}:Zoo",
            "--port",
            "0",
            "--arg",
            "animal=spider",
            "--arg",
            "legs=8",
            "-v",
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            if line.startswith("nbserve: serving Zoo at "):
                url = line.split(" at ")[1].split()[0]
                break
        assert url is not None
        body = httpx.post(f"{url}/describe", json={}, timeout=60).json()
        assert body == {
            "animal": "spider",
            "legs": 8,
            "loose": {"animal": "spider", "legs": "8"},
            "current_is_self": True,
        }
    finally:
        process.terminate()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()


def test_bad_arguments_name_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "None")
    result = subprocess.run(
        [sys.executable, "-m", "nbserve._cli.main", "serve", f"{path}:Zoo", "--arg", "legs=8"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "animal" in result.stderr
    assert "--arg KEY=VALUE" in result.stderr


def test_load_and_serve_a_target_from_a_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nbserve.load` / `nbserve.serve("zoo:Zoo", working_dir=...)`, as BentoML's; the import
    that `importing()` guards is skipped here (not a serving process)."""
    _write(tmp_path, "None")
    monkeypatch.setenv("NBSERVE_ARGS", json.dumps({"animal": "cat"}))
    monkeypatch.syspath_prepend(str(tmp_path))  # undone after the test
    loaded = nbserve.load("zoo:Zoo", working_dir=str(tmp_path))
    assert loaded.name == "Zoo"
    with (
        nbserve.serve("zoo.py:Zoo", working_dir=str(tmp_path)) as handle,
        handle.get_client() as client,
    ):
        body = client.describe()
        assert body["animal"] == "cat"
        assert body["current_is_self"] is True
    assert handle.state == "stopped"
    with pytest.raises(InvalidArgument, match="no such directory"):
        nbserve.load("zoo:Zoo", working_dir=str(tmp_path / "missing"))
    sys.modules.pop("zoo", None)


def test_importing_raises_where_the_service_is_served(tmp_path: Path) -> None:
    path = _write(tmp_path, "1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbserve._cli.main",
            "serve",
            f"{path}:Zoo",
            "--port",
            "0",
            "--arg",
            "animal=cat",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "a_module_that_only_exists_where_the_service_runs" in result.stderr


@nbserve.service
class Monitored:
    @nbserve.api
    def predict(self, x: list[float]) -> int:
        label = int(sum(x) > 1)
        with nbserve.monitor("iris_classifier_prediction") as mon:
            mon.log_batch(x, name="features", role="feature", data_type="numerical")
            mon.log(label, name="pred", role="prediction", data_type="categorical")
        return label


def test_monitor_writes_json_lines_and_a_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBSERVE_MONITORING_DIR", str(tmp_path))
    with running_service(Monitored) as handle:
        assert httpx.post(f"{handle.url}/predict", json={"x": [0.5, 0.9]}, timeout=60).json() == 1
    root = tmp_path / "iris_classifier_prediction"
    schema = json.loads((root / "schema.json").read_text())
    assert [c["name"] for c in schema["columns"]] == ["features", "pred"]
    (log,) = (root / "data").iterdir()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["features"], r["pred"]) for r in rows] == [(0.5, 1), (0.9, None)]
    with pytest.raises(InvalidArgument, match="data_type"), nbserve.monitor("x") as mon:
        mon.log(1, name="a", role="feature", data_type="weird")


def test_image_packages_become_requirements() -> None:
    image = (
        nbserve.images.Image(python_version="3.11", base_image="debian:bookworm-slim")
        .python_packages("scikit-learn>=1.3", "pandas")
        .system_packages("libgomp1")
    )

    @nbserve.service(image=image, python_packages=["numpy"])
    class Imaged:
        @nbserve.api
        def ok(self) -> bool:
            return True

    assert Imaged.config.python_packages == ("numpy", "scikit-learn>=1.3", "pandas")
    assert Imaged.config.image.base_image == "debian:bookworm-slim"
    assert image.apt_packages == ["libgomp1"]
