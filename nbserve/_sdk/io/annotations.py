"""Reading an API's type hints: which wire form each type takes, and attaching nbserve's
pydantic markers (`TensorSchema`, `DataframeSchema`, `FileSchema`, `ImageSchema`) to the types
pydantic cannot handle on its own.

pandas, torch and PIL are optional: a type is recognised by its module name first, and the
library is imported only when an annotation names it, so `import nbserve` never pays for them.
"""

from __future__ import annotations

import collections.abc
import copy
import types
import typing
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, create_model

from nbserve.exceptions import ServiceDefinitionError
from nbserve.validators import ContentType, DataframeSchema, DType, FileSchema, Shape, TensorSchema

__all__ = [
    "Kind",
    "content_type_of",
    "is_file_annotation",
    "is_list_annotation",
    "is_str_annotation",
    "kind_of",
    "patch_model",
    "prepare",
    "split_annotated",
]

# The wire form of a value: raw text, raw bytes, a file, a PIL image, or JSON.
Kind = Literal["text", "bytes", "file", "image", "json"]

# Containers whose item types are rewritten in place; any other generic is left to pydantic.
_CONTAINERS: frozenset[Any] = frozenset(
    {
        list,
        tuple,
        dict,
        set,
        frozenset,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Mapping,
        collections.abc.MutableMapping,
        collections.abc.Set,
        collections.abc.Iterable,
    }
)
_UNION_ORIGINS: frozenset[Any] = frozenset({Union, types.UnionType})


def split_annotated(annotation: Any) -> tuple[Any, list[Any]]:
    """`Annotated[T, a, b]` -> `(T, [a, b])`; anything else -> `(annotation, [])`."""
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return base, list(metadata)
    return annotation, []


def _module_of(tp: Any) -> str:
    origin = get_origin(tp) or tp
    return getattr(origin, "__module__", None) or ""


def _is_subclass(tp: Any, parent: type) -> bool:
    return isinstance(tp, type) and issubclass(tp, parent)


def is_ndarray(tp: Any) -> bool:
    if not _module_of(tp).startswith("numpy"):
        return False
    import numpy as np

    return (get_origin(tp) or tp) is np.ndarray


def is_torch_tensor(tp: Any) -> bool:
    if not _module_of(tp).startswith("torch"):
        return False
    import torch

    return _is_subclass(tp, torch.Tensor)


def is_dataframe(tp: Any) -> bool:
    if not _module_of(tp).startswith("pandas"):
        return False
    import pandas as pd

    return _is_subclass(tp, pd.DataFrame)


def is_pil_image(tp: Any) -> bool:
    if not _module_of(tp).startswith("PIL"):
        return False
    from PIL import Image

    return _is_subclass(tp, Image.Image)


def is_path(tp: Any) -> bool:
    return _is_subclass(tp, PurePath)


def content_type_of(metadata: list[Any]) -> str | None:
    """The `ContentType(...)` among `Annotated` metadata, if any."""
    for item in metadata:
        if isinstance(item, ContentType):
            return item.content_type
    return None


def _bare(annotation: Any) -> Any:
    """The type itself: `Annotated` metadata dropped, `Optional[X]` -> `X` (other unions
    unchanged), and `Annotated` inside the `Optional` dropped too."""
    tp = split_annotated(annotation)[0]
    if get_origin(tp) in _UNION_ORIGINS:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            tp = args[0]
    return split_annotated(tp)[0]


def kind_of(annotation: Any) -> Kind:
    """How a root input or an output of this type travels (Annotated metadata ignored)."""
    tp, _ = split_annotated(annotation)
    if tp is str:
        return "text"
    if tp is bytes:
        return "bytes"
    if is_path(tp):
        return "file"
    if is_pil_image(tp):
        return "image"
    return "json"


def is_file_annotation(annotation: Any) -> bool:
    """True for `Path`/PIL types, also inside `Optional[...]` and `list[...]` (a multipart
    field), as BentoML's multipart detection does."""
    tp = _bare(annotation)
    if get_origin(tp) in (list, collections.abc.Sequence, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if len(args) != 1:
            return False
        tp = split_annotated(args[0])[0]
    return is_path(tp) or is_pil_image(tp)


def is_list_annotation(annotation: Any) -> bool:
    """True for `list[...]`-like inputs (also `Optional`): repeated form values make a list."""
    tp = _bare(annotation)
    return tp in (list, tuple, set) or get_origin(tp) in (
        list,
        tuple,
        set,
        frozenset,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Set,
    )


def is_str_annotation(annotation: Any) -> bool:
    """True for `str` and `Optional[str]`: a form value for it is taken verbatim."""
    return _bare(annotation) is str


def prepare(annotation: Any) -> Any:
    """Return `annotation` with a pydantic marker attached to every nbserve type inside it
    (through `Optional`, unions, lists, tuples and dicts), ready for a `TypeAdapter`."""
    base, metadata = split_annotated(annotation)
    origin = get_origin(base)
    if origin in _UNION_ORIGINS:
        base = Union[tuple(prepare(a) for a in get_args(base))]  # noqa: UP007 - built from a tuple
    elif origin in _CONTAINERS and get_args(base):
        args = tuple(a if a is Ellipsis else prepare(a) for a in get_args(base))
        base = origin[args]
    else:
        marker, metadata = _marker_for(base, metadata)
        if marker is not None:
            metadata = [marker, *metadata]
    if not metadata:
        return base
    return Annotated[(base, *metadata)]


def _marker_for(tp: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """The marker for a leaf type and the metadata left once its own options are consumed."""
    if any(isinstance(m, TensorSchema | DataframeSchema | FileSchema) for m in metadata):
        return None, metadata  # the user chose the marker themselves
    shape = next((m.dimensions for m in metadata if isinstance(m, Shape)), None)
    dtype = next((m.dtype for m in metadata if isinstance(m, DType)), None)
    content_type = content_type_of(metadata)
    rest = [m for m in metadata if not isinstance(m, Shape | DType | ContentType)]
    if is_path(tp):
        return FileSchema(content_type=content_type), rest
    if is_ndarray(tp):
        declared = _ndarray_dtype(tp)
        if dtype is not None and declared is not None and _dtype_name(dtype) != declared:
            msg = f"Annotated[NDArray[{declared}], DType({dtype!r})] contradicts itself: the type says {declared}, the validator {dtype}; keep one, e.g. Annotated[np.ndarray, DType({dtype!r})] or NDArray[np.{declared}]"
            raise ServiceDefinitionError(msg)
        return TensorSchema("numpy-array", dtype or declared, shape), rest
    if is_torch_tensor(tp):
        return TensorSchema("torch-tensor", dtype, shape), rest
    if is_dataframe(tp):
        return DataframeSchema(), rest
    if is_pil_image(tp):
        from nbserve._sdk.io.files import ImageSchema

        return ImageSchema(content_type), rest
    return None, metadata


def _dtype_name(dtype: str) -> str:
    """`DType("float")` and `DType("float64")` name the same numpy dtype."""
    import numpy as np

    try:
        return str(np.dtype(dtype).name)
    except TypeError:
        return dtype  # not a numpy name: the tensor layer reports it


def _ndarray_dtype(tp: Any) -> str | None:
    """The dtype of `npt.NDArray[np.float32]` (`np.ndarray[Any, np.dtype[np.float32]]`)."""
    import numpy as np

    args = get_args(tp)
    if len(args) != 2:
        return None
    scalar = get_args(args[1])
    if len(scalar) != 1 or scalar[0] is typing.Any:
        return None
    try:
        return str(np.dtype(scalar[0]).name)
    except TypeError:
        return None


def patch_model(model: type[BaseModel]) -> type[BaseModel]:
    """`model`, or a subclass of it whose `Path`/array/DataFrame/image fields use nbserve's
    types, as BentoML patches an explicit `input_spec` (pydantic alone would read a `Path`
    field from a string: a path on the server)."""
    overrides: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        full = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        prepared = prepare(full)
        if prepared != full:
            plain = copy.copy(info)
            plain.metadata = []  # consumed by `prepare` (Shape, DType, ContentType) or kept in it
            overrides[name] = (prepared, plain)
    if not overrides:
        return model
    patched: type[BaseModel] = create_model(
        model.__name__, __base__=model, __module__=model.__module__, **overrides
    )
    return patched
