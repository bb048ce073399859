"""`HuggingFaceModel`: BentoML's reference to a Hugging Face Hub model, as a local path.

```python
@nbserve.service
class Embedder:
    model_path = HuggingFaceModel("sentence-transformers/all-MiniLM-L6-v2")
    def __init__(self):
        self.model = SentenceTransformer(self.model_path)   # a directory on this machine
```
On an instance the attribute is the snapshot directory (a `str`), resolved once; on the class
it is the reference. It is found, in this order, as the copy a bento carries (when serving
one), as a local directory (`model_id` may be a path), then in the Hugging Face cache
(`NBSERVE_HF_CACHE_DIR`, `BENTOML_HF_CACHE_DIR`, else huggingface_hub's own: `HF_HUB_CACHE`,
`HF_HOME/hub`, `~/.cache/huggingface/hub`) without touching the network. Only when it is in
none of them, and the Hub is not switched off (`HF_HUB_OFFLINE=1`), is it downloaded, with
huggingface_hub's progress bars, as BentoML does.

A bento carries the model. BentoML records a `HuggingFaceModel` class attribute at build time
and downloads it at serve time; a bento served where there is no network (or no cache) cannot,
so nbserve packs the resolved files instead (`pack`): a model-store entry
`models/<org>--<name>/<version>/` whose files sit under `snapshot/` and whose version is a
content hash of them and of the reference (`model_id`, `revision`, the commit, `include`,
`exclude`), like any stored model's. Serving the bento points the model store at its
`models/` (`NBSERVE_MODEL_STORE`), and `resolve()` returns that entry's `snapshot/` directory.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import platform
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata as distributions
from pathlib import Path
from typing import Any, overload

from nbserve._bento.integrity import file_sha256
from nbserve._models.model import ModelContext, ModelInfo
from nbserve._version import __version__
from nbserve.exceptions import NbserveError, NotFound

__all__ = [
    "MODULE",
    "SNAPSHOT",
    "HuggingFaceModel",
    "PackedModel",
    "class_references",
    "model_files",
    "pack",
    "packed_name",
]

MODULE = "huggingface"  # a packed entry's `module` (BentoML's `registry: huggingface`)
SNAPSHOT = "snapshot"  # the folder of a packed entry that holds the model's files
# Not the model: a local directory's git history (its LFS objects are a second copy of the
# weights) and huggingface_hub's bookkeeping for `--local-dir` downloads.
_SKIPPED_DIRS = frozenset({".git", ".cache"})
_TAG_PART = 63  # the longest tag name the store accepts
# (file a model's folder has, what it must say) -> the framework that loads it, as an import
# name and its distribution: the packed entry records it, so the bento pins it (model_modules).
_FRAMEWORKS: tuple[tuple[str, str, str, str], ...] = (
    ("config.json", "transformers_version", "transformers", "transformers"),
    ("config_sentence_transformers.json", "", "sentence_transformers", "sentence-transformers"),
    ("model_index.json", "_diffusers_version", "diffusers", "diffusers"),
)


class HuggingFaceModel:
    """A Hugging Face model by id (`"org/name"`) or local directory; resolves to a path."""

    def __init__(
        self,
        model_id: str,
        revision: str = "main",
        endpoint: str | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ):
        self.model_id = model_id
        self.revision = revision
        self.endpoint = endpoint if endpoint is not None else os.environ.get("HF_ENDPOINT")
        self.include = include
        self.exclude = exclude
        self._resolved: str | None = None

    def __repr__(self) -> str:
        return f"HuggingFaceModel({self.model_id!r}, revision={self.revision!r})"

    def __str__(self) -> str:
        return f"{self.model_id}:{self.revision}"

    def _cache_dir(self) -> str | None:
        return os.environ.get("NBSERVE_HF_CACHE_DIR") or os.environ.get("BENTOML_HF_CACHE_DIR")

    def resolve(self) -> str:
        """The model's directory on this machine (looked up once)."""
        if self._resolved is None:
            self._resolved = self._packed() or self._find()
        return self._resolved

    @property
    def reference(self) -> dict[str, Any]:
        """What names the model's files: recorded in a packed entry, matched when serving."""
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "include": list(self.include) if self.include is not None else None,
            "exclude": list(self.exclude) if self.exclude is not None else None,
        }

    def _packed(self) -> str | None:
        """The copy in the bento being served: an entry of `$NBSERVE_MODEL_STORE` (which the
        loader points at the bento's `models/`) recorded for this very reference."""
        if not os.environ.get("NBSERVE_MODEL_STORE"):
            return None  # not serving a bento: a notebook's store never holds packed models
        from nbserve._models.store import default_store

        wanted = self.reference
        for model in default_store().list(packed_name(self.model_id)):
            recorded = model.info.metadata
            if model.info.module == MODULE and all(recorded.get(k) == v for k, v in wanted.items()):
                # `path` verifies the files against model.yaml before handing them out.
                return str(Path(model.path) / SNAPSHOT)
        return None

    def _find(self) -> str:
        local = Path(self.model_id).expanduser()
        if local.is_dir():
            return str(local.resolve())
        try:
            from huggingface_hub import constants, snapshot_download
            from huggingface_hub.errors import LocalEntryNotFoundError
        except ImportError as exc:
            msg = f"HuggingFaceModel({self.model_id!r}) needs huggingface_hub to find the model in the Hugging Face cache: pip install huggingface_hub (transformers installs it), or pass a local directory."
            raise NbserveError(msg) from exc
        options: dict[str, Any] = {
            "revision": self.revision,
            "cache_dir": self._cache_dir(),
            "allow_patterns": self.include,
            "ignore_patterns": self.exclude,
        }
        try:
            return str(snapshot_download(self.model_id, local_files_only=True, **options))
        except LocalEntryNotFoundError:
            offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE") in ("1", "true")
            if offline:
                where = self._cache_dir() or constants.HF_HUB_CACHE
                bento = (
                    " The bento being served does not carry it: a bento packs a HuggingFaceModel only when it is a class attribute of the service (or of one it depends on); make it one and build again."
                    if os.environ.get("NBSERVE_MODEL_STORE")
                    else ""
                )
                msg = f"HuggingFaceModel({self.model_id!r}, revision={self.revision!r}) is not in the Hugging Face cache {where}, and HF_HUB_OFFLINE is set.{bento} Download it once where the Hub is reachable (huggingface-cli download {self.model_id}), set NBSERVE_HF_CACHE_DIR to the cache that has it, or pass a local directory."
                raise NotFound(msg) from None
        return str(snapshot_download(self.model_id, endpoint=self.endpoint, **options))

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> HuggingFaceModel: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> str: ...
    def __get__(
        self, instance: object | None, owner: type[Any] | None = None
    ) -> HuggingFaceModel | str:
        return self if instance is None else self.resolve()


# -- packing into a bento ----------------------------------------------------------------------


@dataclass(frozen=True)
class PackedModel:
    """A `HuggingFaceModel`'s files as a bento carries them: a model-store entry's record
    (files under `snapshot/`, content-hash version) and where each file is read from."""

    info: ModelInfo
    sources: Mapping[str, Path]  # path inside the entry -> the (symlink-free) file to copy

    @property
    def size(self) -> int:
        return sum(path.stat().st_size for path in self.sources.values())


def packed_name(model_id: str) -> str:
    """The entry name of a model: BentoML's (`Org/Name` → `org--name`), as a valid tag part.

    A local directory (an id that starts with `/`, `.` or `~`, or has more than one `/`) is
    named after its last component. Only the string counts, never what is on this machine:
    the bento's builder and its server must agree. A name longer than a tag allows is cut and
    given a hash of the whole id, so two long ids do not share a name."""
    trimmed = model_id.replace("\\", "/").rstrip("/")
    is_path = trimmed.startswith(("/", ".", "~")) or trimmed.count("/") > 1
    raw = trimmed.rsplit("/", 1)[-1] if is_path else trimmed
    name = re.sub(r"[^a-z0-9_.-]+", "-", raw.lower().replace("/", "--")).strip("-_.") or "model"
    if len(name) > _TAG_PART:
        digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]
        name = f"{name[: _TAG_PART - 9].rstrip('-_.')}-{digest}"
    return name


def class_references(cls: type) -> list[HuggingFaceModel]:
    """The `HuggingFaceModel` class attributes of a service class, inherited ones too."""
    found: dict[int, HuggingFaceModel] = {}
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():  # vars(): the raw attribute, not its __get__
            if isinstance(value, HuggingFaceModel):
                found.setdefault(id(value), value)
    return list(found.values())


def _wanted(rel: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    """Whether `include`/`exclude` keep a file, matched as huggingface_hub matches them
    (fnmatch; a pattern ending in `/` means everything under that folder)."""

    def matches(patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatch(rel, p + "*" if p.endswith("/") else p) for p in patterns)

    return (include is None or matches(include)) and (exclude is None or not matches(exclude))


def model_files(ref: HuggingFaceModel) -> dict[str, Path]:
    """The files a bento packs for `ref` (relative posix path -> regular file), found where
    `ref` resolves, links followed: a Hugging Face snapshot is a folder of links into the
    cache's `blobs/`."""
    root = Path(ref.resolve())
    files: dict[str, Path] = {}
    for current, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for d in dirs:
            if (Path(current) / d).is_symlink():
                msg = f"HuggingFaceModel({ref.model_id!r}): {Path(current) / d} is a link to a directory, which a bento cannot pack; replace it with a copy of the directory, or leave it out with exclude=[...]."
                raise NbserveError(msg)
        for name in names:
            path = Path(current) / name
            rel = path.relative_to(root).as_posix()
            if not _wanted(rel, ref.include, ref.exclude):
                continue
            target = path.resolve()
            if not target.is_file():
                msg = f"HuggingFaceModel({ref.model_id!r}): {path} is not a regular file (a broken link left by an interrupted download?); download the model again (huggingface-cli download {ref.model_id}) or leave the file out with exclude=[{rel!r}]."
                raise NbserveError(msg)
            files[rel] = target
    if not files:
        msg = f"HuggingFaceModel({ref.model_id!r}) resolves to {root}, which holds no files to pack (include={ref.include!r}, exclude={ref.exclude!r}); check the patterns or the directory."
        raise NbserveError(msg)
    return dict(sorted(files.items()))


def _frameworks(files: Mapping[str, Path]) -> dict[str, str]:
    """The frameworks the model's own files say load it, where installed here (the service
    was tried with these), by import name, with their versions."""
    found: dict[str, str] = {}
    for filename, key, module, distribution in _FRAMEWORKS:
        path = files.get(filename)
        if path is None:
            continue
        if key:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not JSON we can read: say nothing rather than guess
            if not (isinstance(record, dict) and key in record):
                continue
        try:
            found[module] = distributions.version(distribution)
        except distributions.PackageNotFoundError:
            continue
    return found


def _commit(ref: HuggingFaceModel, root: Path) -> str | None:
    """The Hub commit of a snapshot (its folder name in the cache); None for a local folder."""
    local = Path(ref.model_id).expanduser()
    if local.is_dir() or root.parent.name != "snapshots":
        return None
    return root.name


def pack(ref: HuggingFaceModel, *, on_file: Callable[[int], None] | None = None) -> PackedModel:
    """Resolve `ref` here and describe its files as a model-store entry a bento can carry.

    Every file is hashed (`on_file` gets each one's size, for a progress bar); the version is
    the store's content hash, so the same files under the same reference give the same entry.
    """
    from nbserve._bento.requirements import REPRODUCIBLE_EPOCH

    root = Path(ref.resolve())
    found = model_files(ref)
    files: dict[str, str] = {}
    sources: dict[str, Path] = {}
    for rel, path in found.items():
        files[f"{SNAPSHOT}/{rel}"] = file_sha256(path)
        sources[f"{SNAPSHOT}/{rel}"] = path
        if on_file is not None:
            on_file(path.stat().st_size)
    info = ModelInfo(
        name=packed_name(ref.model_id),
        version="",
        module=MODULE,
        labels={},
        options={},
        metadata={**ref.reference, "commit": _commit(ref, root)},
        context=ModelContext(
            framework_name=MODULE,
            framework_versions=_frameworks(found),
            nbserve_version=__version__,
            python_version=platform.python_version(),
        ),
        files=files,
        # Fixed, as for the store entries a bento copies: the archive must not depend on when.
        creation_time=datetime.fromtimestamp(REPRODUCIBLE_EPOCH, timezone.utc),
    )
    info.version = info.compute_version()
    return PackedModel(info, sources)
