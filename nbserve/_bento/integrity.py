"""Content hashes of model-store entries: versions, per-file checksums, verification.

An entry's version is a content hash, so saving the same model twice gives the same version
and a version names exactly one content. It is the first 16 characters of the lowercase
base32 sha256 (the length and alphabet of BentoML's uuid-based versions) of a canonical JSON
document holding everything that decides what `load()` returns:

    {"schema": "nbserve.model/1", "name", "module", "options", "labels", "metadata",
     "files": {relative posix path: sha256 of its bytes}}

`creation_time` and `context` (Python, nbserve and framework versions) are left out: they
describe the save, not the model, and would make every save a new version.

Verification re-hashes each file and compares it with `model.yaml`, then recomputes the
version from `model.yaml`, so editing a weight file *or* `model.yaml` is caught. Hashing a
multi-GB model takes seconds, so a process remembers each file's hash keyed by its stat
fingerprint (device, inode, size, mtime, ctime). ctime cannot be set back by a user (unlike
mtime through `os.utime`), so any write to a file gives a new fingerprint and a fresh hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbserve.exceptions import NbserveError

__all__ = [
    "CorruptModelError",
    "compute_version",
    "file_sha256",
    "fsync_dir",
    "scan_files",
    "verify_files",
]

MODEL_YAML = "model.yaml"
_CHUNK = 1 << 20
Fingerprint = tuple[int, int, int, int, int]
# fingerprint -> sha256 hex. Grows by one small tuple per model file a process has read.
_HASHES: dict[Fingerprint, str] = {}


class CorruptModelError(NbserveError):
    """A stored model's files or `model.yaml` no longer match what was saved."""


def fingerprint(path: Path) -> Fingerprint:
    st = os.stat(path, follow_symlinks=False)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_sha256(path: Path, *, fsync: bool = False, cached: bool = True) -> str:
    """sha256 of a file's bytes; `fsync` also flushes it to disk while it is open."""
    # Taken before reading: if the file changes while we hash it, its fingerprint changes
    # and the (possibly mixed) hash stored under the old one is never used again.
    before = fingerprint(path)
    if cached and not fsync and before in _HASHES:
        return _HASHES[before]
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
        if fsync:
            os.fsync(f.fileno())
    _HASHES[before] = digest.hexdigest()
    return _HASHES[before]


def remembered_hashes(path: Path, files: Mapping[str, str]) -> dict[Fingerprint, str]:
    """The cached hashes of an entry's files, to hand to another process (see `remember`)."""
    known: dict[Fingerprint, str] = {}
    for rel, sha in files.items():
        try:
            fp = fingerprint(path / rel)
        except OSError:
            continue
        if _HASHES.get(fp) == sha:
            known[fp] = sha
    return known


def remember(hashes: Mapping[Fingerprint, str]) -> None:
    """Trust hashes another process verified: same machine, same fingerprints, same bytes."""
    _HASHES.update(hashes)


def scan_files(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Regular files under `root` (relative posix path -> path), and anything else found.

    The top-level `model.yaml` is not a content file. Symlinks are never followed: a link
    could point outside the entry, so they are reported instead, with devices and FIFOs.
    """
    files: dict[str, Path] = {}
    odd: list[str] = []
    stack = [root]
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                path = Path(entry.path)
                rel = path.relative_to(root).as_posix()
                if entry.is_symlink():
                    odd.append(rel)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                elif entry.is_file(follow_symlinks=False):
                    if rel != MODEL_YAML:
                        files[rel] = path
                else:
                    odd.append(rel)
    return dict(sorted(files.items())), sorted(odd)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_version(
    *,
    name: str,
    module: str,
    options: Mapping[str, Any],
    labels: Mapping[str, str],
    metadata: Mapping[str, Any],
    files: Mapping[str, str],
) -> str:
    payload = {
        "schema": "nbserve.model/1",
        "name": name,
        "module": module,
        "options": options,
        "labels": labels,
        "metadata": metadata,
        "files": files,
    }
    digest = hashlib.sha256(canonical_json(payload).encode()).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:16]


def verify_files(
    root: Path, recorded: Mapping[str, str], *, cached: bool = True, limit: int = 5
) -> list[str]:
    """Every way the files under `root` differ from `recorded`, as readable sentences."""
    files, odd = scan_files(root)
    problems = [
        f"'{rel}' is a symlink or special file; an entry holds regular files only" for rel in odd
    ]
    problems += [
        f"file '{rel}' listed in model.yaml is missing"
        for rel in sorted(recorded.keys() - files.keys())
    ]
    problems += [
        f"file '{rel}' is not listed in model.yaml (it was added after the save)"
        for rel in sorted(files.keys() - recorded.keys())
    ]
    for rel in sorted(files.keys() & recorded.keys()):
        if len(problems) >= limit:
            break
        actual = file_sha256(files[rel], cached=cached)
        if actual != recorded[rel]:
            problems.append(
                f"file '{rel}' has sha256 {actual} but model.yaml records {recorded[rel]}"
            )
    return problems


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (POSIX; Windows has no directory fsync)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
