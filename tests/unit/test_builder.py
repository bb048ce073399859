"""The builder: a kernel's service and the same notebook saved give the same archive."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import yaml

from nbserve._bento import archive, builder, sources
from nbserve._bento.capture import CaptureError
from nbserve._bento.notebook_source import python_source
from nbserve._cli import build as build_cli
from nbserve._cli import inspect as inspect_cli
from nbserve._sdk.service import Service

CELLS = [
    "import numpy as np\nimport nbserve\n%matplotlib inline",
    "OFFSET = 1.5\n\ndef shift(x):\n    return np.asarray(x) + OFFSET",
    "trained = np.arange(3.0)  # not used by the service: stays behind",
    "%%serve --port 0\n@nbserve.service(labels={'stage': 'test'})\nclass Shifter:\n"
    "    def __init__(self) -> None:\n        self.scale = nbserve.models.get('scale').load()\n\n"
    "    @nbserve.api\n    def go(self, x: list[float]) -> list[float]:\n        return (shift(x) * self.scale).tolist()\n",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import nbserve.models

    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(builder, "nbserve_wheel", lambda cache, **_: None)
    nbserve.models.save("scale", np.array(2.0))
    yield
    sys.modules.pop("service", None)


def run_like_a_kernel(cells: list[str]) -> tuple[Service[Any], dict[str, Any]]:
    """Run the cells in one namespace, as a kernel would; `%%serve` records the cell's body."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for cell in cells:
        source = python_source(cell)
        assert source is not None
        exec(compile(source, "<cell>", "exec"), namespace)
    service = namespace["Shifter"]
    service.source = cells[-1].split("\n", 1)[1]
    return service, namespace


def members(path: Path) -> dict[str, bytes]:
    with archive.open_tar(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def test_the_kernel_and_the_saved_notebook_give_the_same_archive(tmp_path: Path) -> None:
    service, namespace = run_like_a_kernel(CELLS)
    from_kernel = sources.export_service(service, tmp_path / "a", cells=CELLS, namespace=namespace)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, tmp_path / "analysis.ipynb")
    from_notebook = sources.build_notebook(tmp_path / "analysis.ipynb", "Shifter", tmp_path / "b")
    assert from_kernel.name == from_notebook.name
    assert from_kernel.read_bytes() == from_notebook.read_bytes()


def test_the_archive_holds_what_design_section_6_lists(tmp_path: Path) -> None:
    service, namespace = run_like_a_kernel(CELLS)
    files = members(sources.export_service(service, tmp_path, cells=CELLS, namespace=namespace))
    assert {
        "bento.yaml",
        "src/service.py",
        "env/python/requirements.txt",
        "env/python/version.txt",
        "env/python/install.sh",
        "env/docker/Dockerfile",
        "deploy/kubernetes.yaml",
        "apis/openapi.yaml",
        "apis/schema.json",
        "models/scale/latest",
    } <= set(files)
    info = yaml.safe_load(files["bento.yaml"])
    assert info["service"] == "service:Shifter"
    assert info["labels"] == {"stage": "test"}
    assert [m["tag"].split(":")[0] for m in info["models"]] == [
        "scale"
    ]  # found in __init__'s get()
    assert info["schema"]["routes"][0]["route"] == "/go"
    version = info["models"][0]["tag"].split(":")[1]
    assert files["models/scale/latest"].decode() == version
    model_yaml = yaml.safe_load(files[f"models/scale/{version}/model.yaml"])
    assert (
        model_yaml["creation_time"] == "2020-01-01T00:00:00+00:00"
    )  # the archive's epoch, not the save time
    assert b"trained" not in files["src/service.py"]


def test_an_uncapturable_global_stops_the_export(tmp_path: Path) -> None:
    cells = [*CELLS[:3], CELLS[3].replace("shift(x)", "shift(x) + trained.sum()")]
    service, namespace = run_like_a_kernel(cells)
    with pytest.raises(
        CaptureError, match=r"trained \(numpy.ndarray, from `trained = np.arange\(3.0\)"
    ):
        sources.export_service(service, tmp_path, cells=cells, namespace=namespace)
    assert not list(tmp_path.glob("*.bento"))


def test_local_modules_travel_in_src(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mylocalshift.py").write_text("import yaml\n\nAMOUNT = 3.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "service.py").write_text(
        "import nbserve\nimport mylocalshift\n\n@nbserve.service\nclass Adder:\n    @nbserve.api\n"
        "    def go(self, x: float) -> float:\n        return x + mylocalshift.AMOUNT\n"
    )
    files = members(sources.build_file(tmp_path / "service.py", "Adder", tmp_path / "dist"))
    assert files["src/mylocalshift.py"] == b"import yaml\n\nAMOUNT = 3.0\n"
    assert b"pyyaml==" in files["env/python/requirements.txt"]  # what the local module imports
    sys.modules.pop("mylocalshift", None)


def test_the_build_and_inspect_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, tmp_path / "analysis.ipynb")
    args = argparse.Namespace(
        target=str(tmp_path / "analysis.ipynb"),
        service="Shifter",
        output=str(tmp_path / "dist"),
        requirements=None,
    )
    assert build_cli.run(args) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.parent == tmp_path / "dist"
    assert path.name.startswith("shifter-")
    assert inspect_cli.run(argparse.Namespace(archive=str(path), json=False)) == 0
    shown = capsys.readouterr().out
    assert f"bento     {path.name[:-6].replace('-', ':', 1)}" in shown
    assert "POST /go  x: array" in shown
    assert "models    scale:" in shown
    assert "requires  jupyter-nbserve==" in shown


def test_build_needs_to_know_which_service(tmp_path: Path) -> None:
    (tmp_path / "nb.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    with pytest.raises(SystemExit, match="pass --service NAME"):
        build_cli.run(
            argparse.Namespace(
                target=str(tmp_path / "nb.ipynb"), service=None, output="dist", requirements=None
            )
        )
    with pytest.raises(builder.BuildError, match="defines a service called 'Nope'"):
        sources.build_notebook(tmp_path / "nb.ipynb", "Nope", tmp_path)


def test_model_tags_are_found_only_in_model_store_calls() -> None:
    from nbserve._bento.bentofile import model_tags

    source = (
        "import nbserve, bentoml\nfrom nbserve import models\nfrom nbserve.models import BentoModel\n"
        "a = nbserve.models.get('a:latest')\nb = bentoml.models.get('b')\nc = models.get('c:v1')\n"
        "d = BentoModel('d')\ne = self.models.get('not-a-model')\nf = os.environ.get('NOPE')\n"
        "g = nbserve.models.get(name)\nh = bentoml.sklearn.load_model('h:v2')\n"
        "i = nbserve.pytorch.get('i')\nj = self.sklearn.load_model('nope')\n"
    )
    assert model_tags(source) == ["a:latest", "b", "c:v1", "d", "h:v2", "i"]


# ---- requirements that load the models -------------------------------------------------------
def requirements_of(path: Path) -> list[str]:
    return members(path)["env/python/requirements.txt"].decode().split()


def test_a_model_loaded_through_the_store_pins_its_framework(tmp_path: Path) -> None:
    """No `import sklearn` in the source: the entry's pickle names it, so it is pinned."""
    from importlib import metadata

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import nbserve.models

    x, y = load_iris(return_X_y=True)
    nbserve.models.save("iris", LogisticRegression(max_iter=300).fit(x, y))
    (tmp_path / "service.py").write_text(
        "import nbserve\n\n@nbserve.service\nclass Iris:\n"
        "    model = nbserve.models.BentoModel('iris:latest')\n\n"
        "    def __init__(self) -> None:\n        self.clf = self.model.load()\n\n"
        "    @nbserve.api\n    def predict(self, x: list[list[float]]) -> list[int]:\n"
        "        return self.clf.predict(x).tolist()\n"
    )
    pins = requirements_of(sources.build_file(tmp_path / "service.py", "Iris", tmp_path / "dist"))
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in pins
    assert f"cloudpickle=={metadata.version('cloudpickle')}" in pins  # the entry's framework
    assert f"numpy=={metadata.version('numpy')}" in pins


def test_the_services_it_depends_on_bring_their_packages_and_models(tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text(
        "import nbserve\n\n"
        "@nbserve.service(python_packages=['rich==13.0', 'pyyaml==6.0'])\nclass Scaler:\n"
        "    model = nbserve.models.BentoModel('scale:latest')\n\n"
        "    @nbserve.api\n    def go(self, x: float) -> float:\n        return x * float(self.model.load())\n\n"
        "@nbserve.service(python_packages=['pyyaml>=6'])\nclass Front:\n"
        "    scaler = nbserve.depends(Scaler)\n\n"
        "    @nbserve.api\n    def go(self, x: float) -> float:\n        return self.scaler.go(x)\n"
    )
    path = sources.build_file(tmp_path / "service.py", "Front", tmp_path / "dist")
    pins = requirements_of(path)
    assert "rich==13.0" in pins
    assert "pyyaml>=6" in pins  # the service's own line wins over its dependency's
    assert "pyyaml==6.0" not in pins
    assert any(name.startswith("models/scale/") for name in members(path))


def test_a_module_no_distribution_provides_is_reported_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import nbserve.models

    (tmp_path / "gone_helpers.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_helpers  # type: ignore[import-not-found]

    saved = nbserve.models.save("thing", gone_helpers.Thing())
    (tmp_path / "gone_helpers.py").unlink()  # saved by reference to a module that is now gone
    sys.modules.pop("gone_helpers", None)
    (tmp_path / "service.py").write_text(
        "import nbserve\n\n@nbserve.service\nclass Uses:\n"
        "    model = nbserve.models.BentoModel('thing:latest')\n\n"
        "    @nbserve.api\n    def go(self, x: float) -> float:\n        return x\n"
    )
    capsys.readouterr()
    sources.build_file(tmp_path / "service.py", "Uses", tmp_path / "dist")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"gone_helpers (to load model {saved.tag})" in err
    assert "python_packages=[...]" in err


def test_a_local_module_a_pickle_names_travels_in_src(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbserve.models

    (tmp_path / "pickled_helpers.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import pickled_helpers  # type: ignore[import-not-found]

    nbserve.models.save("thing", pickled_helpers.Thing())
    (tmp_path / "service.py").write_text(
        "import nbserve\n\n@nbserve.service\nclass Uses:\n"
        "    model = nbserve.models.BentoModel('thing:latest')\n\n"
        "    @nbserve.api\n    def go(self, x: float) -> float:\n        return x\n"
    )
    files = members(sources.build_file(tmp_path / "service.py", "Uses", tmp_path / "dist"))
    assert files["src/pickled_helpers.py"] == b"class Thing:\n    pass\n"
    sys.modules.pop("pickled_helpers", None)


def test_an_export_shows_its_progress_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service, namespace = run_like_a_kernel(CELLS)
    capsys.readouterr()
    sources.export_service(service, tmp_path / "quiet", cells=CELLS, namespace=namespace)
    assert capsys.readouterr().err == ""  # a test is neither a kernel nor a terminal
    sources.export_service(
        service, tmp_path / "shown", cells=CELLS, namespace=namespace, progress=True
    )
    err = capsys.readouterr().err
    assert "hashing models" in err
    assert "writing shifter-" in err


def test_imports_inside_methods_are_pinned(tmp_path: Path) -> None:
    from importlib import metadata

    (tmp_path / "service.py").write_text(
        "import nbserve\n\n@nbserve.service\nclass Lazy:\n"
        "    def __init__(self) -> None:\n        import yaml\n\n        self.dump = yaml.safe_dump\n\n"
        "    @nbserve.api\n    def go(self, x: float) -> float:\n"
        "        from orjson import dumps\n\n        return float(len(dumps(x)))\n"
    )
    pins = requirements_of(sources.build_file(tmp_path / "service.py", "Lazy", tmp_path / "dist"))
    assert f"pyyaml=={metadata.version('pyyaml')}" in pins
    assert f"orjson=={metadata.version('orjson')}" in pins


def test_install_sh_names_the_pytorch_index_when_a_cpu_build_cannot_be_found(
    tmp_path: Path,
) -> None:
    """A `+cpu` pin resolves only from the PyTorch index: the failure says how to install."""
    import subprocess

    env_dir = tmp_path / "env/python"
    env_dir.mkdir(parents=True)
    (env_dir / "install.sh").write_text(builder.INSTALL_SH)
    (env_dir / "requirements.txt").write_text("torch==2.13.0+cpu\n")
    fake = tmp_path / "python"  # a pip that fails as pip does when no index has the build
    fake.write_text(
        "#!/bin/sh\necho 'No matching distribution found for torch==2.13.0+cpu' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    done = subprocess.run(
        ["sh", str(env_dir / "install.sh")],
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(fake)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu sh" in done.stderr
