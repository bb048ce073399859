"""`bento.yaml`: what a bento is, for `nbserve inspect`, the loader and BentoML-minded readers.

Fields follow BentoML's `bento.yaml` (spec 2) where they mean the same thing: `service`
("service:<variable>"), `name`, `version`, `labels`, `models`, `entry_service`, `services`,
`envs`, `schema`, `image`; nbserve adds `nbserve_version` and `python` (version, pinned
requirements, bundled wheels). There is no `creation_time` (see `archive.py`). Every value is
plain data and written in a fixed order, so the file is reproducible.

Which models: the store entries the service class, and every service it `depends` on, holds
as attributes (`BentoModel("iris")`, `nbserve.models.get("iris")`), plus any tag the source
passes as a literal to `models.get(...)` or `BentoModel(...)` elsewhere (in `__init__`, say),
resolved in the store at build time, so `iris:latest` becomes the concrete version the archive
carries. `HuggingFaceModel` attributes are packed as entries too (see `huggingface.py`) and
listed as BentoML lists them, with `registry: huggingface`.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nbserve._version import __version__

if TYPE_CHECKING:
    from nbserve._bento.requirements import Requirements
    from nbserve._models.huggingface import PackedModel
    from nbserve._models.model import Model
    from nbserve._sdk.service import Service

__all__ = ["bento_info", "bento_name", "model_tags", "referenced_models", "service_closure"]

_MODEL_CALLS = frozenset({"get", "BentoModel", "get_model", "load_model"})
# BentoML's framework modules: `bentoml.sklearn.load_model("iris:latest")` names a model too.
_FRAMEWORKS = frozenset(
    {"models", "sklearn", "pytorch", "transformers", "xgboost", "lightgbm", "picklable_model"}
)


def bento_name(service: Service[Any]) -> str:
    """`IrisClassifier` → `iris_classifier`, made a valid tag part."""
    name = re.sub(r"[^a-z0-9_.-]+", "_", service.bento_name).strip("_.-")
    return name or "service"


def model_tags(source: str) -> list[str]:
    """Literal tags passed to `models.get("...")` / `BentoModel("...")` in the source."""
    tags: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        called = (
            func.attr
            if isinstance(func, ast.Attribute)
            else func.id
            if isinstance(func, ast.Name)
            else None
        )
        # `nbserve.models.get`, `bentoml.models.get`, `models.get`, `bentoml.sklearn.get`;
        # not `self.models.get`.
        owner = func.value if isinstance(func, ast.Attribute) else None
        via_models = (isinstance(owner, ast.Name) and owner.id == "models") or (
            isinstance(owner, ast.Attribute)
            and owner.attr in _FRAMEWORKS
            and isinstance(owner.value, ast.Name)
            and owner.value.id in ("nbserve", "bentoml")
        )
        arg = node.args[0]
        if (
            called in _MODEL_CALLS
            and (called not in ("get", "load_model") or via_models)
            and isinstance(arg, ast.Constant)
            and isinstance(arg.value, str)
        ):
            tags.append(arg.value)
    return list(dict.fromkeys(tags))


def service_closure(service: Service[Any]) -> list[Service[Any]]:
    """The service and every service it `depends(on=...)`, transitively, each once."""
    seen: dict[int, Service[Any]] = {}
    pending = [service]
    while pending:
        svc = pending.pop(0)
        if id(svc) in seen:
            continue
        seen[id(svc)] = svc
        pending += [d.on for d in svc.dependencies.values() if d.on is not None]
    return list(seen.values())


def referenced_models(service: Service[Any], source: str) -> list[Model]:
    """The store entries the archive must carry, each once, in a stable order."""
    from nbserve._models.model import referenced_models as class_models
    from nbserve._models.store import resolve

    found: dict[tuple[str, str], Model] = {}
    for svc in service_closure(service):  # a dependency served in-process loads its models here
        for model in class_models(svc.inner):
            found.setdefault((model.name, model.version), model)
    for tag in model_tags(source):
        model = resolve(tag)  # nbserve's store, else BentoML's (as the service will find it)
        found.setdefault((model.name, model.version), model)
    return [found[key] for key in sorted(found)]


def _plain(value: Any) -> Any:
    """YAML-safe data; an object becomes its type's name (never a repr with an address)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # images.Image
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=repr)
    cls = type(value)
    return f"<{cls.__module__}.{cls.__qualname__}>"


def _dependencies(service: Service[Any]) -> list[dict[str, str]]:
    out = []
    for dep in service.dependencies.values():
        out.append(
            {"url": dep.url} if dep.url is not None else {"service": dep.on.name if dep.on else ""}
        )
    return out


def bento_info(
    service: Service[Any],
    *,
    name: str,
    version: str,
    variable: str,
    models: list[Model],
    requirements: Requirements,
    wheel: str | None,
    packed: Sequence[PackedModel] = (),
) -> dict[str, Any]:
    """The bento.yaml mapping, keys in BentoML's order. A packed `HuggingFaceModel` is listed
    as BentoML lists one (`registry: huggingface`, the reference as metadata)."""
    from nbserve._bento.deploy import dockerfile_base_image

    config = service.config
    tags = [str(m.tag) for m in models] + [str(p.info.tag) for p in packed]
    return {
        "service": f"service:{variable}",
        "name": name,
        "version": version,
        "nbserve_version": __version__,
        "labels": dict(config.labels),
        "models": [
            {
                "tag": str(m.tag),
                "module": m.info.module,
                "alias": None,
                "registry": "nbserve",
                "metadata": _plain(m.info.metadata),
            }
            for m in models
        ]
        + [
            {
                "tag": str(p.info.tag),
                "module": p.info.module,
                "alias": None,
                "registry": "huggingface",
                "metadata": _plain(p.info.metadata),
            }
            for p in packed
        ],
        "entry_service": service.name,
        "services": [
            {
                "name": service.name,
                "service": "",
                "models": tags,
                "dependencies": _dependencies(service),
                "config": _plain(config.raw),
            }
        ],
        "envs": [dict(e) for e in config.envs],
        "schema": _plain(service.schema()),
        "spec": 2,
        "image": {
            "base_image": dockerfile_base_image(config, requirements.python_version),
            "python_version": ".".join(requirements.python_version.split(".")[:2]),
            "python_requirements": requirements.text,
        },
        "python": {
            "version": requirements.python_version,
            "requirements": list(requirements.lines),
            "wheels": [wheel] if wheel else [],
        },
    }
