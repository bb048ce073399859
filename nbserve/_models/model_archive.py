"""`.nbmodel` files: one model-store entry as a reproducible tar, and a safe import of one.

Export writes `model.yaml` and the entry's files, sorted, with mtime 0, uid/gid 0, no owner
names, mode 0644 (0755 when executable), gzip without a timestamp or file name, so exporting
an entry twice, here or on another machine, gives the same bytes.

Import treats the archive as hostile until proven otherwise, and checks it before writing
anything: a first streaming pass (`safetar.scan`) checks every member (regular files and
directories only, relative paths without `..`, no duplicates, a total under `max_size` and
a sane compression ratio), parses `model.yaml` as soon as it comes (export writes it first)
and refuses at its header any member `model.yaml` does not declare, and hashes every file.
The hashes must be the ones `model.yaml` records and `model.yaml` must hash to its version,
and the files must fit on the disk. Only then are they written one by one into a fresh
staging directory with `O_EXCL | O_NOFOLLOW` (hashed again, and flushed to disk), and the
entry joins the store. The staging directory is removed on any failure.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from nbserve._bento import integrity
from nbserve._bento.integrity import MODEL_YAML, CorruptModelError
from nbserve._bento.safetar import (
    Budget,
    Limit,
    Scan,
    extract_scanned,
    file_header,
    progress_bar,
    scan,
    written_atomically,
)
from nbserve._bento.tag import Tag
from nbserve._models.model import Model, ModelInfo
from nbserve._models.store import ModelStore
from nbserve.exceptions import InvalidArgument

__all__ = ["SUFFIX", "export_model", "import_model"]

SUFFIX = ".nbmodel"
_MAX_YAML = 16 << 20
MAX_RATIO = 200.0  # weights barely compress; 1 GiB of zeros in gzip is ~1000:1


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


class _Declared:
    """model.yaml, parsed as soon as the scan reads it, and the check of each member after it."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.info: ModelInfo | None = None

    def read(self, key: str, data: bytes) -> None:
        if key != MODEL_YAML:
            return
        with tempfile.TemporaryDirectory(prefix="nbserve-model-yaml-") as parse_dir:
            Path(parse_dir, MODEL_YAML).write_bytes(data)
            try:
                info = ModelInfo.read(Path(parse_dir))
                Tag(info.name, info.version)  # the names become directory names: check them
            except (CorruptModelError, InvalidArgument) as exc:
                reason = str(exc).replace(parse_dir, "the archive")
                raise _refuse(self.archive, f"its model.yaml is invalid ({reason})") from None
        self.info = info

    def check(self, key: str, member: tarfile.TarInfo) -> None:
        if key == MODEL_YAML:
            if member.size > _MAX_YAML:
                raise _refuse(
                    self.archive, f"its {MODEL_YAML} is {member.size} bytes, over {_MAX_YAML}"
                )
            return
        if self.info is not None and key not in self.info.files:
            raise _refuse(
                self.archive,
                f"member {key!r} is not declared in its {MODEL_YAML} (which lists {len(self.info.files)} files)",
            )


def _check(archive: Path, found: Scan, info: ModelInfo | None) -> ModelInfo:
    """The entry's info once every hash matches model.yaml and its version; else a refusal."""
    if info is None:
        raise _refuse(archive, f"it has no top-level {MODEL_YAML}")
    files = found.files.keys() - {MODEL_YAML}
    problems = [
        f"file {rel!r} is listed in {MODEL_YAML} but missing"
        for rel in sorted(info.files.keys() - files)
    ]
    problems += [
        f"member {rel!r} is not declared in its {MODEL_YAML}"
        for rel in sorted(files - info.files.keys())
    ]
    problems += [
        f"file {rel!r} has sha256 {found.sha256[rel]} but {MODEL_YAML} records {info.files[rel]}"
        for rel in sorted(files & info.files.keys())
        if found.sha256[rel] != info.files[rel]
    ]
    if not problems and info.compute_version() != info.version:
        problems.append(
            f"{MODEL_YAML} hashes to version {info.compute_version()}, not {info.version}"
        )
    if problems:
        raise _refuse(
            archive, f"its files do not match its {MODEL_YAML} ({'; '.join(problems[:5])})"
        )
    return info


def import_model(
    store: ModelStore,
    path: str | os.PathLike[str],
    *,
    max_size: int | None = None,
    max_ratio: float = MAX_RATIO,
) -> Model:
    """Add the entry in a `.nbmodel` file to `store` after checking and verifying it; nothing
    is written before the whole archive checks out."""
    archive = Path(path).expanduser()
    if not archive.is_file():
        msg = f"import_model({str(path)!r}): no such file; pass the path of a .nbmodel written by nbserve.models.export_model."
        raise InvalidArgument(msg)
    budget = Budget(
        max_total_size=None if max_size is None else Limit(max_size, "max_size"),
        max_ratio=(max_ratio, "max_ratio"),
    )
    declared = _Declared(archive)
    try:
        with progress_bar(archive, "checking") as progress:
            found = scan(
                archive,
                _refuse,
                budget,
                keep=lambda key: key == MODEL_YAML,
                on_member=declared.check,
                on_kept=declared.read,
                progress=progress,
            )
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _refuse(archive, f"it is not a readable tar archive ({exc})") from None
    info = _check(archive, found, declared.info)
    staging = store.staging_dir()
    try:
        free = shutil.disk_usage(staging).free
        if found.total_size > free:
            raise _refuse(
                archive, f"it unpacks to {found.total_size} bytes but only {free} are free there"
            )
        try:
            # Modes are not kept: a model's files are data, and their hashes are what is checked.
            with progress_bar(archive, "importing") as progress:
                written = extract_scanned(
                    archive,
                    found,
                    staging,
                    _refuse,
                    keep_executable=False,
                    fsync=True,
                    progress=progress,
                )
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise _refuse(archive, f"it is not a readable tar archive ({exc})") from None
        # The files were hashed as they were written: verify() need not read them again.
        integrity.remember(
            {integrity.fingerprint(path): found.sha256[key] for key, path in written.items()}
        )
        model = Model(info, staging)
        try:
            model.verify()
        except CorruptModelError as exc:
            raise _refuse(archive, f"its files do not match its model.yaml ({exc})") from None
        for directory in {staging, *(p.parent for p in written.values())}:
            integrity.fsync_dir(directory)
        return store.place(staging, info, latest="if_newer")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
