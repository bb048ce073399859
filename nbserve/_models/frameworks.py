"""What BentoML's framework modules (`nbserve.sklearn`, `nbserve.pytorch`, ...) share.

Each framework module saves into nbserve's store with `module: nbserve.<framework>` in
model.yaml (the format it used in `options["stored_as"]` when that is one of `savers.py`'s),
so `nbserve.<framework>.get()` can refuse an entry another framework wrote, as BentoML does.
It also reads the entries BentoML wrote (`module: bentoml.<framework>`, found by
`store.resolve` in `$BENTOML_HOME/models`), in BentoML's file layout. `Model.load()` on any of
these entries lands in `load_entry`, which hands the directory to the framework module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypedDict

from typing_extensions import Unpack

from nbserve._bento.tag import Tag
from nbserve.exceptions import NbserveError, NotFound

if TYPE_CHECKING:
    from nbserve._models.model import Model, ModelInfo

__all__ = ["CUSTOM_OBJECTS", "FRAMEWORKS", "SaveOptions", "get", "load_entry", "save", "save_files"]

FRAMEWORKS = ("sklearn", "pytorch", "transformers", "xgboost", "lightgbm", "picklable_model")
CUSTOM_OBJECTS = "custom_objects.pkl"  # BentoML's file name for `custom_objects`


class SaveOptions(TypedDict, total=False):
    """The keywords every framework module's `save_model` takes, as BentoML's do."""

    signatures: Mapping[str, Any] | None
    labels: Mapping[str, str] | None
    custom_objects: Mapping[str, Any] | None
    external_modules: Sequence[ModuleType] | None
    """Modules pickled by value; frameworks whose own format holds no Python code ignore it."""
    metadata: Mapping[str, Any] | None


def _framework_of(module: str) -> str | None:
    owner, _, framework = module.partition(".")
    return framework if owner in ("nbserve", "bentoml") and framework in FRAMEWORKS else None


# As in BentoML 1.4, whose `bentoml.{sklearn,xgboost,lightgbm}.get` is `bentoml.models.get`:
# these check the module only when loading; the legacy ones check in `get` too.
_GET_ANY = ("sklearn", "xgboost", "lightgbm")


def get(tag: Tag | str, framework: str) -> Model:
    """The entry for `tag` (nbserve's store, then BentoML's), checked as BentoML checks it."""
    from nbserve._models.store import resolve

    model = resolve(tag)
    if framework not in _GET_ANY and _framework_of(model.info.module) != framework:
        msg = f"Model {model.tag} was saved with module {model.info.module}, not loading with nbserve.{framework}; load it with nbserve.models.get('{model.tag}').load() or the framework module that saved it."
        raise NotFound(msg)
    return model


def as_model(tag_or_model: Tag | str | Model, framework: str) -> Model:
    from nbserve._models.model import Model
    from nbserve._models.store import resolve

    model = tag_or_model if isinstance(tag_or_model, Model) else resolve(tag_or_model)
    if _framework_of(model.info.module) != framework:
        msg = f"Model {model.tag} was saved with module {model.info.module}, not loading with nbserve.{framework}; load it with nbserve.models.get('{model.tag}').load() or the framework module that saved it."
        raise NotFound(msg)
    return model


@contextmanager
def _by_value(modules: Sequence[ModuleType] | None) -> Iterator[None]:
    """BentoML's `external_modules`: pickle these modules' code into the entry by value."""
    import cloudpickle

    added = []
    try:
        for module in modules or ():
            if module.__name__ not in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.register_pickle_by_value(module)
                added.append(module)
        yield
    finally:
        for module in added:
            cloudpickle.unregister_pickle_by_value(module)


def _options(signatures: Mapping[str, Any] | None) -> dict[str, Any]:
    # Recorded for BentoML parity (`to_runner` reads them there); serving does not use them.
    return {"signatures": dict(signatures)} if signatures else {}


def save(
    name: Tag | str,
    obj: object,
    *,
    framework: str,
    module: str,
    **given: Unpack[SaveOptions],
) -> Model:
    """`obj` saved by `savers.py` in `module`'s format, recorded as `nbserve.<framework>`."""
    from nbserve._models.store import default_store

    custom_objects = given.get("custom_objects")
    extra = {CUSTOM_OBJECTS: dict(custom_objects)} if custom_objects else None
    with _by_value(given.get("external_modules")):
        return default_store().save(
            name,
            obj,
            labels=given.get("labels"),
            metadata=given.get("metadata"),
            module=module,
            framework=f"nbserve.{framework}",
            extra=extra,
            options=_options(given.get("signatures")),
        )


def save_files(
    name: Tag | str,
    write: Callable[[Path], object],
    *,
    framework: str,
    versions: Mapping[str, str],
    options: Mapping[str, Any] | None = None,
    **given: Unpack[SaveOptions],
) -> Model:
    """An entry whose files the framework writes itself (`write(directory)`)."""
    from nbserve._models import pickling, savers
    from nbserve._models.store import default_store

    unstable: list[str] = []
    store = default_store()
    custom_objects = given.get("custom_objects")
    with store.create(
        name,
        module=f"nbserve.{framework}",
        labels=given.get("labels"),
        metadata=given.get("metadata"),
        options={**(options or {}), **_options(given.get("signatures"))},
    ) as model:
        write(Path(model.path))
        if custom_objects:
            unstable += savers.save_pickle(
                dict(custom_objects), Path(model.path) / CUSTOM_OBJECTS
            ).unstable
        model.info.context.framework_name = framework
        model.info.context.framework_versions = dict(versions)
    for why in unstable:
        pickling.warn_unstable(f"custom_objects of model '{model.tag}'", why)
    return model


def load_entry(directory: Path, info: ModelInfo, **kwargs: Any) -> Any:
    """`Model.load()` of an entry a framework module (nbserve's or BentoML's) wrote."""
    framework = _framework_of(info.module)
    if framework is None:
        msg = f"Model '{info.name}:{info.version}' was saved with module {info.module!r}, which nbserve cannot load; load it with the tool that saved it, or read its files from model.path."
        raise NbserveError(msg)
    loader: Callable[..., Any] = importlib.import_module(f"nbserve.{framework}")._load
    return loader(directory, info, **kwargs)


def load_saved(directory: Path, info: ModelInfo, **kwargs: Any) -> Any:
    """An nbserve framework entry saved through `save()`: load it in its `savers` format."""
    from nbserve._models import savers

    options = dict(info.options)
    fmt = str(options.pop("stored_as", "cloudpickle"))
    options.pop("signatures", None)
    return savers.load_object(directory, replace(info, module=fmt, options=options), **kwargs)


def is_bentoml(info: ModelInfo) -> bool:
    return info.module.startswith("bentoml.")
