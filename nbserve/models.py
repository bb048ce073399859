"""The model store: save a trained model once, load it in any service, kernel or machine.

```python
nbserve.models.save("iris", clf, labels={"team": "ml"}, metadata={"accuracy": 0.97})
with nbserve.models.create("iris-files") as m:        # or write files yourself
    clf.booster.save_model(m.path_of("model.json"))
model = nbserve.models.get("iris:latest")             # verified against its checksums
model.load(), model.path, model.info.metadata, model.info.context.framework_versions
```
Entries live in `$NBSERVE_HOME/models/<name>/<version>/` (default `~/nbserve`), BentoML's
layout, with a `model.yaml` that records every file's sha256. A version is a content hash
of the files, labels, metadata and format, never a timestamp: saving the same model twice
gives the same version (and only moves `latest`), and a version always means the same bytes.
`get()` and `load()` verify the files and refuse an entry that was changed after it was saved.
Saves are atomic, so two kernels saving at once cannot corrupt an entry.

`save()` picks the format from the object: numpy arrays as `.npy`, torch tensors, state dicts
and modules with their weights in safetensors, transformers models and tokenizers with
`save_pretrained`, sentence-transformers models with `save`, anything else with a stable
cloudpickle. The same model saved from a new kernel keeps its version; what cannot warns once
with `UnstableVersionWarning` (see docs/models.md). Loading a torch module or a pickled entry
runs pickle, so load only entries you trust (state dicts and arrays load without it).
A tag this store lacks is looked up in BentoML's store (`get()` below).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from nbserve._bento.integrity import CorruptModelError
from nbserve._bento.tag import Tag
from nbserve._models.huggingface import HuggingFaceModel
from nbserve._models.model import BentoModel, Model, ModelContext, ModelInfo
from nbserve._models.pickling import UnstableVersionWarning
from nbserve._models.store import default_store, resolve

__all__ = [
    "BentoModel",
    "CorruptModelError",
    "HuggingFaceModel",
    "Model",
    "ModelContext",
    "ModelInfo",
    "Tag",
    "UnstableVersionWarning",
    "create",
    "delete",
    "export_model",
    "get",
    "import_model",
    "list",
    "save",
]


def create(
    name: Tag | str,
    *,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    module: str = "custom",
    options: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Model]:
    """Write a model's files yourself: `with create("name") as m:` then write under `m.path`.

    When the block ends cleanly the files are hashed and stored as `name:<content hash>`,
    `latest` points at it, and `m` is the stored entry. On an exception nothing is stored.
    `module` is recorded as the framework name (its installed version too).
    """
    return default_store().create(
        name, module=module, labels=labels, metadata=metadata, options=options
    )


def save(
    name: Tag | str,
    obj: object,
    *,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    module: str | None = None,
) -> Model:
    """Store `obj` under `name` and return the entry. `module` forces a format: one of
    "numpy", "torch", "transformers", "cloudpickle" (default: chosen by the object's type)."""
    return default_store().save(name, obj, labels=labels, metadata=metadata, module=module)


def get(tag: Tag | str) -> Model:
    """The verified entry for `"name"`, `"name:latest"`, `"name:<version>"` or a unique
    version prefix. Raises `NotFound` if absent, `CorruptModelError` if it was modified.

    A tag nbserve's store does not have is looked up in BentoML's store
    (`$BENTOML_HOME/models`, default `~/bentoml/models`), so models saved with BentoML work
    unchanged; not when serving a bento, nor with `NBSERVE_BENTOML_STORE=0`."""
    return resolve(tag)


def list(tag: Tag | str | None = None) -> builtins.list[Model]:
    """Stored entries by name, oldest first; `tag` narrows to a name or one version.
    Entries are read, not verified (cheap): `.name`, `.version`, `.file_size`,
    `.creation_time`, `.info.labels`."""
    return default_store().list(tag)


def delete(tag: Tag | str) -> None:
    """Delete `"name:version"` (or `"name:latest"`), or every version with `"name"`."""
    default_store().delete(tag)


def export_model(tag: Tag | str | Model, path: str | os.PathLike[str]) -> str:
    """Write the entry to a reproducible `.nbmodel` archive; `path` may be a directory.
    Returns the archive's path."""
    from nbserve._models import model_archive

    model = tag if isinstance(tag, Model) else get(tag)
    return model_archive.export_model(model, path)


def import_model(path: str | os.PathLike[str], *, max_size: int | None = None) -> Model:
    """Add the entry in a `.nbmodel` archive to the store, after refusing unsafe members
    (absolute paths, `..`, links, devices; more than `max_size` bytes) and verifying it."""
    from nbserve._models import model_archive

    return model_archive.import_model(default_store(), path, max_size=max_size)
