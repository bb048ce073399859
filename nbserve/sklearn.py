"""BentoML's `bentoml.sklearn`: scikit-learn estimators in nbserve's model store.

```python
model = nbserve.sklearn.save_model("iris", clf)      # Model; model.tag is name:version
clf = nbserve.sklearn.load_model("iris:latest")
```
The estimator is stored as a stable pickle (`model.pkl`, see `nbserve.models`), so the same estimator saved
from a new kernel keeps its version. `load_model` and `get` also read entries that
`bentoml.sklearn` wrote into BentoML's store (`$BENTOML_HOME/models`), with joblib as
BentoML does. scikit-learn is imported only when an entry is loaded.
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

MODEL_FILENAME = "saved_model.pkl"  # where bentoml.sklearn puts it
_FRAMEWORK = "sklearn"


def get(tag_like: str | Tag) -> Model:
    """The stored entry for `tag_like` (any module's, as in BentoML; `load_model` checks)."""
    return frameworks.get(tag_like, _FRAMEWORK)


def load_model(bento_model: str | Tag | Model) -> Any:
    """The estimator saved under `bento_model` (a tag or a `Model`)."""
    model = frameworks.as_model(bento_model, _FRAMEWORK)
    return model.load()


def save_model(
    name: Tag | str,
    model: Any,
    **options: Unpack[frameworks.SaveOptions],
) -> Model:
    """Store a fitted estimator (or pipeline) and return the entry (`.tag`, `.path`)."""
    return frameworks.save(
        name,
        model,
        framework=_FRAMEWORK,
        module="cloudpickle",
        **options,
    )


def _load(directory: Path, info: ModelInfo, **kwargs: Any) -> Any:
    if frameworks.is_bentoml(info):
        import importlib

        joblib: Any = importlib.import_module("joblib")  # what bentoml.sklearn wrote with
        return joblib.load(directory / MODEL_FILENAME)
    return frameworks.load_saved(directory, info, **kwargs)
