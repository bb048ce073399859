"""The `.bento` file: a reproducible xz tar, its content-hash version, and a safe extraction.

Writing. Entries are sorted by path; every header has mtime 2020-01-01T00:00:00Z, uid/gid 0,
no owner names and mode 0644 (0755 for executables); there are no directory entries (a
directory's metadata would be one more thing to pin). xz (what BentoML's `.bento` uses) is
deterministic for a given input and preset. So the same files give the same bytes, whenever
and wherever they are written.

Versioning. A bento's version is a hash of its content (`content_version`): every file's path,
mode and sha256. Three files name the version (bento.yaml, the Dockerfile's tag, the manifest's
image): they are written with `PLACEHOLDER` in its place, hashed, and only then given the real
version, and a check swaps it back before hashing (a version cannot be part of its own input).
bento.yaml has no `creation_time`: a wall-clock time would make every build differ, and the
version already identifies the build. The version is 16 lowercase base32 characters, the
shape of BentoML's versions; the placeholder's `0` is not in that alphabet.

Extraction treats an archive as hostile and checks it before writing anything: a first
streaming pass (`safetar.scan`) checks every member (regular files and directories only,
relative paths without `..`, no duplicates, under the per-member and total size limits and a
sane compression ratio) and hashes every file while writing nothing; bento.yaml (kept in
memory) must name a valid name and version, its `service:` a module inside the archive's
`src/`, and the content hash must be the version bento.yaml claims. Only then does a second
pass write the files into a fresh staging directory with `O_EXCL | O_NOFOLLOW` (hashing again,
so an archive that changed in between is refused), and the staging directory is renamed to
`$NBSERVE_HOME/bentos/<name>/<version>/` in one step. Whatever was staged is removed on any
failure.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import tarfile
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import yaml

from nbserve._bento.integrity import file_sha256
from nbserve._bento.requirements import REPRODUCIBLE_EPOCH
from nbserve._bento.safetar import (
    Budget,
    Limit,
    Scan,
    extract_scanned,
    file_header,
    progress_bar,
    written_atomically,
)
from nbserve._bento.safetar import (
    scan as scan_archive,
)
from nbserve._bento.tag import PART
from nbserve.exceptions import InvalidArgument

__all__ = [
    "BENTO_YAML",
    "PLACEHOLDER",
    "SUFFIX",
    "VERSIONED_FILES",
    "ArchiveError",
    "Entry",
    "bentos_home",
    "content_version",
    "extract",
    "read_bento_yaml",
    "scan",
    "service_module_file",
    "with_version",
    "write_archive",
]

SUFFIX = ".bento"
BENTO_YAML = "bento.yaml"
MAX_MEMBER_SIZE = 16 << 30  # 16 GiB: a large model file, not a decompression bomb
MAX_TOTAL_SIZE = 32 << 30  # a 13B-parameter model in fp16 and its code; $NBSERVE_MAX_BENTO_SIZE
MAX_RATIO = 200.0  # weights barely compress; 1 GiB of zeros in xz is ~7000:1
_SERVICE_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SERVICE_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_XZ_PRESET: Literal[6] = 6  # xz's default; the level is part of what makes the bytes
# The files that name the bento's version; they are hashed with PLACEHOLDER in its place.
VERSIONED_FILES = frozenset({"bento.yaml", "env/docker/Dockerfile", "deploy/kubernetes.yaml"})
PLACEHOLDER = "version-00000000"


class ArchiveError(InvalidArgument):
    """An archive was refused; the message names the member and the reason."""


@dataclass(frozen=True)
class Entry:
    """One file of an archive: its bytes, or a file on disk to stream (model weights)."""

    data: bytes | Path
    executable: bool = False

    @property
    def size(self) -> int:
        return len(self.data) if isinstance(self.data, bytes) else self.data.stat().st_size

    def open(self) -> IO[bytes]:
        return io.BytesIO(self.data) if isinstance(self.data, bytes) else open(self.data, "rb")

    def sha256(self) -> str:
        # A file on disk goes through the model store's hash cache: building from a model
        # entry that `verify()` has just hashed does not read its weights again.
        if isinstance(self.data, bytes):
            return hashlib.sha256(self.data).hexdigest()
        return file_sha256(self.data)


def bentos_home() -> Path:
    """`$NBSERVE_HOME/bentos` (default `~/nbserve/bentos`), read now, not at import time."""
    return Path(os.environ.get("NBSERVE_HOME") or "~/nbserve").expanduser() / "bentos"


def content_version(files: Mapping[str, Entry], version: str = PLACEHOLDER) -> str:
    """The version of a bento with these files, whose versioned files name `version`."""
    digest = hashlib.sha256()
    for path in sorted(files):
        entry = files[path]
        if path in VERSIONED_FILES and isinstance(entry.data, bytes):
            data = entry.data.replace(version.encode(), PLACEHOLDER.encode())
            sha = hashlib.sha256(data).hexdigest()
        else:
            sha = entry.sha256()
        digest.update(f"{path}\0{int(entry.executable)}\0{sha}\n".encode())
    return base64.b32encode(digest.digest()[:10]).decode().lower()


def with_version(files: Mapping[str, Entry], version: str) -> dict[str, Entry]:
    """`files` with PLACEHOLDER replaced by `version` in the versioned files."""
    out = dict(files)
    for path in sorted(VERSIONED_FILES & out.keys()):
        entry = out[path]
        assert isinstance(entry.data, bytes), path
        data = entry.data.replace(PLACEHOLDER.encode(), version.encode())
        out[path] = Entry(data, entry.executable)
    return out


def write_archive(files: Mapping[str, Entry], dest: Path) -> Path:
    """Write `files` to `dest` as a reproducible xz tar; atomically (a reader never sees half)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        written_atomically(dest) as partial,
        tarfile.open(partial, "w:xz", format=tarfile.PAX_FORMAT, preset=_XZ_PRESET) as tar,
    ):
        for path in sorted(files):
            entry = files[path]
            info = file_header(
                path, entry.size, executable=entry.executable, mtime=REPRODUCIBLE_EPOCH
            )
            with entry.open() as f:
                tar.addfile(info, f)
    return dest


# ---- reading ---------------------------------------------------------------------------------
def _refuse(archive: Path, why: str) -> ArchiveError:
    return ArchiveError(
        f"refusing to extract {archive}: {why}. Only open .bento archives from sources you trust, written by `nbserve build` or `%serve export`."
    )


def read_bento_yaml(directory: Path) -> dict[str, Any]:
    return _parse_bento_yaml((directory / BENTO_YAML).read_bytes(), directory / BENTO_YAML)


def _parse_bento_yaml(text: bytes, where: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        msg = f"{where} is not valid YAML ({exc}); is this a bento?"
        raise ArchiveError(msg) from None
    if not isinstance(data, dict):
        msg = f"{where} is not a mapping; is this a bento?"
        raise ArchiveError(msg)
    return data


def service_module_file(info: Mapping[str, Any]) -> tuple[str, str, str]:
    """(module, variable, path inside the bento) of bento.yaml's `service: module:Variable`.

    The module must be a dotted name of identifiers, so its file is under `src/`: a leading
    dot, a slash or `..` would name code outside the archive. Raises `ArchiveError`.
    """
    service = str(info.get("service", "service:"))
    module, _, variable = service.partition(":")
    module = module or "service"
    if not _SERVICE_MODULE.fullmatch(module) or (
        variable and not _SERVICE_VARIABLE.fullmatch(variable)
    ):
        msg = f"bento.yaml's service {service!r} is not 'module:ClassName' with a module inside the bento's src/ (dotted identifiers, no leading dots or slashes)"
        raise ArchiveError(msg)
    return module, variable, "src/" + module.replace(".", "/") + ".py"


def scan(directory: Path) -> dict[str, Entry]:
    """The files of an extracted bento, as `write_archive` takes them."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            rel = path.relative_to(directory).as_posix()
            data = path.read_bytes() if rel in VERSIONED_FILES else path
            files[rel] = Entry(data, executable=bool(path.stat().st_mode & 0o111))
    return files


def extract(
    archive: str | os.PathLike[str],
    *,
    home: Path | None = None,
    max_member_size: int = MAX_MEMBER_SIZE,
    max_total_size: int | None = None,
    max_ratio: float = MAX_RATIO,
) -> Path:
    """Extract a `.bento` safely into `home/<name>/<version>/` (default `bentos_home()`).

    Nothing is written until the whole archive has been checked and its content hash matches
    its version. An archive already in the cache is not extracted again. Raises
    `ArchiveError` for an unsafe or tampered archive, leaving nothing behind. `max_total_size`
    defaults to `$NBSERVE_MAX_BENTO_SIZE`, else 32 GiB.
    """
    archive = Path(archive)
    if not archive.is_file():
        msg = f"no .bento archive at {archive}"
        raise FileNotFoundError(msg)
    home = bentos_home() if home is None else home
    if max_total_size is None:
        max_total_size = _env_size("NBSERVE_MAX_BENTO_SIZE", MAX_TOTAL_SIZE)
    budget = Budget(
        max_member_size=Limit(max_member_size, "max_member_size"),
        max_total_size=Limit(max_total_size, "max_total_size (or $NBSERVE_MAX_BENTO_SIZE)"),
        max_ratio=(max_ratio, "max_ratio"),
    )
    try:
        with progress_bar(archive, "checking") as progress:
            found = scan_archive(
                archive, _refuse, budget, keep=VERSIONED_FILES.__contains__, progress=progress
            )
        name, version = _check_scan(archive, found)
        final = home / name / version
        if (final / BENTO_YAML).is_file():
            return final  # already cached: same version, so the same verified content
        staging_root = home / ".tmp"
        staging_root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(staging_root).free
        if found.total_size > free:
            raise _refuse(
                archive,
                f"it unpacks to {found.total_size} bytes but only {free} are free in {home}",
            )
        staging = staging_root / f"extract-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            # Not fsync'd, unlike a model import: the archive, not this cache, is the copy to keep.
            with progress_bar(archive, "extracting") as progress:
                extract_scanned(
                    archive,
                    found,
                    staging,
                    _refuse,
                    keep_executable=True,
                    fsync=False,
                    progress=progress,
                )
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, final)
            except OSError:
                if not (final / BENTO_YAML).is_file():
                    raise
                # Extracted meanwhile by another process: same version, same verified content.
            return final
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, FileNotFoundError) and not archive.is_file():
            raise
        raise _refuse(archive, f"it is not a readable tar archive ({exc})") from exc
    except ArchiveError as exc:
        if str(exc).startswith("refusing"):
            raise
        raise _refuse(archive, str(exc)) from None


def _check_scan(archive: Path, found: Scan) -> tuple[str, str]:
    """(name, version) once bento.yaml and the content hash check out; raises `ArchiveError`."""
    text = found.kept.get(BENTO_YAML)
    if text is None:
        raise _refuse(archive, "it has no bento.yaml at its top level")
    info = _parse_bento_yaml(text, Path(BENTO_YAML))
    name, version = str(info.get("name", "")), str(info.get("version", ""))
    if not (PART.fullmatch(name) and PART.fullmatch(version)):
        raise _refuse(
            archive, f"bento.yaml names it {name!r}:{version!r}, not a valid name and version"
        )
    _, _, module_file = service_module_file(info)
    if module_file not in found.files:
        raise _refuse(
            archive,
            f"bento.yaml's service {info.get('service')!r} names {module_file}, which the archive does not hold",
        )
    entries: dict[str, Entry] = {
        key: _Hashed(
            found.kept.get(key, b""),
            executable=bool(member.mode & 0o111),
            digest=found.sha256[key],
        )
        for key, member in found.files.items()
    }
    if content_version(entries, version) != version:
        raise _refuse(
            archive,
            f"its content does not match its version {version} (changed after it was built?)",
        )
    return name, version


@dataclass(frozen=True)
class _Hashed(Entry):
    """A file scanned in an archive: its hash is known, its bytes are not kept (but the small
    versioned files' are, since the version check replaces the version inside them)."""

    digest: str = ""

    def sha256(self) -> str:
        return self.digest


def _env_size(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        msg = f"${name}={value!r} must be a number of bytes, e.g. {default}"
        raise ValueError(msg)
    return int(value)
