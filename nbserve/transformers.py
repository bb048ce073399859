"""BentoML's `bentoml.transformers`: pipelines, models and tokenizers in the model store.

```python
model = nbserve.transformers.save_model("sentiment", pipe)          # a transformers.Pipeline
pipe = nbserve.transformers.load_model("sentiment:latest")          # the pipeline again
nbserve.transformers.save_model("encoder", AutoModel.from_pretrained(path))
```
Everything is written with `save_pretrained` (weights in safetensors), so the same model
saved from a new kernel keeps its version. A pipeline comes back through
`transformers.pipeline(task, model=<entry dir>)`; a model, tokenizer or processor through its
class's `from_pretrained`. Entries `bentoml.transformers` wrote into BentoML's store load too
(its `v2` layout, BentoML 1.4's: a pipeline comes back as the class BentoML recorded, a model
or tokenizer through the recorded class). transformers is imported only when called; loading
never reaches the Hub (`local_files_only`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
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

_FRAMEWORK = "transformers"
_PRETRAINED_PICKLE = "pretrained.v2.pkl"  # bentoml.transformers' record of the class
_PIPELINE_PICKLE = "pipeline.v2.pkl"  # ... and of a pipeline's class (a subclass stays one)


def get(tag_like: str | Tag) -> Model:
    """The stored entry for `tag_like`; `NotFound` if it is absent or another module saved it."""
    return frameworks.get(tag_like, _FRAMEWORK)


def load_model(bento_model: str | Tag | Model, *args: Any, **kwargs: Any) -> Any:
    """The pipeline, model or tokenizer saved under `bento_model`; `args`/`kwargs` go to
    `from_pretrained` (a model) or `transformers.pipeline` (a pipeline, keywords only)."""
    model = frameworks.as_model(bento_model, _FRAMEWORK)
    model.verify()
    return _load(Path(model.path), model.info, *args, **kwargs)


def save_model(
    name: Tag | str,
    pretrained_or_pipeline: Any = None,
    pipeline: Any = None,
    task_name: str | None = None,
    task_definition: Mapping[str, Any] | None = None,
    **options: Unpack[frameworks.SaveOptions],
) -> Model:
    """Store a `transformers.Pipeline`, or a model/tokenizer/processor, and return the entry."""
    obj = pretrained_or_pipeline if pretrained_or_pipeline is not None else pipeline
    if task_definition is not None:
        msg = f"nbserve.transformers.save_model({name!r}, task_definition=...): custom pipeline tasks are not supported; save the pipeline's model and tokenizer and build the pipeline in the service."
        raise InvalidArgument(msg)
    transformers = sys.modules.get("transformers")
    if transformers is not None and isinstance(obj, transformers.Pipeline):
        versions = {"transformers": str(transformers.__version__)}
        if "torch" in sys.modules:
            versions["torch"] = str(sys.modules["torch"].__version__)
        return frameworks.save_files(
            name,
            lambda directory: obj.save_pretrained(str(directory)),
            framework=_FRAMEWORK,
            versions=versions,
            options={"kind": "pipeline", "task": task_name or obj.task},
            **options,
        )
    if obj is None or transformers is None or not type(obj).__module__.startswith("transformers"):
        msg = f"nbserve.transformers.save_model({name!r}, ...) takes a transformers pipeline, model, tokenizer or processor, not a {type(obj).__module__}.{type(obj).__qualname__}."
        raise InvalidArgument(msg)
    return frameworks.save(
        name,
        obj,
        framework=_FRAMEWORK,
        module="transformers",
        **options,
    )


def _pipeline(directory: Path, task: str, kwargs: dict[str, Any]) -> Any:
    import transformers

    make: Any = transformers.pipeline  # its overloads want a literal task name
    return make(task=task, model=str(directory), **kwargs)


def _load(directory: Path, info: ModelInfo, *args: Any, **kwargs: Any) -> Any:
    options = info.options
    if frameworks.is_bentoml(info):
        import pickle

        if "_pretrained_class" in info.metadata:
            with open(directory / _PRETRAINED_PICKLE, "rb") as f:
                cls = pickle.load(f)
            kwargs.setdefault("local_files_only", True)  # as for nbserve's own entries
            return cls.from_pretrained(str(directory), *args, **kwargs)
        if args:
            msg = "nbserve.transformers.load_model() of a pipeline takes keyword arguments only (they go to transformers.pipeline)."
            raise InvalidArgument(msg)
        given = {**options.get("kwargs", {}), **kwargs}
        # BentoML pickles the pipeline's class (cloudpickle: by value when it was defined in a
        # notebook) and builds that class again; transformers.pipeline alone would build the
        # task's default class, losing a subclass's behaviour. (api_version v1 has no such file.)
        if "pipeline_class" not in given and (directory / _PIPELINE_PICKLE).is_file():
            with open(directory / _PIPELINE_PICKLE, "rb") as f:
                given["pipeline_class"] = pickle.load(f)
        return _pipeline(directory, str(options.get("task")), given)
    if options.get("kind") == "pipeline":
        if args:
            msg = "nbserve.transformers.load_model() of a pipeline takes keyword arguments only (they go to transformers.pipeline)."
            raise InvalidArgument(msg)
        return _pipeline(directory, str(options["task"]), kwargs)
    if args:
        msg = "nbserve.transformers.load_model() passes keyword arguments to from_pretrained; give them by name."
        raise InvalidArgument(msg)
    return frameworks.load_saved(directory, info, **kwargs)
