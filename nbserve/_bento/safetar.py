"""Tar files nbserve writes and reads: reproducible headers, atomic writes, hostile extraction.

`.bento` archives (`archive.py`) and `.nbmodel` files (`model_archive.py`) are both tars:
this module is what they share, so the two cannot drift apart in what they refuse.

Writing. `file_header` gives a header that depends only on the path, size and executable bit:
the caller's fixed mtime, uid/gid 0, no owner names, mode 0644 (0755 for executables).
`written_atomically` gives a partial path beside the target and renames it over the target only
when the block ends cleanly, so a reader never sees half an archive.

Reading treats every archive as hostile (tarfile's own `extractall` trusts member names:
CVE-2007-4559) and reads it twice, as a stream (gzip, xz, bzip2, zstd or plain):

1. `scan` writes nothing. It checks every member header as it comes (a regular file or a
   directory: links of any kind, devices and FIFOs are refused; a relative path with no drive,
   no backslash and no `..`; no duplicates; no file that another member is inside; at most
   `max_members` members; within the `Budget`: per-file and total sizes, and a compression
   ratio that a real model does not reach but a bomb does), lets the caller refuse a member
   its metadata does not declare, and hashes every member's bytes. The caller then checks
   the hashes against the metadata or the version, still having written nothing.
2. `extract_scanned` writes the scanned files into a fresh directory with
   `O_EXCL | O_NOFOLLOW`, copying at most each header's size and hashing again as it writes:
   an archive that changed between the two passes is refused.

The caller says how a refusal is worded: `refuse(archive, reason)` builds the exception, so a
`.bento` gives `ArchiveError("refusing to extract …")` and a `.nbmodel` gives
`InvalidArgument("Refusing to import …")` with the same reasons.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, NamedTuple

__all__ = [
    "MAX_MEMBERS",
    "Budget",
    "Limit",
    "Progress",
    "Refuse",
    "Scan",
    "extract_scanned",
    "file_header",
    "progress_bar",
    "scan",
    "written_atomically",
]

MAX_MEMBERS = 100_000
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")  # "C:..." is absolute on Windows
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
RATIO_FLOOR = 64 << 20
"""Below this many declared bytes the compression ratio is not checked (text compresses well)."""
MAX_KEPT = 16 << 20
"""Largest member `scan` keeps in memory for its caller (metadata files)."""

Refuse = Callable[[Path, str], Exception]
"""Builds the exception to raise from the archive and a reason ("member 'x' is a link ...")."""


class Limit(NamedTuple):
    """A size limit, and the option that sets it (named in a refusal, so it says what to raise)."""

    bytes: int
    option: str


@dataclass(frozen=True)
class Budget:
    """What an archive may unpack to; each limit names the option that raises it."""

    max_member_size: Limit | None = None
    max_total_size: Limit | None = None
    max_ratio: tuple[float, str] | None = None
    """(ratio, option): declared bytes over the archive's own size, checked past RATIO_FLOOR."""
    max_members: int = MAX_MEMBERS


# ---- writing -----------------------------------------------------------------------------------
def file_header(name: str, size: int, *, executable: bool, mtime: int) -> tarfile.TarInfo:
    """A regular file's header that depends on nothing but these arguments."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime = size, mtime
    info.mode = 0o755 if executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@contextmanager
def written_atomically(dest: Path) -> Iterator[Path]:
    """A path beside `dest` to write; renamed over `dest` if the block ends cleanly, else removed."""
    # Beside, not in a temporary directory: a rename is atomic only within one file system.
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
    try:
        yield partial
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# ---- reading -----------------------------------------------------------------------------------
def _checked_name(member: tarfile.TarInfo, archive: Path, refuse: Refuse) -> PurePosixPath:
    name = member.name
    rel = PurePosixPath(name)
    if rel.is_absolute() or _DRIVE.match(name):
        raise refuse(archive, f"member {name!r} has an absolute path")
    if "\\" in name:
        # A separator on Windows: "..\\x" would climb out there, whatever it means here.
        raise refuse(
            archive, f"member {name!r} uses backslashes; entries use '/' between directories"
        )
    if ".." in rel.parts:
        raise refuse(
            archive, f"member {name!r} climbs out of the directory it is extracted into with '..'"
        )
    if member.issym() or member.islnk():
        raise refuse(
            archive,
            f"member {name!r} is a link (to {member.linkname!r}); only regular files and directories are extracted",
        )
    if not (member.isreg() or member.isdir()):
        raise refuse(archive, f"member {name!r} is a device, FIFO or other special file")
    return rel


Progress = Callable[[int], None]
"""Told how many more bytes of the archive file were read (for a progress bar)."""


class _Counted:
    """A file whose reads are reported to `progress`."""

    def __init__(self, raw: IO[bytes], progress: Progress) -> None:
        self.raw, self.progress = raw, progress

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.progress(len(data))
        return data


@contextmanager
def _stream(archive: Path, progress: Progress | None = None) -> Iterator[tarfile.TarFile]:
    """The archive as a forward-only tar stream, whatever compresses it (zstd included)."""
    with open(archive, "rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        source: Any = raw if progress is None else _Counted(raw, progress)
        if magic == _ZSTD_MAGIC:
            import zstandard  # only for zstd archives

            with (
                zstandard.ZstdDecompressor().stream_reader(
                    source, read_across_frames=True
                ) as reader,
                tarfile.open(fileobj=reader, mode="r|") as tar,
            ):
                yield tar
            return
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            yield tar


def _copy(data: IO[bytes], size: int, out: IO[bytes] | None) -> str:
    """sha256 of the member's `size` bytes, writing them to `out` when given."""
    digest = hashlib.sha256()
    remaining = size  # never more than the header promised and the limits allowed
    while remaining > 0 and (chunk := data.read(min(_CHUNK, remaining))):
        digest.update(chunk)
        if out is not None:
            out.write(chunk)
        remaining -= len(chunk)
    if remaining:
        msg = f"unexpected end of data ({remaining} bytes short)"
        raise tarfile.ReadError(msg)
    return digest.hexdigest()


@dataclass
class Scan:
    """What `scan` found: the regular files by normalised path, their sha256, and the bytes
    of the members the caller asked to keep."""

    files: dict[str, tarfile.TarInfo] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    kept: dict[str, bytes] = field(default_factory=dict)

    @property
    def total_size(self) -> int:
        return sum(m.size for m in self.files.values())


class _Checker:
    """The header checks, one member at a time, with the state they need."""

    def __init__(
        self,
        archive: Path,
        refuse: Refuse,
        budget: Budget,
        on_member: Callable[[str, tarfile.TarInfo], None] | None,
    ) -> None:
        self.archive, self.refuse, self.budget = archive, refuse, budget
        self.on_member = on_member
        self.compressed = max(archive.stat().st_size, 1)
        self.seen: set[str] = set()
        self.parents: set[str] = set()  # every directory some member is inside
        self.files: dict[str, tarfile.TarInfo] = {}
        self.count = self.total = 0

    def check(self, member: tarfile.TarInfo) -> str | None:
        """The member's normalised path if it is a file to write, None for a directory."""
        archive, refuse, budget = self.archive, self.refuse, self.budget
        self.count += 1
        if self.count > budget.max_members:
            raise refuse(archive, f"it has more than {budget.max_members} members")
        rel = _checked_name(member, archive, refuse)
        name = member.name
        key = rel.as_posix()  # "./src/a.py" → "src/a.py": `tar -C dir -c .` writes those
        if key == ".":
            if member.isdir():
                return None  # the "./" entry of `tar -C dir -c .`
            raise refuse(archive, f"member {name!r} is a file with no name")
        if key in self.seen:
            raise refuse(archive, f"member {name!r} appears twice")
        self.seen.add(key)
        # A file where another member needs a directory would fail half-way through writing.
        inside = [p.as_posix() for p in rel.parents if p.parts]
        if clash := next((p for p in inside if p in self.files), None):
            raise refuse(archive, f"member {name!r} is inside {clash!r}, which is a file")
        self.parents.update(inside)
        if member.isdir():
            return None
        if key in self.parents:
            raise refuse(archive, f"member {name!r} is a file, but other members are inside it")
        if self.on_member is not None:  # an undeclared member: the clearer refusal, so first
            self.on_member(key, member)
        self._check_sizes(name, member.size)
        self.files[key] = member
        return key

    def _check_sizes(self, name: str, size: int) -> None:
        archive, refuse, budget = self.archive, self.refuse, self.budget
        one = budget.max_member_size
        if one is not None and size > one.bytes:
            raise refuse(
                archive,
                f"member {name!r} is {size} bytes, over the {one.bytes}-byte limit per file ({one.option}={one.bytes})",
            )
        self.total += size
        # Checked from the headers, as they come: a bomb is refused before its bytes are read.
        everything = budget.max_total_size
        if everything is not None and self.total > everything.bytes:
            raise refuse(
                archive,
                f"its files add up to more than {everything.bytes} bytes ({everything.option}={everything.bytes})",
            )
        if budget.max_ratio is not None and self.total > RATIO_FLOOR:
            ratio, option = budget.max_ratio
            if self.total > ratio * self.compressed:
                raise refuse(
                    archive,
                    f"it declares {self.total} bytes of files in {self.compressed} bytes, a compression ratio over {ratio:g} that real models do not reach (a decompression bomb?); raise {option} if this archive is genuine",
                )


def scan(
    archive: Path,
    refuse: Refuse,
    budget: Budget,
    *,
    keep: Callable[[str], bool] = lambda key: False,
    on_member: Callable[[str, tarfile.TarInfo], None] | None = None,
    on_kept: Callable[[str, bytes], None] | None = None,
    progress: Progress | None = None,
) -> Scan:
    """Check and hash every member of `archive`, writing nothing (pass 1; see the module doc).

    `on_member(key, header)` runs before a file's bytes are read (raise to refuse a member the
    metadata does not declare); files for which `keep(key)` is true (up to `MAX_KEPT` bytes)
    are kept in memory, and passed to `on_kept(key, data)` as soon as they are read.
    """
    checker = _Checker(archive, refuse, budget, on_member)
    found = Scan(files=checker.files)
    with _stream(archive, progress) as tar:
        for member in tar:
            key = checker.check(member)
            if key is None:
                continue
            data = tar.extractfile(member)
            assert data is not None  # a regular member always has data
            if keep(key) and member.size <= MAX_KEPT:
                content = data.read(member.size)
                if len(content) != member.size:
                    msg = f"unexpected end of data in {member.name!r}"
                    raise tarfile.ReadError(msg)
                found.kept[key] = content
                found.sha256[key] = hashlib.sha256(content).hexdigest()
                if on_kept is not None:
                    on_kept(key, content)
            else:
                found.sha256[key] = _copy(data, member.size, None)
    return found


def extract_scanned(
    archive: Path,
    found: Scan,
    root: Path,
    refuse: Refuse,
    *,
    keep_executable: bool,
    fsync: bool,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Write the files `scan` found under the fresh directory `root` (pass 2); returns them.

    Each file's bytes are hashed again as they are written and must match the scan's hash.
    `keep_executable` gives a file with an executable bit mode 0755 (else every file is 0644);
    `fsync` flushes each file to disk before the next is written.
    """
    base = root.resolve()
    written: dict[str, Path] = {}
    with _stream(archive, progress) as tar:
        for member in tar:
            key = PurePosixPath(member.name).as_posix()
            if member.isdir() or key == ".":
                continue
            if found.files.get(key) is None or key in written:
                raise refuse(archive, f"member {member.name!r} was not there when it was checked")
            target = root.joinpath(*PurePosixPath(key).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Belt and braces over the name checks: the resolved parent must be inside.
            if not target.parent.resolve().is_relative_to(base):
                raise refuse(
                    archive, f"member {key!r} resolves outside the directory it is extracted into"
                )
            executable = keep_executable and bool(member.mode & 0o111)
            data = tar.extractfile(member)
            assert data is not None
            # O_EXCL: the directory is fresh, so an existing file means a name checked twice.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(target, flags, 0o755 if executable else 0o644)
            with os.fdopen(fd, "wb") as out:
                sha = _copy(data, member.size, out)
                if fsync:
                    out.flush()
                    os.fsync(out.fileno())
            if sha != found.sha256[key] or member.size != found.files[key].size:
                raise refuse(archive, f"member {key!r} changed since it was checked")
            written[key] = target
    if missing := sorted(found.files.keys() - written.keys()):
        raise refuse(archive, f"members {missing[:5]} were gone when it was extracted")
    return written


@contextmanager
def progress_bar(archive: Path, what: str) -> Iterator[Progress | None]:
    """A progress bar over the archive's bytes for one pass, when it is large enough to take a
    while (over 64 MiB); None otherwise. The export's bars (`progress.py`): shown in a kernel
    or a terminal only."""
    size = archive.stat().st_size
    if size < 64 << 20:
        yield None
        return
    from nbserve._bento.progress import progress_bar as bar_for

    with bar_for(size, f"{what} {archive.name}", None) as bar:
        yield bar.update
