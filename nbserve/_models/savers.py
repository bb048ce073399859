"""How `save(name, obj)` turns an object into files, and how `Model.load()` turns them back.

| object                                   | module        | files                         | load                        |
|------------------------------------------|---------------|-------------------------------|-----------------------------|
| numpy array (no object dtype)            | numpy         | array.npy                     | np.load(allow_pickle=False) |
| torch tensor / state dict (tensor tree)  | torch         | weights.safetensors, tree.json| safetensors (no pickle)     |
| torch nn.Module                          | torch         | weights.safetensors, module.pkl | stable pickle + safetensors |
| torch.export.ExportedProgram             | torch         | model.pt2                     | torch.export.load           |
| torch.jit.ScriptModule (deprecated)      | torch         | model.pt                      | torch.jit.load              |
| sentence_transformers.SentenceTransformer| sentence_transformers | model.save()          | SentenceTransformer(path)   |
| transformers model/tokenizer/processor,  | transformers  | save_pretrained()             | <recorded class>.from_pretrained |
|   or a dict of them ({"model", "tokenizer"}) |           | one dir per key               |   (a dict back)             |
| anything else (e.g. scikit-learn)        | cloudpickle   | model.pkl                     | pickle                      |

**Same object, same bytes, same version**, from any process: numpy's format, safetensors,
`save_pretrained`/`save` (model cards, which carry dates, are not written) and the stable
pickles of `pickling.py` (fixed protocol, sets sorted) are deterministic; `torch.save` is
not (sets in hash-seed order inside its pickle), so tensors and modules go through
`torch_files.py`.
What cannot be made stable warns once with an `UnstableVersionWarning` that names the object
and why: a class or function defined in a notebook (cloudpickle writes it by value with a
per-process id), TorchScript archives, and exotic tensors (sparse,
quantized) that fall back to `torch.save`.

A whole `nn.Module` keeps its class by value when it was defined in a notebook, so `load()`
returns a ready module without its source being importable. The price is that loading it,
like loading a cloudpickle entry, runs pickle: load only entries you trust. Verification
proves an entry is unchanged since it was saved, not who saved it. For untrusted sources save
a state dict instead (`save(name, net.state_dict())`), which loads without pickle.

Entries written before the stable formats (`weights.pt`, a `torch.save`d `model.pt`) still
load. Frameworks are looked up in `sys.modules` rather than imported: an object can only be
a torch tensor if torch is already imported, so `import nbserve.models` and saving a numpy
array never pay for importing torch or transformers.
"""

from __future__ import annotations

import importlib
import sys
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbserve._bento.tag import is_valid_part
from nbserve._models import pickling, torch_files
from nbserve.exceptions import InvalidArgument, NbserveError

if TYPE_CHECKING:
    from nbserve._models.model import ModelInfo

__all__ = ["Saved", "load_object", "save_object"]

MODULES = ("numpy", "torch", "transformers", "sentence_transformers", "cloudpickle")


@dataclass(frozen=True)
class Saved:
    module: str
    options: dict[str, Any]
    framework_versions: dict[str, str]
    # Why saving the same object from a new process would give other bytes (empty: it won't).
    unstable: list[str] = field(default_factory=list)


def _version_of(module_name: str) -> dict[str, str]:
    module = sys.modules.get(module_name)
    version = getattr(module, "__version__", None)
    return {module_name: str(version)} if version is not None else {}


# -- detection -------------------------------------------------------------------------------


def _hf_component(obj: object) -> dict[str, str] | None:
    """`{"class", "class_module"}` for a transformers object that round-trips through
    `save_pretrained` / `from_pretrained` (models, tokenizers, processors, configs)."""
    cls = type(obj)
    if cls.__module__.split(".")[0] != "transformers":
        return None
    if not (
        callable(getattr(obj, "save_pretrained", None))
        and callable(getattr(cls, "from_pretrained", None))
    ):
        return None
    return {"class": cls.__name__, "class_module": cls.__module__}


def _hf_bundle(obj: object) -> dict[str, dict[str, str]] | None:
    if not isinstance(obj, Mapping) or not obj:
        return None
    parts = {key: _hf_component(value) for key, value in obj.items()}
    if not all(isinstance(key, str) and is_valid_part(key) and part for key, part in parts.items()):
        return None
    return {key: part for key, part in parts.items() if part is not None}


def _torch_kind(obj: object) -> str | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    export = sys.modules.get("torch.export")
    if export is not None and isinstance(obj, export.ExportedProgram):
        return "exported"
    if isinstance(obj, torch.jit.ScriptModule):
        return "torchscript"
    if isinstance(obj, torch.nn.Module):
        return "module"
    return "tensors" if _is_tensor_tree(obj, torch.Tensor) else None


def _is_tensor_tree(obj: object, tensor: type) -> bool:
    """Tensors in plain dicts/lists/tuples (a state dict): what `weights_only=True` loads."""
    found = False

    def walk(value: object) -> bool:
        nonlocal found
        if isinstance(value, tensor):
            found = True
            return True
        if value is None or type(value) in (str, int, float, bool):
            return True
        if type(value) in (dict, OrderedDict):
            assert isinstance(value, dict)
            return all(type(k) in (str, int) and walk(v) for k, v in value.items())
        if type(value) in (list, tuple):
            assert isinstance(value, (list, tuple))
            return all(walk(v) for v in value)
        return False

    return walk(obj) and found


def _is_plain_ndarray(obj: object) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray) and not obj.dtype.hasobject


def _is_sentence_transformer(obj: object) -> bool:
    st = sys.modules.get("sentence_transformers")
    return st is not None and isinstance(obj, st.SentenceTransformer)


def _detect(obj: object) -> str:
    if _is_sentence_transformer(obj):
        return "sentence_transformers"  # before torch: it is an nn.Module too
    if _hf_component(obj) or _hf_bundle(obj):
        return "transformers"  # before torch: a transformers model is also an nn.Module
    if _torch_kind(obj):
        return "torch"
    if _is_plain_ndarray(obj):
        return "numpy"
    return "cloudpickle"


# -- saving ------------------------------------------------------------------------------------


def save_object(obj: object, directory: Path, module: str | None = None) -> Saved:
    """Write `obj` into `directory`; `module` forces a format (one of MODULES)."""
    kind = _detect(obj) if module is None else module
    if kind not in MODULES:
        msg = f"save(..., module={module!r}) is not a format nbserve knows; use one of {', '.join(MODULES)}, or leave it out to pick by type."
        raise InvalidArgument(msg)
    if kind != "cloudpickle" and _detect(obj) != kind:
        msg = f"save(..., module={kind!r}) cannot store a {type(obj).__module__}.{type(obj).__qualname__}; leave module out to pick the format by type, or use module='cloudpickle'."
        raise InvalidArgument(msg)
    if kind == "numpy":
        import numpy as np

        array: Any = obj
        np.save(directory / "array.npy", array, allow_pickle=False)
        return Saved("numpy", {}, _version_of("numpy"))
    if kind == "torch":
        return _save_torch(obj, directory)
    if kind == "transformers":
        return _save_transformers(obj, directory)
    if kind == "sentence_transformers":
        # No model card: it is generated text (dates, training details) that would change
        # the version; the model itself does not need it to load.
        obj.save(str(directory), create_model_card=False)  # type: ignore[attr-defined]
        versions = {
            **_version_of("sentence_transformers"),
            **_version_of("transformers"),
            **_version_of("torch"),
        }
        return Saved("sentence_transformers", {}, versions)
    return save_pickle(obj, directory / "model.pkl")


def save_pickle(obj: object, path: Path) -> Saved:
    """`obj` as a stable cloudpickle at `path` (see `pickling.py`)."""
    import cloudpickle

    data, unstable = pickling.stable_dumps(obj)
    path.write_bytes(data)
    # The version of the package the object's class comes from (e.g. sklearn) helps a reader
    # know what `load()` will need installed.
    versions = {"cloudpickle": str(cloudpickle.__version__)}
    versions.update(_version_of(type(obj).__module__.split(".")[0]))
    return Saved("cloudpickle", {}, versions, unstable)


def _save_torch(obj: object, directory: Path) -> Saved:
    kind = _torch_kind(obj)
    versions = _version_of("torch")
    try:
        if kind == "module":
            unstable = torch_files.save_module(obj, directory)
            return Saved("torch", {"kind": kind, "format": "safetensors"}, versions, unstable)
        if kind == "tensors":
            torch_files.save_tree(obj, directory)
            return Saved("torch", {"kind": kind, "format": "safetensors"}, versions)
    except torch_files.Unsupported as exc:
        for child in directory.iterdir():  # start over in torch's own format
            child.unlink()
        reason = f"{exc}, which safetensors cannot store, so it is written with torch.save, whose archive is not byte-stable across processes"
        _torch_save(obj, directory, kind)
        return Saved("torch", {"kind": kind}, versions, [reason])
    _torch_save(obj, directory, kind)
    if kind == "exported":  # torch.export's archive is deterministic (checked across processes)
        return Saved("torch", {"kind": kind}, versions)
    return Saved(
        "torch",
        {"kind": kind},
        versions,
        [
            "TorchScript archives are not byte-stable across processes (the generated code, and with it the serialization id, depends on the hash seed); save the module or its state_dict() instead for a stable version"
        ],
    )


def _torch_save(obj: object, directory: Path, kind: str | None) -> None:
    import cloudpickle

    torch: Any = importlib.import_module("torch")
    if kind == "exported":
        torch.export.save(obj, directory / "model.pt2")
    elif kind == "torchscript":
        torch.jit.save(obj, str(directory / "model.pt"))
    elif kind == "module":
        torch.save(obj, directory / "model.pt", pickle_module=cloudpickle)
    else:
        torch.save(obj, directory / "weights.pt")


def _save_transformers(obj: object, directory: Path) -> Saved:
    versions = {**_version_of("transformers"), **_version_of("torch")}
    single = _hf_component(obj)
    if single is not None:
        obj.save_pretrained(str(directory))  # type: ignore[attr-defined]
        return Saved("transformers", single, versions)
    bundle = _hf_bundle(obj)
    assert bundle is not None
    assert isinstance(obj, Mapping)
    for key in bundle:
        (directory / key).mkdir()
        obj[key].save_pretrained(str(directory / key))
    return Saved("transformers", {"components": bundle}, versions)


# -- loading -----------------------------------------------------------------------------------


def load_object(directory: Path, info: ModelInfo, **kwargs: Any) -> Any:
    """The object stored in `directory` by `save_object`, as `info.module` says."""
    module, options = info.module, info.options
    if module == "numpy":
        import numpy as np

        return np.load(directory / "array.npy", allow_pickle=False, **kwargs)
    if module == "torch":
        if options.get("format") == "safetensors":
            if options.get("kind") == "module":
                return torch_files.load_module(directory, **kwargs)
            return torch_files.load_tree(directory, **kwargs)
        torch: Any = importlib.import_module("torch")
        if options.get("kind") == "exported":
            return importlib.import_module("torch.export").load(directory / "model.pt2", **kwargs)
        kwargs.setdefault("map_location", "cpu")  # a GPU-saved model still loads on a CPU box
        if options.get("kind") == "torchscript":
            return torch.jit.load(str(directory / "model.pt"), **kwargs)
        if options.get("kind") == "module":
            return torch.load(directory / "model.pt", weights_only=False, **kwargs)
        return torch.load(directory / "weights.pt", weights_only=True, **kwargs)
    if module == "transformers":
        if "components" in options:
            return {
                key: _from_pretrained(directory / key, part, kwargs)
                for key, part in options["components"].items()
            }
        return _from_pretrained(directory, options, kwargs)
    if module == "sentence_transformers":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(directory), **{"local_files_only": True, **kwargs})
    if module == "cloudpickle":
        with open(directory / "model.pkl", "rb") as f:
            return pickling.stable_load(f)
    if module.startswith(("nbserve.", "bentoml.")):
        from nbserve._models import frameworks

        return frameworks.load_entry(directory, info, **kwargs)
    msg = f"Model '{info.name}:{info.version}' was written with nbserve.models.create(module={module!r}), so it holds files, not a saved object: read them from model.path instead of calling load()."
    raise NbserveError(msg)


def _from_pretrained(directory: Path, part: Mapping[str, Any], kwargs: dict[str, Any]) -> Any:
    try:
        cls = getattr(importlib.import_module(str(part["class_module"])), str(part["class"]))
    except (ImportError, AttributeError) as exc:
        msg = f"Cannot load the transformers class {part.get('class')!r} from {part.get('class_module')!r} ({exc}); install the transformers version the model was saved with (see model.info.context.framework_versions)."
        raise NbserveError(msg) from exc
    # A local directory never needs the Hub; say so, so a typo cannot turn into a download.
    return cls.from_pretrained(str(directory), **{"local_files_only": True, **kwargs})
