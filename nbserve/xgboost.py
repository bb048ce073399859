"""BentoML's `bentoml.xgboost`: XGBoost boosters and scikit-learn wrappers in the model store.

```python
model = nbserve.xgboost.save_model("churn", booster)    # or an XGBClassifier
booster = nbserve.xgboost.load_model("churn:latest")
```
Stored with XGBoost's own `save_model` as `saved_model.ubj` (BentoML's layout), the class
recorded in `options["model_class"]`; `load_model` returns the same class. Entries
`bentoml.xgboost` wrote into BentoML's store load the same way. xgboost is imported only
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
_FRAMEWORK = "xgboost"


def get(tag_like: str | Tag) -> Model:
    """The stored entry for `tag_like` (any module's, as in BentoML; `load_model` checks)."""
    return frameworks.get(tag_like, _FRAMEWORK)


def load_model(bento_model: str | Tag | Model) -> Any:
    """The `xgboost.Booster` (or `XGBModel` subclass) saved under `bento_model`."""
    return frameworks.as_model(bento_model, _FRAMEWORK).load()


def save_model(
    name: Tag | str,
    model: Any,
    **options: Unpack[frameworks.SaveOptions],
) -> Model:
    """Store an `xgboost.Booster` or a fitted `XGBModel` and return the entry."""
    import xgboost as xgb

    if isinstance(model, xgb.Booster):
        model_class = "Booster"
    elif isinstance(model, getattr(xgb, "XGBModel", ())):
        model_class = type(model).__name__
    else:
        msg = f"nbserve.xgboost.save_model({name!r}, ...) takes an xgboost.Booster or XGBModel, not a {type(model).__module__}.{type(model).__qualname__}."
        raise InvalidArgument(msg)
    return frameworks.save_files(
        name,
        lambda directory: model.save_model(str(directory / MODEL_FILENAME)),
        framework=_FRAMEWORK,
        versions={"xgboost": str(xgb.__version__)},
        options={"model_class": model_class},
        **options,
    )


def _load(directory: Path, info: ModelInfo, **kwargs: Any) -> Any:
    import xgboost as xgb

    path = str(directory / MODEL_FILENAME)
    model_class = str(info.options.get("model_class") or "Booster")
    if frameworks.is_bentoml(info) and info.api_version == "v1":
        return xgb.Booster(model_file=path)  # BentoML's first layout: always a Booster
    cls = getattr(xgb, model_class, None)
    if cls is None:
        msg = f"Model '{info.name}:{info.version}' is an xgboost.{model_class}, which this xgboost does not have (scikit-learn wrappers need scikit-learn installed)."
        raise InvalidArgument(msg)
    model = cls(**kwargs)
    model.load_model(path)
    return model
