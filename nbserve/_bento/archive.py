"""The `.bento` file: a reproducible zstd tar, its content-hash version, and a safe extraction.

Writing. Entries are sorted by path; every header has mtime 2020-01-01T00:00:00Z, uid/gid 0,
no owner names and mode 0644 (0755 for executables); there are no directory entries (a
directory's metadata would be one more thing to pin). The tar is compressed with zstd, one
frame per member (zstd readers decode concatenated frames as one stream), at a level chosen
by the member's content: `LEVEL` for code, text and pickles; `STORED_LEVEL` (zstd's fastest,
close to a plain copy) for a large file whose sample does not shrink by `_PAYS` (float
weights, which xz shrank by 10 % at 60-120 s for 88 MB; this takes well under a second). The
choice depends only on the bytes and zstd is deterministic for a given input and level, so
the same files give the same archive, whenever and wherever they are written.

Versioning. A bento's version is a hash of its content (`content_version`): every file's path,
mode and sha256. Three files name the version (bento.yaml, the Dockerfile's tag, the manifest's
image): they are written with `PLACEHOLDER` in its place, hashed, and only then given the real
version, and a check swaps it back before hashing (a version cannot be part of its own input).
bento.yaml has no `creation_time`: a wall-clock time would make every build differ, and the
version already identifies the build. The version is 16 lowercase base32 characters, the
shape of BentoML's versions; the placeholder's `0` is not in that alphabet. A model file's
sha256 is the one its store entry records (verified just before), so it is not read twice.

Extraction treats an archive as hostile and checks it before writing anything: a first
streaming pass (`safetar.scan`) checks every member (regular files and directories only,
relative paths without `..`, no duplicates, under the per-member and total size limits and a
sane compression ratio) and hashes every file while writing nothing; bento.yaml (kept in
memory) must name a valid name and version, its `service:` a module inside the archive's
`src/`, and the content hash must be the version bento.yaml claims. Only then does a second
pass write the files into a fresh staging directory with `O_EXCL | O_NOFOLLOW` (hashing again,
so an archive that changed in between is refused), and the staging directory is renamed to
`$NBSERVE_HOME/bentos/<name>/<version>/` in one step. Whatever was staged is removed on any
failure. zstd archives (one frame per member) are
read as a stream like xz and gzip ones.
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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
import zstandard

from nbserve._bento.integrity import file_sha256
from nbserve._bento.progress import Bar, progress_bar
from nbserve._bento.requirements import REPRODUCIBLE_EPOCH
from nbserve._bento.safetar import (
    Budget,
    Limit,
    Scan,
    extract_scanned,
    file_header,
    written_atomically,
)
from nbserve._bento.safetar import (
    progress_bar as archive_progress,
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
    "open_tar",
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
# The levels are part of what makes the bytes: changing one changes every archive.
LEVEL = 3  # zstd's default: fast, and shrinks code, text and pickles well
STORED_LEVEL = -5  # zstd's fast mode: near a plain copy, for data that does not compress
_SAMPLE = 1 << 20  # bytes of a large file compressed to decide its level
_PAYS = 0.90  # compressed/original ratio below which compressing a large file pays
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
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
    known_sha256: str | None = None
    """The file's sha256 when already known and checked (a model file's, from its model.yaml)."""

    @property
    def size(self) -> int:
        return len(self.data) if isinstance(self.data, bytes) else self.data.stat().st_size

    def open(self) -> IO[bytes]:
        return io.BytesIO(self.data) if isinstance(self.data, bytes) else open(self.data, "rb")

    def sha256(self) -> str:
        # A file on disk goes through the model store's hash cache: building from a model
        # entry that `verify()` has just hashed does not read its weights again.
        if self.known_sha256 is not None:
            return self.known_sha256
        if isinstance(self.data, bytes):
            return hashlib.sha256(self.data).hexdigest()
        return file_sha256(self.data)


def bentos_home() -> Path:
    """`$NBSERVE_HOME/bentos` (default `~/nbserve/bentos`), read now, not at import time."""
    return Path(os.environ.get("NBSERVE_HOME") or "~/nbserve").expanduser() / "bentos"


def content_version(
    files: Mapping[str, Entry], version: str = PLACEHOLDER, *, progress: bool | None = False
) -> str:
    """The version of a bento with these files, whose versioned files name `version`."""
    digest = hashlib.sha256()
    total = sum(e.size for e in files.values() if not isinstance(e.data, bytes))
    with progress_bar(total, "hashing", progress) as bar:
        for path in sorted(files):
            entry = files[path]
            if path in VERSIONED_FILES and isinstance(entry.data, bytes):
                data = entry.data.replace(version.encode(), PLACEHOLDER.encode())
                sha = hashlib.sha256(data).hexdigest()
            else:
                sha = entry.sha256()
                if not isinstance(entry.data, bytes):
                    bar.update(entry.size)
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


def level_for(entry: Entry) -> int:
    """The zstd level of a member: `STORED_LEVEL` for a large file that does not compress."""
    if isinstance(entry.data, bytes) or entry.size < 4 * _SAMPLE:
        return LEVEL
    with entry.open() as f:  # from the middle: a file's header (safetensors' JSON) compresses
        f.seek(entry.size // 2)
        sample = f.read(_SAMPLE)
    ratio = len(zstandard.ZstdCompressor(level=LEVEL).compress(sample)) / max(len(sample), 1)
    return LEVEL if ratio < _PAYS else STORED_LEVEL


class _Frames(io.RawIOBase):
    """A write-only file for tarfile that compresses each member into its own zstd frame."""

    def __init__(self, out: IO[bytes], bar: Bar) -> None:
        self._out = out
        self._bar = bar
        self._frame: Any = None  # zstandard's compressobj of the current frame
        self._written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written  # tarfile counts in uncompressed bytes

    def start(self, level: int) -> None:
        self.finish()
        self._frame = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()

    def finish(self) -> None:
        if self._frame is not None:
            self._out.write(self._frame.flush())
            self._frame = None

    def write(self, data: Any) -> int:
        if self._frame is None:
            self.start(LEVEL)
        chunk = bytes(data)
        self._out.write(self._frame.compress(chunk))
        self._written += len(chunk)
        self._bar.update(len(chunk))
        return len(chunk)


def write_archive(files: Mapping[str, Entry], dest: Path, *, progress: bool | None = False) -> Path:
    """Write `files` to `dest` as a reproducible zstd tar; atomically (a reader never sees half)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    total = sum(e.size for e in files.values())
    with (
        progress_bar(total, f"writing {dest.name}", progress) as bar,
        written_atomically(dest) as partial,
        open(partial, "wb") as out,
    ):
        frames = _Frames(out, bar)
        with tarfile.open(fileobj=frames, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(files):
                entry = files[path]
                info = file_header(
                    path, entry.size, executable=entry.executable, mtime=REPRODUCIBLE_EPOCH
                )
                frames.start(level_for(entry))
                with entry.open() as f:
                    tar.addfile(info, f)
            frames.start(LEVEL)  # the end-of-archive blocks tarfile writes on closing
        frames.finish()
    return dest


@contextmanager
def open_tar(archive: Path) -> Iterator[tarfile.TarFile]:
    """The `.bento` at `archive` as a forward-only tar stream, whichever compression it has
    (members in order, each readable only while current); writes nothing. Enough to read
    bento.yaml; extraction goes through `extract`, which checks everything first."""
    with open(archive, "rb") as f:
        magic = f.read(4)
    if magic != _ZSTD_MAGIC:
        with tarfile.open(archive, "r|*") as tar:
            yield tar
        return
    with (
        open(archive, "rb") as f,
        zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as reader,
        tarfile.open(fileobj=reader, mode="r|") as tar,
    ):
        yield tar


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
        with archive_progress(archive, "checking") as progress:
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
            with archive_progress(archive, "extracting") as progress:
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
    except (tarfile.TarError, EOFError, zlib.error, zstandard.ZstdError, OSError) as exc:
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
