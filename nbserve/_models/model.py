"""A model-store entry (`Model`), what its `model.yaml` says (`ModelInfo`), and `BentoModel`.

`model.yaml` keeps BentoML's field names (name, version, module, labels, options, metadata,
context, creation_time) and adds `files`, the sha256 of every file, which is what lets an
entry be verified and its version be a content hash (see `integrity.py`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, overload

import yaml

from nbserve._bento import integrity
from nbserve._bento.integrity import MODEL_YAML, CorruptModelError
from nbserve._bento.tag import Tag
from nbserve.exceptions import InvalidArgument, NbserveError

if TYPE_CHECKING:
    from nbserve._sdk.runner import Runner

__all__ = ["BentoModel", "Model", "ModelContext", "ModelInfo", "plain_mapping", "referenced_models"]

_PLAIN = "str, int, float, bool, None, or lists and dicts of them"


def _plain(value: Any, where: str) -> Any:
    """A JSON/YAML-safe copy of `value`, so the version hash and model.yaml agree exactly."""
    # bool before int (bool is an int); subclasses such as numpy.float64 become the base type,
    # because yaml.safe_dump refuses them and JSON would hash them like the base type anyway.
    if value is None or isinstance(value, bool):
        return value
    for base in (str, int, float):
        if isinstance(value, base):
            return base(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _plain(value.item(), where)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return plain_mapping(value, where)
    msg = f"{where} is a {type(value).__name__} ({value!r}); model metadata must be {_PLAIN}. Convert it first, e.g. str(value)."
    raise InvalidArgument(msg)


def plain_mapping(value: Mapping[Any, Any] | None, where: str) -> dict[str, Any]:
    given: object = value  # checked at runtime too: notebooks pass anything
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        msg = f"{where} must be a dict, got {type(given).__name__} {given!r}."
        raise InvalidArgument(msg)
    out: dict[str, Any] = {}
    for key, item in given.items():
        if not isinstance(key, str):
            msg = f"{where} has the key {key!r} ({type(key).__name__}); keys must be strings."
            raise InvalidArgument(msg)
        out[key] = _plain(item, f"{where}[{key!r}]")
    return out


def plain_labels(labels: Mapping[Any, Any] | None) -> dict[str, str]:
    out = plain_mapping(labels, "labels")
    for key, value in out.items():
        if not isinstance(value, str):
            msg = f"labels[{key!r}] is {value!r}; label values must be strings (metadata takes any value)."
            raise InvalidArgument(msg)
    return out


@dataclass
class ModelContext:
    """Where the model was saved: framework and interpreter versions (not part of the hash)."""

    framework_name: str
    framework_versions: dict[str, str]
    nbserve_version: str
    python_version: str
    bentoml_version: str = ""  # set when BentoML wrote the entry (see `ModelInfo.origin`)


@dataclass
class ModelInfo:
    """The contents of an entry's `model.yaml`."""

    name: str
    version: str
    module: str
    labels: dict[str, str]
    options: dict[str, Any]
    metadata: dict[str, Any]
    context: ModelContext
    files: dict[str, str] = field(default_factory=dict)
    creation_time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    api_version: str = "v1"
    # "bentoml" for an entry BentoML wrote: its version is not a content hash, and its
    # model.yaml has no `files` (they are hashed when it is read, so a bento that copies it
    # records them and verifies them there). Derived from the context, never written.
    origin: str = "nbserve"

    @property
    def tag(self) -> Tag:
        return Tag(self.name, self.version or None)

    def compute_version(self) -> str:
        return integrity.compute_version(
            name=self.name,
            module=self.module,
            options=self.options,
            labels=self.labels,
            metadata=self.metadata,
            files=self.files,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "api_version": self.api_version,
            "labels": self.labels,
            "options": self.options,
            "metadata": self.metadata,
            "context": {
                "framework_name": self.context.framework_name,
                "framework_versions": self.context.framework_versions,
                "nbserve_version": self.context.nbserve_version,
                "python_version": self.context.python_version,
                **(
                    {"bentoml_version": self.context.bentoml_version}
                    if self.context.bentoml_version
                    else {}
                ),
            },
            "files": self.files,
            "creation_time": self.creation_time.isoformat(),
        }

    def write(self, directory: Path) -> None:
        """Write `model.yaml` into `directory` and flush it to disk."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        with open(directory / MODEL_YAML, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def read(cls, directory: Path) -> ModelInfo:
        """Parse `directory/model.yaml`; anything malformed is a `CorruptModelError`."""
        where = directory / MODEL_YAML
        try:
            raw = yaml.safe_load(where.read_text(encoding="utf-8"))
            ctx = raw["context"]
            # BentoML's model.yaml has no file hashes; it says who wrote it in the context.
            origin = (
                "bentoml"
                if ctx.get("bentoml_version") and not ctx.get("nbserve_version")
                else "nbserve"
            )
            if "files" in raw:
                files = {str(k): str(v) for k, v in raw["files"].items()}
            elif origin == "bentoml":
                found, _ = integrity.scan_files(directory)
                files = {rel: integrity.file_sha256(path) for rel, path in found.items()}
            else:
                files = dict(raw["files"])  # KeyError: reported as unreadable below
            created = raw["creation_time"]
            info = cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                module=str(raw["module"]),
                labels=plain_labels(raw.get("labels")),
                options=plain_mapping(raw.get("options"), "options"),
                metadata=plain_mapping(raw.get("metadata"), "metadata"),
                context=ModelContext(
                    framework_name=str(ctx.get("framework_name", "")),
                    framework_versions={
                        str(k): str(v) for k, v in (ctx.get("framework_versions") or {}).items()
                    },
                    nbserve_version=str(ctx.get("nbserve_version", "")),
                    python_version=str(ctx.get("python_version", "")),
                    bentoml_version=str(ctx.get("bentoml_version", "")),
                ),
                files=files,
                creation_time=created
                if isinstance(created, datetime)
                else datetime.fromisoformat(created),
                api_version=str(raw.get("api_version", "v1")),
                origin=origin,
            )
        except FileNotFoundError:
            msg = f"{where} is missing, so {directory} is not a complete model entry; delete the directory or save the model again."
            raise CorruptModelError(msg) from None
        except (
            yaml.YAMLError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            NbserveError,
        ) as exc:
            msg = f"{where} is unreadable ({type(exc).__name__}: {exc}); the entry was modified after it was saved: save it again or delete {directory}."
            raise CorruptModelError(msg) from None
        if info.creation_time.tzinfo is None:
            info.creation_time = info.creation_time.replace(tzinfo=timezone.utc)
        return info


class Model:
    """One stored model: a directory of files plus `model.yaml`.

    From `get()`: `path` and `path_of()` point into the verified entry, `info` holds the
    labels, metadata and framework versions, and `load()` returns the saved object. Inside
    `with create(name) as m:`, `m.path` is a private staging directory for your files; when
    the block ends, `m` becomes the stored entry with its content-hash version.
    """

    def __init__(
        self, info: ModelInfo, path: Path, *, verified: bool = False, staging: bool = False
    ):
        self._info = info
        self._path = path
        self._verified = verified
        self._staging = staging

    @classmethod
    def from_path(cls, path: Path) -> Model:
        """The entry at `<store>/<name>/<version>`, read but not yet verified."""
        info = ModelInfo.read(path)
        if (info.name, info.version) != (path.parent.name, path.name):
            msg = f"{path / MODEL_YAML} names {info.name}:{info.version}, not {path.parent.name}:{path.name}; the entry was moved or edited: save it again or delete it with nbserve.models.delete('{path.parent.name}:{path.name}')."
            raise CorruptModelError(msg)
        return cls(info, path)

    @property
    def tag(self) -> Tag:
        return self._info.tag

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def version(self) -> str:
        return self._info.version

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def creation_time(self) -> datetime:
        return self._info.creation_time

    @property
    def path(self) -> str:
        """The entry's directory (verified on first use)."""
        if not self._verified and not self._staging:
            self.verify()
        return str(self._path)

    def path_of(self, item: str) -> str:
        """The path of `item` inside the entry, e.g. `m.path_of("weights/model.bin")`."""
        rel = PurePosixPath(item.replace(os.sep, "/").lstrip("/"))
        if ".." in rel.parts:
            msg = f"path_of({item!r}) leaves the model directory; pass a path inside it, e.g. 'weights.bin'."
            raise InvalidArgument(msg)
        return str(Path(self.path, *rel.parts))

    @property
    def file_size(self) -> int:
        """Bytes in the entry's files, model.yaml included."""
        files, _ = integrity.scan_files(self._path)
        record = self._path / MODEL_YAML  # absent while staging
        return sum(p.stat().st_size for p in files.values()) + (
            record.stat().st_size if record.exists() else 0
        )

    @property
    def custom_objects(self) -> dict[str, Any]:
        """The `custom_objects` a framework module's `save_model` stored (BentoML's), or {}."""
        from nbserve._models import frameworks, pickling

        where = Path(self.path) / frameworks.CUSTOM_OBJECTS
        if not where.is_file():
            return {}
        with open(where, "rb") as f:
            value = pickling.stable_load(f)
        return dict(value)

    def verify(self, *, cached: bool = True) -> None:
        """Raise `CorruptModelError` unless the files and model.yaml match what was saved."""
        if self._staging:
            return
        problems = integrity.verify_files(self._path, self._info.files, cached=cached)
        # BentoML's versions are not content hashes: only the files can be checked.
        content_hash = self._info.origin != "bentoml"
        if not problems and content_hash and self._info.compute_version() != self._info.version:
            problems.append(
                f"model.yaml (labels, metadata, options or file list) hashes to version {self._info.compute_version()}, not {self._info.version}"
            )
        if problems:
            msg = f"Model '{self.tag}' at {self._path} is corrupt: {'; '.join(problems)}. The entry was modified after it was saved; save it again or delete it with nbserve.models.delete('{self.tag}')."
            raise CorruptModelError(msg)
        self._verified = True

    def load(self, **kwargs: Any) -> Any:
        """The saved object, after verifying the files (`kwargs` go to the framework loader)."""
        if self._staging:
            msg = f"Model '{self.name}' is still being created; load it after the `with nbserve.models.create(...)` block."
            raise NbserveError(msg)
        self.verify()
        from nbserve._models import savers

        return savers.load_object(self._path, self._info, **kwargs)

    def to_runner(
        self,
        name: str | None = None,
        max_batch_size: int | None = None,
        max_latency_ms: int | None = None,
        method_configs: dict[str, dict[str, Any]] | None = None,
        **legacy: Any,
    ) -> Runner:
        """BentoML 1.1's runner over this model, for `nbserve.runner_service(runner=...)`.

        `legacy` takes 1.1 options that have no meaning here (`embedded`, `scheduling_strategy`).
        """
        from nbserve._sdk.runner import Runner

        return Runner(
            self,
            name=name,
            max_batch_size=max_batch_size,
            max_latency_ms=max_latency_ms,
            method_configs=method_configs,
        )

    def __repr__(self) -> str:
        return f"Model(tag={str(self.tag)!r}, path={str(self._path)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Model):
            return NotImplemented
        return (self.tag, self._path) == (other.tag, other._path)

    def __hash__(self) -> int:
        return hash((self.tag, self._path))

    def __getstate__(self) -> dict[str, Any]:
        # Workers get a service class, with its Model attributes, by cloudpickle. Handing over
        # the hashes this process verified lets them skip re-hashing unchanged files.
        state = dict(self.__dict__)
        state["_hashes"] = integrity.remembered_hashes(self._path, self._info.files)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        integrity.remember(state.pop("_hashes", {}))
        state["_verified"] = False
        self.__dict__.update(state)


class BentoModel:
    """A reference to a stored model, resolved on first use (BentoML's `BentoModel`).

    As a class attribute, `model = BentoModel("iris:latest")` reads as the resolved `Model`
    on instances (`self.model.load()`) and as the reference itself on the class, so tools
    (the exporter) can list what a service uses without touching the store. Any other
    attribute (`ref.path`, `ref.load()`) resolves it too.
    """

    def __init__(self, tag: Tag | str):
        self.tag = Tag.from_taglike(tag)
        self._resolved: Model | None = None

    def resolve(self) -> Model:
        """The stored `Model` (looked up once; `latest` is fixed at the first lookup)."""
        if self._resolved is None:
            from nbserve._models.store import resolve

            self._resolved = resolve(self.tag)
        return self._resolved

    @property
    def stored(self) -> Model | None:
        """The stored `Model`, or None when the store has no such entry."""
        from nbserve.exceptions import NotFound

        try:
            return self.resolve()
        except NotFound:
            return None

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> BentoModel: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> Model: ...
    def __get__(
        self, instance: object | None, owner: type[Any] | None = None
    ) -> BentoModel | Model:
        return self if instance is None else self.resolve()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # keep pickle/copy probes from hitting the store
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"BentoModel({str(self.tag)!r})"

    def __str__(self) -> str:
        return str(self.tag)


def referenced_models(cls: type) -> list[Model]:
    """The stored models a service class holds as class attributes (`get()` results and
    `BentoModel` references, inherited ones too), resolved, each once, in attribute order.
    What a bento export copies into `models/<name>/<version>/`."""
    found: dict[tuple[str, str], Model] = {}
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():  # vars(): reading the raw attribute skips __get__
            model = value.resolve() if isinstance(value, BentoModel) else value
            if isinstance(model, Model):
                found.setdefault((model.name, model.version), model)
    return list(found.values())
