"""Pinned requirements from the captured code's imports, and the user's on top."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import pytest

import nbserve
from nbserve import __version__
from nbserve._bento.requirements import (
    RequirementsError,
    canonical_name,
    image_packages,
    local_source,
    nbserve_wheel,
    resolve_requirements,
)

NUMPY = f"numpy=={metadata.version('numpy')}"
NBSERVE = f"jupyter-nbserve=={__version__}"


def test_imports_map_to_pinned_distributions_and_stdlib_is_left_out() -> None:
    req = resolve_requirements(["numpy", "yaml", "os", "json", "nbserve", "collections"])
    assert req.lines == (NBSERVE, NUMPY, f"pyyaml=={metadata.version('PyYAML')}")
    assert req.python_version == platform.python_version()
    assert req.text == "".join(f"{line}\n" for line in req.lines)


def test_nbserve_is_always_pinned() -> None:
    assert resolve_requirements([]).lines == (NBSERVE,)


def test_the_users_requirements_win_and_extend(tmp_path: Path) -> None:
    file = tmp_path / "requirements.txt"
    file.write_text(
        "# pins\n--extra-index-url https://example.invalid/simple\nNumPy>=1.26  # looser\nrich==13.0\n"
    )
    req = resolve_requirements(
        ["numpy"],
        requirements_file=file,
        packages=["scikit_learn==1.5.2"],
        image={"python_packages": ["rich==14.0"]},
    )
    assert req.lines == (
        "--extra-index-url https://example.invalid/simple",
        NBSERVE,
        "NumPy>=1.26",
        "rich==13.0",  # --requirements beats the image
        "scikit_learn==1.5.2",
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("-r other.txt", "another file"),
        ("-e ./pkg", "local path"),
        ("./pkg", "local path"),
        ("--user", "not carried"),
        ("==1.0", "distribution name"),
    ],
)
def test_requirements_the_archive_cannot_carry_are_refused(line: str, reason: str) -> None:
    with pytest.raises(RequirementsError, match=reason):
        resolve_requirements([], packages=[line])


def test_local_modules_and_missing_ones_are_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mylocalhelpers.py").write_text("X = 1\n")
    (tmp_path / "mylocalpkg").mkdir()
    (tmp_path / "mylocalpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    req = resolve_requirements(["mylocalhelpers", "mylocalpkg", "surely_not_installed_anywhere"])
    assert req.local_modules == (tmp_path / "mylocalhelpers.py", tmp_path / "mylocalpkg")
    assert req.missing == ("surely_not_installed_anywhere",)


def test_image_packages_reads_bentoml_style_images() -> None:
    class BentoMLImage:  # BentoML's Image keeps its packages as requirements text
        python_requirements = "torch==2.3\nnumpy\n"

        def python_packages(self, *packages: str) -> BentoMLImage:
            return self

    class Plain:
        python_packages = ("pandas==2.2",)

    assert image_packages(BentoMLImage()) == ["torch==2.3", "numpy"]
    assert image_packages(Plain()) == ["pandas==2.2"]
    assert image_packages({"python_packages": ["x"]}) == ["x"]
    assert image_packages("python:3.11-slim") == []
    assert image_packages(None) == []


def test_canonical_name() -> None:
    assert canonical_name("Scikit_Learn") == "scikit-learn"
    assert canonical_name("ruamel.yaml") == "ruamel-yaml"


def test_an_editable_install_is_a_local_source() -> None:
    # The development install is editable, so its wheel is bundled rather than pinned.
    root = local_source()
    assert root is not None
    assert (root / "pyproject.toml").is_file()
    assert (root / "nbserve" / "__init__.py").is_file()


def test_the_source_bundled_is_the_tree_that_runs() -> None:
    # A checkout put first on PYTHONPATH over an editable install of another tree: the wheel
    # must be built from the code that runs (and that the tests test), not the installed one.
    assert local_source() == Path(nbserve.__file__).resolve().parents[1]


@pytest.mark.slow
def test_nbserves_wheel_builds_reproducibly_and_is_cached(tmp_path: Path) -> None:
    first = nbserve_wheel(tmp_path / "one")
    second = nbserve_wheel(tmp_path / "two")
    assert first is not None
    assert second is not None
    assert first.name == f"jupyter_nbserve-{__version__}-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()  # SOURCE_DATE_EPOCH: no build time inside
    assert nbserve_wheel(tmp_path / "one") == first  # the cache answers the second call
