"""Serving a bento: open it, check the environment, import its service, find its models."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nbserve._bento import builder, loader, sources
from nbserve._bento.capture import capture

CELLS = [
    "import numpy as np\nimport nbserve",
    "def double(x):\n    return np.asarray(x) * 2",
    "%%serve\n@nbserve.service\nclass Doubler:\n    model = nbserve.models.BentoModel('offsets:latest')\n\n"
    "    @nbserve.api\n    def go(self, x: list[float]) -> list[float]:\n        return (double(x) + self.model.load()).tolist()\n",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NBSERVE_MODEL_STORE", "")  # so the loader's setting is undone after
    monkeypatch.setattr(builder, "nbserve_wheel", lambda cache, **_: None)
    previous = sys.modules.get("service")
    yield
    sys.modules.pop("service", None)
    if previous is not None:
        sys.modules["service"] = previous


@pytest.fixture
def bento(tmp_path: Path) -> Path:
    import nbserve.models

    nbserve.models.save("offsets", np.array([0.5, 1.0]))
    captured = capture(CELLS[-1:], CELLS, service="Doubler")
    variable, service = sources.load_source(captured.text, "Doubler")
    return builder.build_bento(service, captured, tmp_path / "dist", variable=variable)


def test_a_bento_serves_its_service_with_its_own_models(
    bento: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbserve.models

    nbserve.models.delete("offsets")  # only the archive's copy is left
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "elsewhere"))
    service = loader.load_bento_service(bento)
    assert service.name == "Doubler"
    assert service().go([1.0, 2.0]) == [2.5, 5.0]
    extracted = tmp_path / "elsewhere" / "bentos" / "doubler"
    assert loader.is_bento(bento)
    assert loader.is_bento(next(extracted.iterdir()))


def test_an_extracted_directory_is_served_in_place(bento: Path, tmp_path: Path) -> None:
    opened = loader.open_bento(bento, home=tmp_path / "cache")
    again = loader.open_bento(opened.path)
    assert again.path == opened.path
    assert again.tag.startswith("doubler:")
    assert loader.check_environment(again) == []


def test_environment_differences_are_listed_on_one_line(
    bento: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = loader.open_bento(bento, home=tmp_path / "cache")
    requirements = opened.path / "env/python/requirements.txt"
    requirements.write_text(
        requirements.read_text() + "numpy==0.0.1\nsurely-not-installed-dist==1.0\n"
    )
    (opened.path / "env/python/version.txt").write_text("2.7.18\n")
    problems = loader.check_environment(opened)
    assert problems[0].startswith("Python ")
    assert problems[0].endswith("2.7.18 in the bento")
    assert f"numpy {np.__version__} here, 0.0.1 in the bento" in problems
    assert "surely-not-installed-dist is not installed (the bento pins 1.0)" in problems
    capsys.readouterr()
    loader.load_bento_service(opened.path)
    err = capsys.readouterr().err
    # One readable line, not a Python warning with its file, line number and source line.
    assert err.count("\n") == 1
    assert err.startswith(f"nbserve: bento {opened.tag} was built in another environment: ")
    assert "surely-not-installed-dist is not installed" in err
    assert "install.sh" in err
    assert "Warning" not in err


def test_a_local_version_label_is_the_same_release(bento: Path, tmp_path: Path) -> None:
    """`torch 2.13.0+cpu` (the PyTorch index's CPU build) is release 2.13.0, as PyPI's is."""
    opened = loader.open_bento(bento, home=tmp_path / "cache")
    requirements = opened.path / "env/python/requirements.txt"
    requirements.write_text(
        requirements.read_text()
        + f"numpy=={np.__version__}+cpu\n"
        + f"numpy=={np.__version__.split('+')[0]}\n"
    )
    assert loader.check_environment(opened) == []


def test_a_path_that_is_not_a_bento_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no bento at"):
        loader.open_bento(tmp_path / "missing.bento")
    with pytest.raises(Exception, match=r"without a bento\.yaml"):
        loader.open_bento(tmp_path)
    assert not loader.is_bento(tmp_path)
