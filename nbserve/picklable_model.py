"""BentoML's `bentoml.picklable_model`: any picklable Python object in nbserve's model store.

```python
model = nbserve.picklable_model.save_model("rules", my_object)
obj = nbserve.picklable_model.load_model("rules:latest")
```
Stored as a stable cloudpickle (see `nbserve.models`: a class defined in a notebook is
stored by value and warns that its version changes with the kernel). `load_model` and `get`
also read entries `bentoml.picklable_model` wrote into BentoML's store. Loading runs pickle:
load only entries you trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from nbserve._bento.tag import Tag
from nbserve._models import frameworks
from nbserve._models.model import Model

if TYPE_CHECKING:
    from nbserve._models.model import ModelInfo

__all__ = ["get", "load_model", "save_model"]

MODEL_FILENAME = "saved_model.pkl"  # where bentoml.picklable_model puts it
_FRAMEWORK = "picklable_model"


def get(tag_like: str | Tag) -> Model:
    """The stored entry for `tag_like`; `NotFound` if it is absent or another module saved it."""
    return frameworks.get(tag_like, _FRAMEWORK)


def load_model(bento_model: str | Tag | Model) -> Any:
    """The object saved under `bento_model` (a tag or a `Model`)."""
    return frameworks.as_model(bento_model, _FRAMEWORK).load()


def save_model(
    name: Tag | str,
    model: Any,
    **options: Unpack[frameworks.SaveOptions],
) -> Model:
    """Store `model` with cloudpickle and return the entry (`.tag`, `.path`)."""
    return frameworks.save(
        name,
        model,
        framework=_FRAMEWORK,
        module="cloudpickle",
        **options,
    )


def _load(directory: Path, info: ModelInfo, **kwargs: Any) -> Any:
    if frameworks.is_bentoml(info):
        import pickle

        with open(directory / MODEL_FILENAME, "rb") as f:
            return pickle.load(f)
    return frameworks.load_saved(directory, info, **kwargs)
