"""Pinned requirements: the distributions the captured code imports, at the versions installed here.

The kernel that ran the service is the only environment known to work, so each top-level module
`service.py` imports is mapped to its distribution (`importlib.metadata.packages_distributions`)
and pinned to the installed version (`scikit-learn==1.5.2`). Standard-library modules need
nothing; nbserve itself is always pinned. What the user states wins over what is inferred:
`--requirements FILE`, `@service(python_packages=[...])` and the packages of
`@service(image=...)` replace the inferred pin of the same distribution, and add the others.

This is a pin of what the code imports, not a lock of the whole tree: pip resolves the pinned
distributions' own dependencies where the archive is installed, as `pip install -r` does.

When nbserve was not installed from a package index (an editable install, a local path, or
`PYTHONPATH`), no index can give that code back, so the archive carries nbserve's wheel
(BentoML bundles itself the same way). `nbserve_wheel()` builds it with `SOURCE_DATE_EPOCH`
fixed, which makes the wheel, and so the archive, byte-reproducible; it is cached by a hash of
the source, so only the first export after a change pays for the build (about 3 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nbserve._bento.progress import progress_bar
from nbserve._version import __version__
from nbserve.exceptions import NbserveError

__all__ = [
    "DISTRIBUTION",
    "REPRODUCIBLE_EPOCH",
    "Requirements",
    "RequirementsError",
    "canonical_name",
    "image_packages",
    "nbserve_wheel",
    "resolve_requirements",
]

DISTRIBUTION = "jupyter-nbserve"
# 2020-01-01T00:00:00Z: the timestamp of every file in an archive or a bundled wheel.
REPRODUCIBLE_EPOCH = 1577836800
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PASSED_OPTIONS = (
    "--index-url",
    "--extra-index-url",
    "--find-links",
    "--pre",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
    "--trusted-host",
)


class RequirementsError(NbserveError):
    """A requirement the archive cannot carry (a nested `-r`, an editable or local path)."""


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: `Scikit_Learn` → `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirements:
    """What `env/python/` records."""

    lines: tuple[str, ...]
    """requirements.txt: pip options first (as given), then one requirement per distribution, sorted."""
    python_version: str
    local_modules: tuple[Path, ...]
    """Modules the code imports from files beside it (no distribution): copied into `src/`."""
    missing: tuple[str, ...]
    """Modules imported but not installed here (an optional import): nothing to pin."""

    @property
    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


# packages_distributions() reads every installed distribution's RECORD (about a second with
# torch and transformers installed); remembered while no directory on sys.path changes (an
# install or uninstall adds or removes a *.dist-info directory, which changes its mtime).
_DISTRIBUTIONS: dict[tuple[tuple[str, int], ...], Mapping[str, Sequence[str]]] = {}


def _distributions() -> Mapping[str, Sequence[str]]:
    key = []
    for entry in sys.path:
        try:
            key.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    stamp = tuple(key)
    if stamp not in _DISTRIBUTIONS:
        _DISTRIBUTIONS.clear()
        _DISTRIBUTIONS[stamp] = metadata.packages_distributions()
    return _DISTRIBUTIONS[stamp]


def _stdlib() -> frozenset[str]:
    return frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)


def _installed(module: str, distributions: Mapping[str, Sequence[str]]) -> list[str]:
    return sorted({canonical_name(d) for d in distributions.get(module, ())})


def _local_module(module: str) -> Path | None:
    """The file or package directory of a module imported from a plain path, if it is one."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def _user_lines(lines: Iterable[str], where: str) -> list[str]:
    out = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r", "-c", "--requirement", "--constraint")):
            msg = f"{where}: {line!r} refers to another file, which the archive would not carry; paste its lines into the requirements instead"
            raise RequirementsError(msg)
        if line.startswith(("-e", "--editable")) or line.startswith((".", "/", "file:")):
            msg = f"{where}: {line!r} is a local path, which does not exist where the archive is installed; build a wheel and publish it to an index, or pin a released version"
            raise RequirementsError(msg)
        if line.startswith("-") and not line.startswith(_PASSED_OPTIONS):
            msg = f"{where}: pip option {line!r} is not carried into the archive; supported: {', '.join(_PASSED_OPTIONS)}"
            raise RequirementsError(msg)
        out.append(line)
    return out


def image_packages(image: Any) -> list[str]:
    """The Python packages an `@service(image=...)` declares.

    Accepts a mapping with `python_packages`, BentoML's `Image` (its `python_requirements`
    text), or any object with a `python_packages` list.
    """
    if image is None or isinstance(image, str):
        return []
    if isinstance(image, Mapping):
        packages = image.get("python_packages", ())
    else:
        text = getattr(image, "python_requirements", None)
        packages = (
            text.splitlines() if isinstance(text, str) else getattr(image, "python_packages", ())
        )
    if callable(packages) or isinstance(packages, str):
        return []
    return [str(p) for p in packages]


def resolve_requirements(
    modules: Iterable[str],
    *,
    packages: Sequence[str] = (),
    requirements_file: str | os.PathLike[str] | None = None,
    image: Any = None,
) -> Requirements:
    """Pin the distributions behind `modules`, then apply the user's requirements on top."""
    distributions = _distributions()
    stdlib = _stdlib()
    pins: dict[str, str] = {DISTRIBUTION: f"{DISTRIBUTION}=={__version__}"}
    local: list[Path] = []
    missing: list[str] = []
    for module in sorted(set(modules)):
        if module in stdlib or module == "nbserve":
            continue
        dists = _installed(module, distributions)
        for dist in dists:
            pins.setdefault(dist, f"{dist}=={metadata.version(dist)}")
        if not dists:
            path = _local_module(module)
            if path is None:
                missing.append(module)
            elif "site-packages" not in path.parts and "dist-packages" not in path.parts:
                local.append(path)

    options: list[str] = []
    # Later sources win: the image, then python_packages, then --requirements (the most explicit).
    given = [("image", image_packages(image)), ("python_packages", list(packages))]
    if requirements_file is not None:
        text = Path(requirements_file).read_text(encoding="utf-8")
        given.append((str(requirements_file), text.splitlines()))
    for where, lines in given:
        for line in _user_lines(lines, where):
            if line.startswith("-"):
                options.append(line)
                continue
            match = _NAME.match(line)
            if match is None:
                msg = f"{where}: cannot read a distribution name from {line!r}; write e.g. 'scikit-learn==1.5.2'"
                raise RequirementsError(msg)
            pins[canonical_name(match.group(1))] = line
    return Requirements(
        lines=(*dict.fromkeys(options), *(pins[name] for name in sorted(pins))),
        python_version=platform.python_version(),
        local_modules=tuple(local),
        missing=tuple(missing),
    )


# ---- nbserve's own wheel ------------------------------------------------------------------------
def local_source() -> Path | None:
    """nbserve's source tree when it was not installed from an index, else None."""
    # The tree this nbserve runs from, when it is one (an editable install, or a checkout put
    # first on PYTHONPATH over another install): the code that runs is the code to bundle.
    running = Path(__file__).resolve().parents[2]
    if (running / "pyproject.toml").is_file() and (running / "nbserve" / "__init__.py").is_file():
        return running
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        direct = dist.read_text("direct_url.json")
        if not direct:
            return None  # from an index: requirements.txt's pin reinstalls it
        url = json.loads(direct).get("url", "")
        if url.startswith("file://"):
            path = Path(url.removeprefix("file://"))
            if (path / "pyproject.toml").is_file():
                return path
    # A local wheel or a VCS URL: its source is not at hand.
    msg = f"nbserve {__version__} was not installed from a package index and its source tree is not at {running}; install it with pip from an index or from its source directory, then export again"
    raise RequirementsError(msg)


def _source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    files = [root / "pyproject.toml", root / "README.md"]
    files += [
        p for p in (root / "nbserve").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ]
    for path in sorted(f for f in files if f.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def nbserve_wheel(cache: Path, *, progress: bool | None = False) -> Path | None:
    """nbserve's wheel to bundle, built reproducibly and cached; None if an index has it.

    `progress`: show the build (several seconds, once per source change) as a ticking bar.
    """
    root = local_source()
    if root is None:
        return None
    target = cache / _source_hash(root)
    built = sorted(target.glob("*.whl"))
    if built:
        return built[0]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(REPRODUCIBLE_EPOCH), "PIP_NO_INPUT": "1"}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        # `pip wheel` uses the project's own build backend (hatchling) in an isolated env.
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            tmp,
            str(root),
        ]
        with (
            progress_bar(
                None, "building nbserve's wheel (once per source change)", progress
            ) as bar,
            tempfile.TemporaryFile("w+") as log,
        ):
            build = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
            while True:
                try:
                    returncode = build.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    bar.refresh()  # the elapsed time ticks: the export is not stuck
            log.seek(0)
            output = log.read()
        wheels = sorted(Path(tmp).glob("*.whl"))
        if returncode != 0 or not wheels:
            msg = f"could not build nbserve's wheel from {root} (`{' '.join(cmd)}` exited {returncode}): {output.strip()[-2000:]}"
            raise RequirementsError(msg)
        staged = Path(tmp) / "done"
        staged.mkdir()
        shutil.move(str(wheels[0]), staged / wheels[0].name)
        try:
            os.rename(staged, target)
        except OSError:  # another export built the same source first: same bytes, keep theirs
            if not any(target.glob("*.whl")):
                raise
    return sorted(target.glob("*.whl"))[0]
