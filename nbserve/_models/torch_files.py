"""torch objects as canonical files: tensors in safetensors, the rest in a stable pickle.

`torch.save` cannot give a stable model version: a module's pickle (`data.pkl`) holds
`_non_persistent_buffers_set`, a set in hash-seed order, the archive's serialization id
follows from those bytes, and the archive's inner folder is named after the file. So:

- a tensor tree (a state dict, or tensors in plain dicts/lists/tuples) becomes
  `weights.safetensors` plus `tree.json`, its shape (containers, keys, scalars, which
  tensors are parameters or need grad, a state dict's `_metadata`). Loading runs no pickle.
  A flat state dict keeps its own keys, so the file is an ordinary safetensors state dict.
- an `nn.Module` becomes `weights.safetensors` (its state dict names where it has them) plus
  `module.pkl`, the module with every tensor replaced by a reference into the weights file
  (pickle's persistent ids), written by `pickling.StablePickler`. Tied parameters stay tied.

Tensors that safetensors cannot hold (sparse, quantized, meta, tensor subclasses other than
`Parameter`) raise `Unsupported`; the caller then falls back to `torch.save` and warns.
Tensors are written from the CPU and load on the CPU unless `map_location`/`device` says
otherwise.
"""

from __future__ import annotations

import importlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from nbserve._models import pickling

__all__ = [
    "WEIGHTS",
    "Unsupported",
    "load_module",
    "load_tree",
    "save_module",
    "save_tree",
]

WEIGHTS = "weights.safetensors"
TREE = "tree.json"
MODULE = "module.pkl"


class Unsupported(Exception):
    """A tensor safetensors cannot store; `str()` says which and why."""


def _torch() -> Any:
    return importlib.import_module("torch")


class _Weights:
    """Tensors collected for one safetensors file: one key per distinct tensor."""

    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}
        self._by_alias: dict[tuple[Any, ...], str] = {}
        self._storages: set[tuple[str, int]] = set()

    def add(self, tensor: Any, name: str) -> str:
        torch = _torch()
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
            msg = f"tensor '{name}' is a {type(tensor).__qualname__}, a tensor subclass"
            raise Unsupported(msg)
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
            msg = f"tensor '{name}' is {'quantized' if tensor.is_quantized else tensor.layout if tensor.layout != torch.strided else 'on the meta device'}"
            raise Unsupported(msg)
        try:
            storage = (str(tensor.device), tensor.untyped_storage().data_ptr())
        except (RuntimeError, NotImplementedError) as exc:  # e.g. functional/fake tensors
            msg = f"tensor '{name}' has no plain storage ({exc})"
            raise Unsupported(msg) from exc
        alias = (
            *storage,
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
            tensor.dtype,
        )
        if alias in self._by_alias:  # the same tensor again (tied weights): one copy, one key
            return self._by_alias[alias]
        data = tensor.detach().to("cpu").contiguous()
        if storage in self._storages and tensor.numel():
            data = data.clone()  # a different view of stored memory: safetensors wants its own
        self._storages.add(storage)
        key = name
        while key in self.tensors:
            key = f"{name}~{len(self.tensors)}"
        self.tensors[key] = data
        self._by_alias[alias] = key
        return key

    def write(self, directory: Path) -> None:
        from safetensors.torch import save_file

        save_file(self.tensors, str(directory / WEIGHTS))


def _device(kwargs: dict[str, Any]) -> str:
    where = kwargs.pop("device", None) or kwargs.pop("map_location", None) or "cpu"
    if kwargs:
        msg = f"load() of a safetensors torch entry takes only device= (or map_location=), not {', '.join(sorted(kwargs))}."
        raise TypeError(msg)
    return str(where)


def _read_weights(directory: Path, device: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(directory / WEIGHTS), device=device)


# -- tensor trees -----------------------------------------------------------------------------


def save_tree(obj: Any, directory: Path) -> None:
    """Write a tensor tree (what `savers._is_tensor_tree` accepts) as safetensors + JSON."""
    torch = _torch()
    weights = _Weights()
    flat = type(obj) in (dict, OrderedDict) and all(
        type(k) is str and isinstance(v, torch.Tensor) for k, v in obj.items()
    )

    def encode(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            node: dict[str, Any] = {"tensor": weights.add(value, path or "tensor")}
            if type(value) is torch.nn.Parameter:
                node["parameter"] = True
            if value.requires_grad:
                node["requires_grad"] = True
            return node
        if isinstance(value, dict):
            items = [
                [k, encode(v, k if flat else f"{path}.{k}".lstrip("."))] for k, v in value.items()
            ]
            node = {"dict": items, "ordered": type(value) is OrderedDict}
            meta = getattr(value, "_metadata", None)  # load_state_dict reads module versions here
            if meta is not None:
                node["metadata"] = json.loads(json.dumps(meta))
            return node
        if isinstance(value, (list, tuple)):
            kind = "list" if isinstance(value, list) else "tuple"
            return {kind: [encode(v, f"{path}.{i}".lstrip(".")) for i, v in enumerate(value)]}
        return {"value": value}

    tree = encode(obj, "")
    weights.write(directory)
    (directory / TREE).write_text(json.dumps(tree, sort_keys=True, indent=1) + "\n", "utf-8")


def load_tree(directory: Path, **kwargs: Any) -> Any:
    torch = _torch()
    tensors = _read_weights(directory, _device(kwargs))
    made: dict[str, Any] = {}

    def decode(node: dict[str, Any]) -> Any:
        if "tensor" in node:
            key = node["tensor"]
            if key not in made:
                tensor = tensors[key]
                if node.get("parameter"):
                    tensor = torch.nn.Parameter(
                        tensor, requires_grad=bool(node.get("requires_grad"))
                    )
                elif node.get("requires_grad"):
                    tensor.requires_grad_(True)
                made[key] = tensor
            return made[key]
        if "dict" in node:
            out: dict[Any, Any] = OrderedDict() if node.get("ordered") else {}
            for key, value in node["dict"]:
                out[key] = decode(value)
            if "metadata" in node:
                out._metadata = node["metadata"]  # type: ignore[attr-defined]
            return out
        if "list" in node:
            return [decode(v) for v in node["list"]]
        if "tuple" in node:
            return tuple(decode(v) for v in node["tuple"])
        return node["value"]

    tree = json.loads((directory / TREE).read_text("utf-8"))
    return decode(tree)


# -- modules ------------------------------------------------------------------------------------


def save_module(module: Any, directory: Path) -> list[str]:
    """Write an `nn.Module`; returns why its version may still change (see `pickling`)."""
    torch = _torch()
    weights = _Weights()
    try:  # state-dict names make the weights file readable as a state dict elsewhere
        names = {id(t): n for n, t in module.state_dict(keep_vars=True).items()}
    except Exception:  # a module whose state_dict() hooks fail: numbered names will do
        names = {}

    def tensor_id(obj: Any) -> Any:
        if not isinstance(obj, torch.Tensor):
            return None
        key = weights.add(obj, names.get(id(obj), f"_tensor{len(weights.tensors)}"))
        kind = "parameter" if type(obj) is torch.nn.Parameter else "tensor"
        return ("nbserve.tensor", key, kind, bool(obj.requires_grad))

    data, problems = pickling.stable_dumps(module, tensor_id)
    weights.write(directory)
    (directory / MODULE).write_bytes(data)
    return problems


def load_module(directory: Path, **kwargs: Any) -> Any:
    torch = _torch()
    tensors = _read_weights(directory, _device(kwargs))
    made: dict[str, Any] = {}

    def tensor_load(pid: Any) -> Any:
        _, key, kind, requires_grad = pid
        if key not in made:  # one object per key: tied parameters stay one Parameter
            tensor = tensors[key]
            if kind == "parameter":
                tensor = torch.nn.Parameter(tensor, requires_grad=requires_grad)
            elif requires_grad:
                tensor.requires_grad_(True)
            made[key] = tensor
        return made[key]

    with open(directory / MODULE, "rb") as f:
        return pickling.stable_load(f, tensor_load)
