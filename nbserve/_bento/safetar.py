"""Tar files nbserve writes and reads: reproducible headers, atomic writes, hostile extraction.

`.bento` archives (`archive.py`) and `.nbmodel` files (`model_archive.py`) are both tars:
this module is what they share, so the two cannot drift apart in what they refuse.

Writing. `file_header` gives a header that depends only on the path, size and executable bit:
the caller's fixed mtime, uid/gid 0, no owner names, mode 0644 (0755 for executables).
`written_atomically` gives a partial path beside the target and renames it over the target only
when the block ends cleanly, so a reader never sees half an archive.

Reading treats every archive as hostile (tarfile's own `extractall` trusts member names:
CVE-2007-4559). `checked_members` checks every member before a byte is written: a regular file
or a directory (links of any kind, devices and FIFOs are refused), a relative path with no
drive, no backslash and no `..`, no duplicates, no file that another member is inside, at most
`max_members` members and within the size limits. `extract_files` then writes them into a fresh
directory with `O_EXCL | O_NOFOLLOW`, copying at most each header's size.

The caller says how a refusal is worded: `refuse(archive, reason)` builds the exception, so a
`.bento` gives `ArchiveError("refusing to extract …")` and a `.nbmodel` gives
`InvalidArgument("Refusing to import …")` with the same reasons.
"""

from __future__ import annotations

import os
import re
import tarfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import NamedTuple

__all__ = [
    "MAX_MEMBERS",
    "Limit",
    "Refuse",
    "checked_members",
    "extract_files",
    "file_header",
    "written_atomically",
]

MAX_MEMBERS = 100_000
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")  # "C:..." is absolute on Windows

Refuse = Callable[[Path, str], Exception]
"""Builds the exception to raise from the archive and a reason ("member 'x' is a link ...")."""


class Limit(NamedTuple):
    """A size limit, and the option that sets it (named in a refusal, so it says what to raise)."""

    bytes: int
    option: str


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


def checked_members(
    tar: tarfile.TarFile,
    archive: Path,
    refuse: Refuse,
    *,
    max_member_size: Limit | None = None,
    max_total_size: Limit | None = None,
    max_members: int = MAX_MEMBERS,
) -> dict[str, tarfile.TarInfo]:
    """The regular files to write, by normalised path; raises `refuse(...)` before any is written.

    Directory members are checked but not returned: writing a file makes its directories.
    """
    files: dict[str, tarfile.TarInfo] = {}
    seen: set[str] = set()
    parents: set[str] = set()  # every directory some member is inside
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > max_members:
            raise refuse(archive, f"it has more than {max_members} members")
        rel = _checked_name(member, archive, refuse)
        name = member.name
        key = rel.as_posix()  # "./src/a.py" → "src/a.py": `tar -C dir -c .` writes those
        if key == ".":
            if member.isdir():
                continue  # the "./" entry of `tar -C dir -c .`
            raise refuse(archive, f"member {name!r} is a file with no name")
        if key in seen:
            raise refuse(archive, f"member {name!r} appears twice")
        seen.add(key)
        # A file where another member needs a directory would fail half-way through writing.
        inside = [p.as_posix() for p in rel.parents if p.parts]
        if clash := next((p for p in inside if p in files), None):
            raise refuse(archive, f"member {name!r} is inside {clash!r}, which is a file")
        parents.update(inside)
        if member.isdir():
            continue
        if key in parents:
            raise refuse(archive, f"member {name!r} is a file, but other members are inside it")
        if max_member_size is not None and member.size > max_member_size.bytes:
            raise refuse(
                archive,
                f"member {name!r} is {member.size} bytes, over the {max_member_size.bytes}-byte limit per file ({max_member_size.option}={max_member_size.bytes})",
            )
        total += member.size
        # Checked as members are read: a bomb is refused without reading all of its headers.
        if max_total_size is not None and total > max_total_size.bytes:
            raise refuse(
                archive,
                f"its files add up to more than {max_total_size.bytes} bytes ({max_total_size.option}={max_total_size.bytes})",
            )
        files[key] = member
    return files


def _copy(
    source: tarfile.TarFile, member: tarfile.TarInfo, target: Path, *, mode: int, fsync: bool
) -> None:
    data = source.extractfile(member)
    assert data is not None  # a regular member always has data
    # O_EXCL: the staging directory is fresh, so an existing file means a name checked twice.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as out:
        remaining = member.size  # never more than the header promised and the limits allowed
        while remaining > 0 and (chunk := data.read(min(_CHUNK, remaining))):
            out.write(chunk)
            remaining -= len(chunk)
        if fsync:
            out.flush()
            os.fsync(out.fileno())


def extract_files(
    tar: tarfile.TarFile,
    files: Mapping[str, tarfile.TarInfo],
    root: Path,
    archive: Path,
    refuse: Refuse,
    *,
    keep_executable: bool,
    fsync: bool,
) -> None:
    """Write `checked_members`' files under the fresh directory `root`.

    `keep_executable` gives a file with an executable bit mode 0755 (else every file is 0644);
    `fsync` flushes each file to disk before the next is written.
    """
    base = root.resolve()
    for key, member in files.items():
        target = root.joinpath(*PurePosixPath(key).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Belt and braces over the name checks: the resolved parent must be inside.
        if not target.parent.resolve().is_relative_to(base):
            raise refuse(
                archive, f"member {key!r} resolves outside the directory it is extracted into"
            )
        executable = keep_executable and bool(member.mode & 0o111)
        _copy(tar, member, target, mode=0o755 if executable else 0o644, fsync=fsync)
