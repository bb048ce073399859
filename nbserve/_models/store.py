"""The model store on disk: `$NBSERVE_HOME/models/<name>/<version>/` plus `<name>/latest`.

Writers never touch a live entry. `create()` hands out a staging directory under
`models/.tmp/`; on a clean exit the files are hashed and fsynced, `model.yaml` is written,
and the staging directory is renamed to `<name>/<version>` in one step. Two kernels saving
at once therefore never leave a half-written entry: rename is atomic, the first one wins,
and since versions are content hashes the loser's files are identical and are discarded
(unless the winner's entry has since been tampered with, in which case it is replaced). The
`latest` file is replaced with `os.replace`, and deletes rename an entry into `.tmp/` before
removing it, so a reader sees an entry whole or not at all.

The store's root is read from the environment on every call, so tests and notebooks can
point `NBSERVE_HOME` elsewhere at any time: `NBSERVE_MODEL_STORE` (a models directory, e.g.
a bento's `models/` when serving it) wins over `$NBSERVE_HOME/models` (default
`~/nbserve/models`).
"""

from __future__ import annotations

import builtins
import logging
import os
import platform
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

from nbserve._bento import integrity
from nbserve._bento.integrity import CorruptModelError
from nbserve._bento.tag import Tag, is_valid_part
from nbserve._models.model import Model, ModelContext, ModelInfo, plain_labels, plain_mapping
from nbserve._version import __version__
from nbserve.exceptions import InvalidArgument, NbserveError, NotFound

__all__ = ["ModelStore", "bentoml_store", "default_store", "resolve"]

logger = logging.getLogger("nbserve.models")

_TMP = ".tmp"
_LATEST = "latest"
_STALE_SECONDS = 24 * 3600  # staging dirs left by a crashed kernel are removed after a day
_PLACE_ATTEMPTS = 20


def default_store() -> ModelStore:
    """The store named by the environment now (not at import time)."""
    override = os.environ.get("NBSERVE_MODEL_STORE")
    if override:
        return ModelStore(Path(override).expanduser())
    home = os.environ.get("NBSERVE_HOME") or "~/nbserve"
    return ModelStore(Path(home).expanduser() / "models")


def bentoml_store() -> ModelStore:
    """BentoML's own model store (`$BENTOML_HOME/models`, default `~/bentoml/models`), read-only."""
    home = os.environ.get("BENTOML_HOME") or "~/bentoml"
    return ModelStore(Path(home).expanduser() / "models", read_only=True)


def resolve(tag: Tag | str) -> Model:
    """The entry for `tag` in nbserve's store, else in BentoML's (what `models.get` does).

    BentoML's store is not consulted when serving a bento (`NBSERVE_MODEL_STORE` is set: a
    bento holds all its models) or when `NBSERVE_BENTOML_STORE=0`. nbserve's store wins
    when both hold the name and the tag is `name` or `name:latest`."""
    try:
        return default_store().get(tag)
    except NotFound:
        if os.environ.get("NBSERVE_MODEL_STORE") or os.environ.get("NBSERVE_BENTOML_STORE") == "0":
            raise
        foreign = bentoml_store()
        if not (foreign.root / Tag.from_taglike(tag).name).is_dir():
            raise
        try:
            return foreign.get(tag)
        except NotFound:
            pass
        raise


def _distribution_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except (metadata.PackageNotFoundError, ValueError):
        return None


class ModelStore:
    """Model entries under one root directory."""

    def __init__(self, root: Path, *, read_only: bool = False):
        self.root = Path(root)
        self.read_only = read_only  # another tool's store (BentoML's): never written to

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # -- reading ---------------------------------------------------------------------------

    def get(self, tag: Tag | str) -> Model:
        """The verified entry for `name`, `name:latest`, `name:<version>` or a unique prefix."""
        model = Model.from_path(self._locate(Tag.from_taglike(tag)))
        model.verify()
        return model

    def list(self, tag: Tag | str | None = None) -> builtins.list[Model]:
        """Entries (read, not verified), by name then creation time; `tag` filters."""
        wanted = None if tag is None else Tag.from_taglike(tag)
        if wanted is not None and wanted.version not in (None, "latest"):
            try:
                return [Model.from_path(self._locate(wanted))]
            except NotFound:
                return []
        names = [wanted.name] if wanted is not None else self._names()
        found: builtins.list[Model] = []
        for name in names:
            models = self._read_versions(name)
            if wanted is not None and wanted.version == "latest" and models:
                latest = self._latest_version(name)
                models = [m for m in models if m.version == latest]
            found += models
        return found

    def _names(self) -> builtins.list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if is_valid_part(p.name) and p.is_dir())

    def _version_dirs(self, name: str) -> builtins.list[Path]:
        name_dir = self.root / name
        if not name_dir.is_dir():
            return []
        return sorted(
            p
            for p in name_dir.iterdir()
            if is_valid_part(p.name) and p.name != _LATEST and p.is_dir()
        )

    def _read_versions(self, name: str) -> builtins.list[Model]:
        models = []
        for path in self._version_dirs(name):
            try:
                models.append(Model.from_path(path))
            except CorruptModelError as exc:
                logger.warning("Skipping a broken model entry: %s", exc)
        return sorted(models, key=lambda m: m.creation_time)

    def _latest_version(self, name: str) -> str:
        latest_file = self.root / name / _LATEST
        try:
            version = latest_file.read_text(encoding="utf-8").strip()
        except OSError:
            version = ""
        if is_valid_part(version) and (self.root / name / version / integrity.MODEL_YAML).is_file():
            return version
        # Missing or stale (its entry was deleted): fall back to the newest, as BentoML does.
        models = self._read_versions(name)
        if not models:
            msg = f"No model named '{name}' in the model store {self.root}. Save one with nbserve.models.save('{name}', obj), or see what is there with nbserve.models.list()."
            raise NotFound(msg)
        newest = models[-1].version
        if not self.read_only:
            with suppress(OSError):  # a read-only store (a bento's models/) still resolves
                self._write_latest(name, newest)
        return newest

    def _locate(self, tag: Tag) -> Path:
        """The directory of `tag`'s entry (not read or verified)."""
        version = self._latest_version(tag.name) if tag.is_latest else str(tag.version)
        path = self.root / tag.name / version
        if path.is_dir():
            return path
        matches = [p for p in self._version_dirs(tag.name) if p.name.startswith(version)]
        if len(matches) == 1:
            return matches[0]
        have = ", ".join(p.name for p in self._version_dirs(tag.name)) or "none"
        if matches:
            msg = f"Model version prefix '{tag}' is ambiguous: it matches {', '.join(p.name for p in matches)}; give more characters."
            raise InvalidArgument(msg)
        msg = f"Model '{tag}' is not in the model store {self.root} (versions of '{tag.name}': {have}). Save it with nbserve.models.save('{tag.name}', obj), or use '{tag.name}:latest'."
        raise NotFound(msg)

    # -- writing ---------------------------------------------------------------------------

    def staging_dir(self) -> Path:
        """A fresh directory on the store's filesystem, so the final rename is atomic."""
        tmp = self.root / _TMP
        tmp.mkdir(parents=True, exist_ok=True)
        self._remove_stale(tmp)
        path = tmp / f"stage-{uuid.uuid4().hex}"
        path.mkdir()
        return path

    @staticmethod
    def _remove_stale(tmp: Path) -> None:
        cutoff = time.time() - _STALE_SECONDS
        for child in tmp.iterdir():
            try:
                if child.stat(follow_symlinks=False).st_mtime < cutoff:
                    shutil.rmtree(child, ignore_errors=True)
            except OSError:  # another process removed it first
                continue

    @contextmanager
    def create(
        self,
        name: Tag | str,
        *,
        module: str = "custom",
        labels: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Iterator[Model]:
        """Write files into `m.path`; on a clean exit they become a stored, hashed entry."""
        tag = Tag.from_taglike(name)
        if tag.version is not None:
            msg = f"nbserve.models.create({str(tag)!r}): versions are content hashes computed when the block ends; pass only the name, e.g. create({tag.name!r})."
            raise InvalidArgument(msg)
        versions = {}
        if module not in ("", "custom"):
            found = _distribution_version(module)
            versions = {module: found} if found else {}
        info = ModelInfo(
            name=tag.name,
            version="",
            module=module or "custom",
            labels=plain_labels(labels),
            options=plain_mapping(options, "options"),
            metadata=plain_mapping(metadata, "metadata"),
            context=ModelContext(
                framework_name=module or "custom",
                framework_versions=versions,
                nbserve_version=__version__,
                python_version=platform.python_version(),
            ),
        )
        staging = self.staging_dir()
        model = Model(info, staging, staging=True)
        try:
            yield model
            stored = self.commit(staging, model.info)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        model.__dict__.update(stored.__dict__)

    def save(
        self,
        name: Tag | str,
        obj: object,
        *,
        labels: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        module: str | None = None,
        framework: str | None = None,
        extra: Mapping[str, object] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Model:
        """Store `obj` in the format its type calls for (see `savers.py`); `module` forces one.

        `framework` (e.g. "nbserve.sklearn") is recorded as the entry's module, with the
        format in `options["stored_as"]`, so that framework's `get()` recognises the entry.
        `extra` maps file names to objects stored beside it as stable pickles (BentoML's
        `custom_objects`); `options` are recorded beside the format's own. Warns once (`UnstableVersionWarning`) when saving the same object
        from a new process would give a new version, naming the object and why."""
        from nbserve._models import pickling, savers

        with self.create(name, labels=labels, metadata=metadata) as model:
            saved = savers.save_object(obj, Path(model.path), module)
            unstable = list(saved.unstable)
            for filename, value in (extra or {}).items():
                unstable += savers.save_pickle(value, Path(model.path) / filename).unstable
            recorded = {**(options or {}), **saved.options}
            if framework is not None:
                recorded = {"stored_as": saved.module, **recorded}
            model.info.module = framework or saved.module
            model.info.context.framework_name = saved.module
            model.info.options = recorded
            model.info.context.framework_versions = saved.framework_versions
        for why in unstable:
            what = f"model '{model.tag}' ({type(obj).__module__}.{type(obj).__qualname__})"
            pickling.warn_unstable(what, why)
        return model

    def commit(self, staging: Path, info: ModelInfo) -> Model:
        """Hash the staged files, write model.yaml and move the entry into place."""
        # Labels and metadata may have been changed through `m.info` inside the block.
        info.labels = plain_labels(info.labels)
        info.metadata = plain_mapping(info.metadata, "metadata")
        info.options = plain_mapping(info.options, "options")
        files, odd = integrity.scan_files(staging)
        if odd:
            msg = f"Model '{info.name}': {', '.join(odd)} in m.path is a symlink or special file; a model entry holds regular files only, so copy the target in instead."
            raise InvalidArgument(msg)
        if (staging / integrity.MODEL_YAML).exists():
            msg = f"Model '{info.name}': 'model.yaml' in m.path is reserved for the store's own record; name your file differently (e.g. 'config.yaml')."
            raise InvalidArgument(msg)
        info.files = {rel: integrity.file_sha256(path, fsync=True) for rel, path in files.items()}
        info.version = info.compute_version()
        info.write(staging)
        for directory in {staging, *(p.parent for p in files.values())}:
            integrity.fsync_dir(directory)
        return self.place(staging, info, latest="always")

    def place(
        self, staging: Path, info: ModelInfo, *, latest: Literal["always", "if_newer"]
    ) -> Model:
        """Rename a complete, hashed entry into `<name>/<version>`; first writer wins."""
        final = self.root / info.name / info.version
        for _ in range(_PLACE_ATTEMPTS):
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, final)
            except OSError:
                if not final.exists():
                    if final.parent.exists():
                        raise
                    continue  # a delete of the whole name raced us; make the parent again
                # Another writer stored this version first. Same version, same content:
                # keep theirs, unless it has been damaged since, then ours replaces it.
                # (The hash cache is safe here: any write to a file changes its ctime.)
                try:
                    model = Model.from_path(final)
                    model.verify()
                except CorruptModelError:
                    self._trash(final)
                    continue
                shutil.rmtree(staging, ignore_errors=True)
                break
            else:
                integrity.fsync_dir(final.parent)
                model = Model(info, final, verified=True)
                break
        else:
            msg = f"Could not store model '{info.name}:{info.version}' in {self.root}: it kept changing under concurrent writers; try again."
            raise NbserveError(msg)
        if latest == "always" or self._is_newest(model):
            self._write_latest(info.name, info.version)
        return model

    def _is_newest(self, model: Model) -> bool:
        try:
            current = Model.from_path(self.root / model.name / self._latest_version(model.name))
        except (NotFound, CorruptModelError):
            return True
        return model.creation_time >= current.creation_time

    def _write_latest(self, name: str, version: str) -> None:
        tmp = self.root / _TMP
        tmp.mkdir(parents=True, exist_ok=True)
        staged = tmp / f"latest-{uuid.uuid4().hex}"
        with open(staged, "w", encoding="utf-8") as f:
            f.write(version)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(staged, self.root / name / _LATEST)
        except OSError:
            staged.unlink(missing_ok=True)
            raise

    def _trash(self, path: Path) -> None:
        """Take `path` out of the store in one rename, then remove it at leisure."""
        tmp = self.root / _TMP
        tmp.mkdir(parents=True, exist_ok=True)
        trash = tmp / f"trash-{uuid.uuid4().hex}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:  # someone else removed it first
            return
        shutil.rmtree(trash, ignore_errors=True)

    def delete(self, tag: Tag | str) -> None:
        """Delete one version (`name:version`, `name:latest`) or every version (`name`)."""
        parsed = Tag.from_taglike(tag)
        name_dir = self.root / parsed.name
        if parsed.version is None:
            if not name_dir.is_dir():
                msg = f"No model named '{parsed.name}' in the model store {self.root}; nothing to delete (see nbserve.models.list())."
                raise NotFound(msg)
            self._trash(name_dir)
            return
        self._trash(self._locate(parsed))
        if not self._version_dirs(parsed.name):
            (name_dir / _LATEST).unlink(missing_ok=True)
            with suppress(OSError):  # a writer added a version meanwhile
                name_dir.rmdir()
            return
        with suppress(NotFound):  # repoints `latest` if it named the deleted version
            self._latest_version(parsed.name)
