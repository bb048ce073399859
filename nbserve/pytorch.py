"""BentoML's `bentoml.pytorch`: torch modules in nbserve's model store.

```python
model = nbserve.pytorch.save_model("net", net)
net = nbserve.pytorch.load_model("net:latest", device_id="cuda:0")
```
The module is stored as `weights.safetensors` plus a stable pickle of the module without its
tensors (see `nbserve.models`), so the same weights saved from a new kernel keep their
version. `load_model` and `get` also read entries `bentoml.pytorch` wrote into BentoML's
store (a `torch.save` of the whole module). Loading runs pickle: load only entries you trust.
torch is imported only when an entry is loaded.
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

MODEL_FILENAME = "saved_model.pt"  # where bentoml.pytorch puts it
_FRAMEWORK = "pytorch"


def get(tag_like: str | Tag) -> Model:
    """The stored entry for `tag_like`; `NotFound` if it is absent or another module saved it."""
    return frameworks.get(tag_like, _FRAMEWORK)


def load_model(
    bentoml_model: str | Tag | Model, device_id: str | None = "cpu", **torch_load_args: Any
) -> Any:
    """The module saved under `bentoml_model`, its tensors on `device_id`."""
    model = frameworks.as_model(bentoml_model, _FRAMEWORK)
    return model.load(device_id=device_id or "cpu", **torch_load_args)


def save_model(
    name: Tag | str,
    model: Any,
    **options: Unpack[frameworks.SaveOptions],
) -> Model:
    """Store a `torch.nn.Module` and return the entry (`.tag`, `.path`)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        msg = f"nbserve.pytorch.save_model({name!r}, ...) takes a torch.nn.Module, not a {type(model).__module__}.{type(model).__qualname__}; save tensors or state dicts with nbserve.models.save()."
        raise InvalidArgument(msg)
    return frameworks.save(
        name,
        model,
        framework=_FRAMEWORK,
        module="torch",
        **options,
    )


def _load(directory: Path, info: ModelInfo, **kwargs: Any) -> Any:
    device = str(kwargs.pop("device_id", None) or kwargs.pop("device", None) or "cpu")
    if frameworks.is_bentoml(info):
        import torch

        kwargs.setdefault("weights_only", False)  # BentoML stores the whole pickled module
        return torch.load(directory / MODEL_FILENAME, map_location=device, **kwargs)
    if info.options.get("format") == "safetensors":
        return frameworks.load_saved(directory, info, device=device, **kwargs)
    return frameworks.load_saved(directory, info, map_location=device, **kwargs)
