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

Extraction treats an archive as hostile: every member is checked before a byte is written
(`safetar.checked_members`: regular files and directories only, relative paths without `..`,
no duplicates, under the per-member and total size limits), files are written into a fresh
staging directory with `O_EXCL | O_NOFOLLOW`, the content hash is checked against the version
bento.yaml claims (so a cache entry always holds what its version says), and the staging
directory is renamed to `$NBSERVE_HOME/bentos/<name>/<version>/` in one step. tarfile reads
zstd only from Python 3.14, so a zstd archive is first decompressed into a temporary tar
beside the staging directory, stopping (and refusing) past the total size limit; xz and gzip
archives (older bentos, or a bento repacked with `tar`) are read as they are.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import uuid
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
    Limit,
    checked_members,
    extract_files,
    file_header,
    written_atomically,
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
    "with_version",
    "write_archive",
]

SUFFIX = ".bento"
BENTO_YAML = "bento.yaml"
MAX_MEMBER_SIZE = 16 << 30  # 16 GiB: a large model file, not a decompression bomb
MAX_TOTAL_SIZE = 64 << 30
# The levels are part of what makes the bytes: changing one changes every archive.
LEVEL = 3  # zstd's default: fast, and shrinks code, text and pickles well
STORED_LEVEL = -5  # zstd's fast mode: near a plain copy, for data that does not compress
_SAMPLE = 1 << 20  # bytes of a large file compressed to decide its level
_PAYS = 0.90  # compressed/original ratio below which compressing a large file pays
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_HEADER_ROOM = 256 << 20  # tar headers and padding on top of the files' bytes, when unpacking
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
def open_tar(
    archive: Path,
    *,
    scratch: Path | None = None,
    max_total_size: int = MAX_TOTAL_SIZE,
    stream: bool = False,
) -> Iterator[tarfile.TarFile]:
    """The `.bento` at `archive` opened for reading, whichever compression it has.

    `stream=True` gives tarfile's stream mode (members in order, each readable only while it
    is the current one) and writes nothing: enough to read bento.yaml. Otherwise a zstd
    archive is decompressed into a temporary tar in `scratch` (default: beside the archive
    cache, `bentos_home()/.tmp`) that is removed on leaving; it raises `ArchiveError` past
    `max_total_size` plus room for the headers, before filling a disk.
    """
    with open(archive, "rb") as f:
        magic = f.read(4)
    if magic != _ZSTD_MAGIC:
        with tarfile.open(archive, "r|*" if stream else "r:*") as tar:
            yield tar
        return
    if stream:
        with (
            open(archive, "rb") as f,
            zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as reader,
            tarfile.open(fileobj=reader, mode="r|") as tar,
        ):
            yield tar
        return
    scratch = bentos_home() / ".tmp" if scratch is None else scratch
    scratch.mkdir(parents=True, exist_ok=True)
    plain = scratch / f"unpack-{uuid.uuid4().hex}.tar"
    limit = max_total_size + _HEADER_ROOM
    try:
        with open(archive, "rb") as f, open(plain, "xb") as out:
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            written = 0
            while chunk := reader.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise _refuse(
                        archive,
                        f"it decompresses to more than {limit} bytes (max_total_size={max_total_size}, plus {_HEADER_ROOM} for headers)",
                    )
                out.write(chunk)
        with tarfile.open(plain, "r:") as tar:
            yield tar
    except zstandard.ZstdError as exc:
        raise _refuse(archive, f"its zstd data is corrupt ({exc})") from exc
    finally:
        plain.unlink(missing_ok=True)


# ---- reading ---------------------------------------------------------------------------------
def _refuse(archive: Path, why: str) -> ArchiveError:
    return ArchiveError(
        f"refusing to extract {archive}: {why}. Only open .bento archives from sources you trust, written by `nbserve build` or `%serve export`."
    )


def read_bento_yaml(directory: Path) -> dict[str, Any]:
    data = yaml.safe_load((directory / BENTO_YAML).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        msg = f"{directory / BENTO_YAML} is not a mapping; is this a bento?"
        raise ArchiveError(msg)
    return data


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
    max_total_size: int = MAX_TOTAL_SIZE,
) -> Path:
    """Extract a `.bento` safely into `home/<name>/<version>/` (default `bentos_home()`).

    An archive already in the cache is not extracted again. Raises `ArchiveError` for an
    unsafe or tampered archive; nothing is written outside a staging directory under `home`.
    """
    archive = Path(archive)
    if not archive.is_file():
        msg = f"no .bento archive at {archive}"
        raise FileNotFoundError(msg)
    home = bentos_home() if home is None else home
    staging_root = home / ".tmp"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = staging_root / f"extract-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        try:
            with open_tar(archive, scratch=staging_root, max_total_size=max_total_size) as tar:
                files = checked_members(
                    tar,
                    archive,
                    _refuse,
                    max_member_size=Limit(max_member_size, "max_member_size"),
                    max_total_size=Limit(max_total_size, "max_total_size"),
                )
                # Not fsync'd, unlike a model import: the archive, not this cache, is the copy to keep.
                extract_files(
                    tar, files, staging, archive, _refuse, keep_executable=True, fsync=False
                )
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, ArchiveError):
                raise
            raise _refuse(archive, f"it is not a readable tar archive ({exc})") from exc
        if not (staging / BENTO_YAML).is_file():
            raise _refuse(archive, "it has no bento.yaml at its top level")
        info = read_bento_yaml(staging)
        name, version = str(info.get("name", "")), str(info.get("version", ""))
        if not (PART.fullmatch(name) and PART.fullmatch(version)):
            raise _refuse(
                archive, f"bento.yaml names it {name!r}:{version!r}, not a valid name and version"
            )
        if content_version(scan(staging), version) != version:
            raise _refuse(
                archive,
                f"its content does not match its version {version} (changed after it was built?)",
            )
        final = home / name / version
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / BENTO_YAML).is_file():
                raise
            # Already cached: same version, same verified content. Keep the cached copy.
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
