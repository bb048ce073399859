"""`.nbmodel` files: one model-store entry as a reproducible tar, and a safe import of one.

Export writes `model.yaml` and the entry's files, sorted, with mtime 0, uid/gid 0, no owner
names, mode 0644 (0755 when executable), gzip without a timestamp or file name, so exporting
an entry twice, here or on another machine, gives the same bytes.

Import treats the archive as hostile until proven otherwise: before a byte is written it
checks every member (`safetar.checked_members`: regular files and directories only, relative
paths without `..`, no duplicates), a top-level `model.yaml`, and a total size that fits on the
disk (and under `max_size`). Files are then written one by one into a fresh staging directory
with `O_EXCL | O_NOFOLLOW` and flushed to disk, and the entry is verified against its
`model.yaml` and its content-hash version before it joins the store.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zlib
from pathlib import Path

from nbserve._bento import integrity
from nbserve._bento.integrity import MODEL_YAML, CorruptModelError
from nbserve._bento.model import Model, ModelInfo
from nbserve._bento.safetar import (
    Limit,
    checked_members,
    extract_files,
    file_header,
    written_atomically,
)
from nbserve._bento.store import ModelStore
from nbserve._bento.tag import Tag
from nbserve.exceptions import InvalidArgument

__all__ = ["SUFFIX", "export_model", "import_model"]

SUFFIX = ".nbmodel"
_MAX_YAML = 16 << 20


def export_model(model: Model, path: str | os.PathLike[str]) -> str:
    """Write `model` to `path` (a file, or a directory for `<name>-<version>.nbmodel`)."""
    model.verify()
    root = Path(model.path)
    dest = Path(path).expanduser()
    if dest.is_dir():
        dest = dest / f"{model.name}-{model.version}{SUFFIX}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        written_atomically(dest) as partial,
        open(partial, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel in [MODEL_YAML, *sorted(model.info.files)]:
            source = root / rel
            st = source.stat()
            info = file_header(rel, st.st_size, executable=bool(st.st_mode & 0o111), mtime=0)
            with open(source, "rb") as f:
                tar.addfile(info, f)
    return str(dest)


def _refuse(archive: Path, why: str) -> InvalidArgument:
    msg = f"Refusing to import {archive}: {why}. Only import .nbmodel files written by nbserve.models.export_model."
    return InvalidArgument(msg)


def _unpack(archive: Path, staging: Path, max_size: int | None) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        limit = None if max_size is None else Limit(max_size, "max_size")
        files = checked_members(tar, archive, _refuse, max_total_size=limit)
        if MODEL_YAML not in files:
            raise _refuse(archive, f"it has no top-level {MODEL_YAML}")
        if files[MODEL_YAML].size > _MAX_YAML:
            raise _refuse(
                archive, f"its {MODEL_YAML} is {files[MODEL_YAML].size} bytes, over {_MAX_YAML}"
            )
        needed = sum(m.size for m in files.values())
        free = shutil.disk_usage(staging).free
        if needed > free:
            raise _refuse(archive, f"it unpacks to {needed} bytes but only {free} are free there")
        # Modes are not kept: a model's files are data, and their hashes are what is checked.
        extract_files(tar, files, staging, archive, _refuse, keep_executable=False, fsync=True)


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
