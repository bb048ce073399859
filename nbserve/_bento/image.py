"""Container images of bentos: the build context, the engine, the build and what it reused.

The build context is the bento's extracted directory written as one tar stream, the same bytes
for the same bento: members sorted, one timestamp (2020-01-01), owner 0, modes 0644/0755, no
host names or users. Docker reads it from stdin (`docker build -f env/docker/Dockerfile -`), so
nothing on the host (a stray file, an editor's backup, a .dockerignore) can slip in; Podman and
Buildah, which want a directory, get it extracted into a temporary one.

The engine is Docker, else Podman, else Buildah, the first found on PATH (or the one named).
The build runs with the engine's own output streamed line by line (its progress), and the steps
it answered from its cache are mapped back to the image's layers (requirements, models, code) so
that a code-only change is seen to reuse the first two.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from nbserve._bento import archive
from nbserve._bento.deploy import kubernetes_name
from nbserve.exceptions import NbserveError

__all__ = [
    "DOCKERFILE",
    "ENGINES",
    "BuildResult",
    "Engine",
    "EngineNotFound",
    "ImageBuildError",
    "build_command",
    "build_image",
    "context_tar",
    "default_tag",
    "find_engine",
    "write_context",
]

DOCKERFILE = "env/docker/Dockerfile"
ENGINES = ("docker", "podman", "buildah")
EPOCH = 1577836800  # 2020-01-01T00:00:00Z, the bento archive's own timestamp
# pip settings of this machine that a build needs to reach the same package index. They go in
# as `--build-arg NAME` (the engine reads the value from the environment, so a token in an index
# URL is never written into the command shown or the context).
PIP_BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")
# The Dockerfile's steps, by the layer they belong to (see deploy.dockerfile).
LAYERS = {
    "requirements": ("COPY env/python/", "RUN sh env/python/install.sh"),
    "models": ("COPY models/",),
    "code": ("COPY src/",),
}


class EngineNotFound(NbserveError):
    """No container engine on PATH; the message is one line naming what to install."""


class ImageBuildError(NbserveError):
    """The engine failed to build; the message quotes its last lines."""


@dataclass(frozen=True)
class Engine:
    name: str  # docker | podman | buildah
    path: str


def find_engine(name: str | None = None) -> Engine:
    """The engine named, else the first of docker, podman, buildah found on PATH."""
    for candidate in (name,) if name else ENGINES:
        found = shutil.which(candidate)
        if found:
            return Engine(candidate, found)
    wanted = name or "docker, podman or buildah"
    msg = f"no container engine found ({wanted} is not on PATH): install Docker (`apt-get install docker.io`, or https://docs.docker.com/engine/install/) or Podman (`apt-get install podman`), or run with --print to write the build context and command without building"
    raise EngineNotFound(msg)


def default_tag(info: dict[str, object]) -> str:
    """`<name>:<version>`, the name as a DNS label (what the Kubernetes manifest refers to)."""
    return f"{kubernetes_name(str(info['name']))}:{info['version']}"


# --- the build context ------------------------------------------------------------------------
def _info(name: str, mode: int, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.mode, member.size, member.mtime = kind, mode, size, EPOCH
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def write_context(bento_dir: Path, out: IO[bytes]) -> None:
    """Stream the build context of the bento at `bento_dir` (an uncompressed tar) into `out`."""
    files = archive.scan(bento_dir)
    dirs = sorted({p for name in files for p in _parents(name)})
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for directory in dirs:  # explicit entries: COPY of a directory keeps 0755, not 0700
            tar.addfile(_info(directory, 0o755, kind=tarfile.DIRTYPE))
        for name in sorted(files):
            entry = files[name]
            with entry.open() as stream:
                tar.addfile(_info(name, 0o755 if entry.executable else 0o644, entry.size), stream)


def context_tar(bento_dir: Path) -> bytes:
    """The build context as bytes (small bentos, tests); the same bytes for the same bento."""
    buffer = io.BytesIO()
    write_context(bento_dir, buffer)
    return buffer.getvalue()


def _parents(name: str) -> Iterator[str]:
    parts = name.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


# --- the build ----------------------------------------------------------------------------------
def build_args(base_image: str | None, environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    args = [f"BASE_IMAGE={base_image}"] if base_image else []
    args += [name for name in PIP_BUILD_ARGS if env.get(name)]
    return [part for arg in args for part in ("--build-arg", arg)]


def build_command(
    engine: Engine | str, tag: str, context: str, base_image: str | None = None
) -> list[str]:
    """The engine's build command; `context` is `-` (the tar on stdin, Docker) or a directory."""
    name = engine if isinstance(engine, str) else engine.name
    program = name if isinstance(engine, str) else engine.path
    verb = ["bud"] if name == "buildah" else ["build"]
    return [program, *verb, "-f", DOCKERFILE, "-t", tag, *build_args(base_image), context]


@dataclass
class BuildResult:
    tag: str
    command: list[str]
    output: list[str] = field(default_factory=list)
    cached: dict[str, bool] = field(default_factory=dict)  # layer → answered from the cache

    @property
    def summary(self) -> str:
        reused = [layer for layer, hit in self.cached.items() if hit]
        rebuilt = [layer for layer, hit in self.cached.items() if not hit]
        return (
            f"layers reused: {', '.join(reused) or 'none'}; built: {', '.join(rebuilt) or 'none'}"
        )


_STEP = re.compile(r"^(?:Step \d+/\d+ : |STEP \d+/\d+: |#\d+ \[[^\]]*\] )(.*)$")
_CACHED = re.compile(r"^(?: ---> Using cache|--> Using cache|#\d+ CACHED)")


def cached_layers(output: Sequence[str]) -> dict[str, bool]:
    """Which layers the engine answered from its cache, read from its build output.

    Docker's classic builder writes `Step 5/20 : COPY ...` then ` ---> Using cache`, Podman and
    Buildah `STEP 5/20: COPY ...` then `--> Using cache ...`, BuildKit `#9 [5/20] COPY ...` then
    `#9 CACHED`. A layer is reused when every one of its steps was.
    """
    steps: dict[str, bool] = {}
    current: str | None = None
    buildkit_ids: dict[str, str] = {}
    for line in output:
        step = _STEP.match(line)
        if step:
            current = step.group(1).strip()
            steps.setdefault(current, False)
            if line.startswith("#"):
                buildkit_ids[line.split(" ", 1)[0]] = current
            continue
        if _CACHED.match(line):
            key = (
                buildkit_ids.get(line.split(" ", 1)[0], current)
                if line.startswith("#")
                else current
            )
            if key is not None:
                steps[key] = True
    result = {}
    for layer, prefixes in LAYERS.items():
        hits = [hit for text, hit in steps.items() if text.startswith(prefixes)]
        if hits:
            result[layer] = all(hits)
    return result


def _feed(bento_dir: Path, stdin: IO[bytes]) -> None:
    try:
        with stdin:
            write_context(bento_dir, stdin)
    except BrokenPipeError:  # the engine quit early; its output says why
        pass


def build_image(
    bento_dir: Path,
    tag: str,
    *,
    engine: Engine,
    base_image: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> BuildResult:
    """Build the bento's image with `engine`, calling `progress` with each line of its output."""
    env = dict(os.environ)
    if engine.name == "docker":
        # The classic builder: BuildKit needs the buildx plugin, often absent from distro
        # packages, and would fetch its Dockerfile frontend from a registry.
        env.setdefault("DOCKER_BUILDKIT", "0")
    with _maybe_directory(engine, bento_dir) as context:
        command = build_command(engine, tag, context, base_image)
        result = BuildResult(tag, command)
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if context == "-" else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        assert process.stdout is not None
        feeder = None
        if process.stdin is not None:  # a thread: the engine's output is read meanwhile
            feeder = threading.Thread(target=_feed, args=(bento_dir, process.stdin), daemon=True)
            feeder.start()
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            result.output.append(line)
            progress(line)
        code = process.wait()
        if feeder is not None:
            feeder.join()
    if code != 0:
        tail = " | ".join(line for line in result.output[-5:] if line.strip())
        msg = f"{engine.name} build of {tag} failed (exit status {code}): {tail}"
        raise ImageBuildError(msg)
    result.cached = cached_layers(result.output)
    return result


@contextmanager
def _maybe_directory(engine: Engine, bento_dir: Path) -> Iterator[str]:
    """`-` for Docker (the context on stdin); for the others the same tar, extracted."""
    if engine.name == "docker":
        yield "-"
        return
    with tempfile.TemporaryDirectory(prefix="nbserve-context-") as tmp:
        tar_path = Path(tmp) / "context.tar"
        with tar_path.open("wb") as out:
            write_context(bento_dir, out)
        directory = Path(tmp) / "context"
        with tarfile.open(tar_path) as tar:
            tar.extractall(directory, filter="data")
        tar_path.unlink()
        yield str(directory)
