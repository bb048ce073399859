"""`.nbmodel` files: one model-store entry as a reproducible tar, and a safe import of one.

Export writes `model.yaml` and the entry's files, sorted, with mtime 0, uid/gid 0, no owner
names, mode 0644 (0755 when executable), gzip without a timestamp or file name, so exporting
an entry twice, here or on another machine, gives the same bytes.

Import treats the archive as hostile until proven otherwise (tarfile's own `extractall`
trusts member names: CVE-2007-4559). Before a byte is written it checks every member: a
regular file or directory, a relative path without `..`, no duplicates, and a total size
that fits on the disk (and under `max_size`). Files are then written one by one into a
fresh staging directory with `O_EXCL | O_NOFOLLOW`, and the entry is verified against its
`model.yaml` and its content-hash version before it joins the store.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tarfile
import uuid
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from nbserve._bento import integrity
from nbserve._bento.integrity import MODEL_YAML, CorruptModelError
from nbserve._bento.model import Model, ModelInfo
from nbserve._bento.store import ModelStore
from nbserve._bento.tag import Tag
from nbserve.exceptions import InvalidArgument

__all__ = ["SUFFIX", "export_model", "import_model"]

SUFFIX = ".nbmodel"
_MAX_MEMBERS = 100_000
_MAX_YAML = 16 << 20
_COPY_CHUNK = 1 << 20
_DRIVE = re.compile(r"[A-Za-z]:")  # "C:..." is absolute on Windows


def _tarinfo(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def export_model(model: Model, path: str | os.PathLike[str]) -> str:
    """Write `model` to `path` (a file, or a directory for `<name>-<version>.nbmodel`)."""
    model.verify()
    root = Path(model.path)
    dest = Path(path).expanduser()
    if dest.is_dir():
        dest = dest / f"{model.name}-{model.version}{SUFFIX}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed over it, so a reader never sees half an archive.
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
    try:
        with (
            open(partial, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for rel in [MODEL_YAML, *sorted(model.info.files)]:
                source = root / rel
                st = source.stat()
                info = _tarinfo(rel, st.st_size, 0o755 if st.st_mode & 0o111 else 0o644)
                with open(source, "rb") as f:
                    tar.addfile(info, f)
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return str(dest)


def _refuse(archive: Path, why: str) -> InvalidArgument:
    msg = f"Refusing to import {archive}: {why}. Only import .nbmodel files written by nbserve.models.export_model."
    return InvalidArgument(msg)


def _checked_members(
    tar: tarfile.TarFile, archive: Path, max_size: int | None
) -> dict[str, tarfile.TarInfo]:
    """Regular-file members by safe relative path; raises before anything is written."""
    files: dict[str, tarfile.TarInfo] = {}
    seen: set[str] = set()
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > _MAX_MEMBERS:
            raise _refuse(archive, f"it has more than {_MAX_MEMBERS} members")
        name = member.name
        rel = PurePosixPath(name)
        if rel.is_absolute() or _DRIVE.match(name):
            raise _refuse(archive, f"member {name!r} has an absolute path")
        if "\\" in name:
            raise _refuse(
                archive, f"member {name!r} uses backslashes; entries use '/' between directories"
            )
        if ".." in rel.parts:
            raise _refuse(archive, f"member {name!r} climbs out of the model directory with '..'")
        if member.issym() or member.islnk():
            raise _refuse(
                archive,
                f"member {name!r} is a link (to {member.linkname!r}); model archives hold regular files only",
            )
        if not (member.isreg() or member.isdir()):
            raise _refuse(archive, f"member {name!r} is a device, FIFO or other special file")
        key = rel.as_posix()
        if key in seen:
            raise _refuse(archive, f"member {name!r} appears twice")
        seen.add(key)
        if member.isreg() and not rel.parts:
            raise _refuse(archive, f"member {name!r} is a file with no name")
        if member.isreg():
            total += member.size
            files[key] = member
    if MODEL_YAML not in files:
        raise _refuse(archive, f"it has no top-level {MODEL_YAML}")
    if files[MODEL_YAML].size > _MAX_YAML:
        raise _refuse(
            archive, f"its {MODEL_YAML} is {files[MODEL_YAML].size} bytes, over {_MAX_YAML}"
        )
    if max_size is not None and total > max_size:
        raise _refuse(archive, f"it unpacks to {total} bytes, over max_size={max_size}")
    return files


def _copy(src: IO[bytes], target: Path, size: int) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as out:
        remaining = size
        while remaining > 0 and (chunk := src.read(min(_COPY_CHUNK, remaining))):
            out.write(chunk)
            remaining -= len(chunk)
        out.flush()
        os.fsync(out.fileno())


def _unpack(archive: Path, staging: Path, max_size: int | None) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        files = _checked_members(tar, archive, max_size)
        needed = sum(m.size for m in files.values())
        free = shutil.disk_usage(staging).free
        if needed > free:
            raise _refuse(archive, f"it unpacks to {needed} bytes but only {free} are free there")
        base = staging.resolve()
        for rel, member in files.items():
            target = staging.joinpath(*PurePosixPath(rel).parts)
            # Belt and braces over the name checks: the resolved parent must be inside.
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.parent.resolve().is_relative_to(base):
                raise _refuse(archive, f"member {rel!r} resolves outside the model directory")
            src = tar.extractfile(member)
            assert src is not None  # a regular member always has data
            _copy(src, target, member.size)


def import_model(
    store: ModelStore, path: str | os.PathLike[str], *, max_size: int | None = None
) -> Model:
    """Add the entry in a `.nbmodel` file to `store` after checking and verifying it."""
    archive = Path(path).expanduser()
    if not archive.is_file():
        msg = f"import_model({str(path)!r}): no such file; pass the path of a .nbmodel written by nbserve.models.export_model."
        raise InvalidArgument(msg)
    staging = store.staging_dir()
    try:
        try:
            _unpack(archive, staging, max_size)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise _refuse(archive, f"it is not a readable tar archive ({exc})") from None
        try:
            info = ModelInfo.read(staging)
            Tag(info.name, info.version)  # the names become directory names: check them
        except (CorruptModelError, InvalidArgument) as exc:
            raise _refuse(archive, f"its model.yaml is invalid ({exc})") from None
        model = Model(info, staging)
        try:
            model.verify(cached=False)
        except CorruptModelError as exc:
            raise _refuse(archive, f"its files do not match its model.yaml ({exc})") from None
        for directory in {staging, *(p.parent for p in integrity.scan_files(staging)[0].values())}:
            integrity.fsync_dir(directory)
        return store.place(staging, info, latest="if_newer")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
