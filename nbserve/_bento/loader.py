"""Serve a bento: open it (extracting an archive safely into the cache), check that this
environment matches the one it was built in, and import its service.

`nbserve serve iris-<version>.bento` and the container's `nbserve serve /home/nbserve/bento`
both come here. An archive is extracted once into `$NBSERVE_HOME/bentos/<name>/<version>/`
(see `archive.extract`); a directory with a `bento.yaml` is served in place and never written
to, so it may be read-only (a container image, a ConfigMap).

The environment check compares the Python version (major.minor) and every `name==version` pin
of `env/python/requirements.txt` with what is installed, and prints one line on stderr with the
whole list and the fix; it does not refuse, because a patch-level difference usually works and
the user is the judge. A local version label names a build of the same release (`torch
2.13.0+cpu` from the PyTorch index, `2.13.0` from PyPI), so it is not a difference. The model store is pointed at the bento's `models/` (`NBSERVE_MODEL_STORE`, which
spawned workers inherit), so `nbserve.models.get("iris:latest")` finds the bundled entry.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nbserve._bento import archive
from nbserve._bento.requirements import DISTRIBUTION, canonical_name
from nbserve._sdk.service import Service
from nbserve._version import __version__
from nbserve.exceptions import NbserveError

__all__ = [
    "Bento",
    "check_environment",
    "is_bento",
    "load_bento_service",
    "open_bento",
]

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)\s*$")


@dataclass(frozen=True)
class Bento:
    """An opened bento: its directory and its bento.yaml."""

    path: Path
    info: dict[str, Any]

    @property
    def tag(self) -> str:
        return f"{self.info.get('name')}:{self.info.get('version')}"

    @property
    def module_and_variable(self) -> tuple[str, str]:
        module, _, variable = str(self.info.get("service", "service:")).partition(":")
        return module or "service", variable


def is_bento(path: str | os.PathLike[str]) -> bool:
    """Whether `nbserve serve PATH` should treat PATH as a bento (file or directory)."""
    p = Path(path)
    return (p.is_file() and p.suffix == archive.SUFFIX) or (
        p.is_dir() and (p / archive.BENTO_YAML).is_file()
    )


def open_bento(path: str | os.PathLike[str], *, home: Path | None = None) -> Bento:
    """The bento at `path`: a `.bento` archive (extracted into the cache) or its directory."""
    p = Path(path)
    if p.is_dir():
        if not (p / archive.BENTO_YAML).is_file():
            msg = f"{p} is a directory without a bento.yaml; pass a .bento archive or an extracted bento's directory"
            raise NbserveError(msg)
        directory = p
    elif p.is_file():
        directory = archive.extract(p, home=home)
    else:
        msg = f"no bento at {p}; build one with `nbserve build NOTEBOOK --service NAME` or `%serve export NAME`"
        raise NbserveError(msg)
    return Bento(directory, archive.read_bento_yaml(directory))


def _installed(name: str) -> str | None:
    if canonical_name(name) == DISTRIBUTION:
        return __version__
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _release(version: str) -> str:
    """`2.13.0+cpu` → `2.13.0`: the public release, without the build's local label."""
    return version.split("+", 1)[0].strip()


def check_environment(bento: Bento) -> list[str]:
    """The differences between this environment and the bento's, one line each."""
    problems = []
    wanted = (
        (bento.path / "env/python/version.txt").read_text(encoding="utf-8").strip()
        if (bento.path / "env/python/version.txt").is_file()
        else ""
    )
    if wanted and wanted.split(".")[:2] != platform.python_version().split(".")[:2]:
        problems.append(f"Python {platform.python_version()} here, {wanted} in the bento")
    requirements = bento.path / "env/python/requirements.txt"
    lines = requirements.read_text(encoding="utf-8").splitlines() if requirements.is_file() else []
    for line in lines:
        match = _PIN.match(line.strip())
        if match is None:
            continue
        name, version = match.groups()
        have = _installed(name)
        if have is None:
            problems.append(f"{name} is not installed (the bento pins {version})")
        elif _release(have) != _release(version):
            problems.append(f"{name} {have} here, {version} in the bento")
    return problems


def _import_service(bento: Bento) -> Service[Any]:
    # A dotted name of identifiers only: `..tmp.x.evil` would import code outside the bento.
    module_name, variable, inside = archive.service_module_file(bento.info)
    src = bento.path / "src"
    file = bento.path / inside
    if not file.resolve().is_relative_to(src.resolve()):
        msg = f"bento {bento.tag} names service {bento.info.get('service')!r}, whose file is outside the bento's src/; refusing to import it"
        raise NbserveError(msg)
    if not file.is_file():
        msg = f"bento {bento.tag} names service {bento.info.get('service')!r} but has no {file.relative_to(bento.path)}; the archive is incomplete"
        raise NbserveError(msg)
    # Helpers the bento carries beside service.py import by name, from here and in workers.
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    spec = importlib.util.spec_from_file_location(module_name, file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # workers import it by this name (or by its file)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    service = getattr(module, variable, None)
    if not isinstance(service, Service):
        msg = f"bento {bento.tag}: {module_name}.{variable} is {type(service).__name__}, not an @nbserve.service class; the archive's bento.yaml and src/ disagree"
        raise NbserveError(msg)
    return service


def load_bento_service(path: str | os.PathLike[str], *, home: Path | None = None) -> Service[Any]:
    """Open the bento at `path`, say how this environment differs, and return its service."""
    bento = open_bento(path, home=home)
    problems = check_environment(bento)
    if problems:
        install = bento.path / "env/python/install.sh"
        # One line for the person starting it: a warning would add a file, a line and a category.
        print(
            f"nbserve: bento {bento.tag} was built in another environment: {'; '.join(problems)}. It may still work; to match it, run `sh {install}` in this environment.",
            file=sys.stderr,
            flush=True,
        )
    models = bento.path / "models"
    if models.is_dir():
        os.environ["NBSERVE_MODEL_STORE"] = str(models)
    return _import_service(bento)
