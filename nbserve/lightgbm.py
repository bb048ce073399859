"""BentoML's `bentoml.lightgbm`: LightGBM boosters in nbserve's model store.

```python
model = nbserve.lightgbm.save_model("rank", booster)   # or a fitted LGBMClassifier
booster = nbserve.lightgbm.load_model("rank:latest")    # a lightgbm.Booster
```
Stored with LightGBM's own text format in `saved_model.ubj` (BentoML's file name); as in
BentoML, a scikit-learn wrapper is saved as its `booster_` and loads as a `Booster`. Entries
`bentoml.lightgbm` wrote into BentoML's store load the same way. lightgbm is imported only
when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from nbserve._bento.tag import Tag
from nbserve._models import frameworks
from nbserve._models.model import Model
from nbserve.exceptions import InvalidArgument

if TYPE_CHECKING:
    from nbserve._models.model import ModelInfo

__all__ = ["get", "load_model", "save_model"]

MODEL_FILENAME = "saved_model.ubj"
_FRAMEWORK = "lightgbm"


def get(tag_like: str | Tag) -> Model:
    """The stored entry for `tag_like` (any module's, as in BentoML; `load_model` checks)."""
    return frameworks.get(tag_like, _FRAMEWORK)


def load_model(bento_model: str | Tag | Model) -> Any:
    """The `lightgbm.Booster` saved under `bento_model`."""
    return frameworks.as_model(bento_model, _FRAMEWORK).load()


def save_model(
    name: Tag | str,
    model: Any,
    **options: Unpack[frameworks.SaveOptions],
) -> Model:
    """Store a `lightgbm.Booster` (or a fitted scikit-learn wrapper's booster)."""
    import lightgbm as lgb

    booster = model if isinstance(model, lgb.Booster) else getattr(model, "booster_", None)
    if not isinstance(booster, lgb.Booster):
        msg = f"nbserve.lightgbm.save_model({name!r}, ...) takes a lightgbm.Booster or a fitted LGBMModel, not a {type(model).__module__}.{type(model).__qualname__}."
        raise InvalidArgument(msg)
    return frameworks.save_files(
        name,
        lambda directory: booster.save_model(str(directory / MODEL_FILENAME)),
        framework=_FRAMEWORK,
        versions={"lightgbm": str(lgb.__version__)},
        **options,
    )


def _load(directory: Path, info: ModelInfo, **kwargs: Any) -> Any:
    import lightgbm as lgb

    return lgb.Booster(model_file=str(directory / MODEL_FILENAME), **kwargs)
