"""Annotations that refine an API's input and output types, as in BentoML's `validators`.

Use them inside `typing.Annotated`:

```python
@nbserve.api
def classify(self, x: Annotated[np.ndarray, Shape((-1, 4)), DType("float32")]) -> np.ndarray: ...

@nbserve.api
def ocr(self, page: Annotated[Path, ContentType("image/*")]) -> Annotated[str, ContentType("text/html")]: ...

@nbserve.api
def score(self, df: Annotated[pd.DataFrame, DataframeSchema(orient="columns")]) -> pd.DataFrame: ...
```

`ContentType`, `Shape` and `DType` are plain markers that nbserve reads when it builds an API's
schema. `TensorSchema`, `DataframeSchema` and `FileSchema` are the pydantic types behind
`np.ndarray` / `torch.Tensor`, `pd.DataFrame` and `Path`; nbserve attaches them itself, so you
only write them to change a default (a DataFrame's orient). They also work inside your own
pydantic models. The implementations live in `nbserve._sdk.io` and are imported only when a
schema is built, so this module stays import-light (no numpy, pandas, torch or PIL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

__all__ = ["ContentType", "DType", "DataframeSchema", "FileSchema", "Shape", "TensorSchema"]

TensorFormat = Literal["numpy-array", "torch-tensor"]
DataframeOrient = Literal["records", "columns"]


@dataclass(frozen=True)
class ContentType:
    """The media type of a file input (checked with `fnmatch`, so `"image/*"` works) or of a
    `str`/`bytes`/`Path` output (sent as the response's `Content-Type`)."""

    content_type: str

    def __post_init__(self) -> None:
        if not isinstance(self.content_type, str) or "/" not in self.content_type:
            msg = f"ContentType({self.content_type!r}) must be a media type such as 'image/png', 'image/*' or 'text/html'"
            raise TypeError(msg)


@dataclass(frozen=True)
class Shape:
    """The shape an array or tensor input must have; -1 matches any size on that axis."""

    dimensions: Sequence[int]
    """Stored as a tuple (a list is accepted), so the marker stays hashable."""

    def __post_init__(self) -> None:
        dims = self.dimensions
        if not isinstance(dims, tuple | list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in dims
        ):
            msg = f"Shape({dims!r}) must be a tuple of sizes (-1 for any size), e.g. Shape((-1, 4))"
            raise TypeError(msg)
        object.__setattr__(self, "dimensions", tuple(dims))


@dataclass(frozen=True)
class DType:
    """The dtype an array or tensor input is converted to, e.g. `DType("float32")`."""

    dtype: str

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, str) or not self.dtype:
            msg = f"DType({self.dtype!r}) must be a dtype name, e.g. DType('float32')"
            raise TypeError(msg)


@dataclass(frozen=True)
class TensorSchema:
    """An `np.ndarray` (format "numpy-array") or `torch.Tensor` ("torch-tensor") sent as nested
    JSON lists. Its JSON schema is BentoML's `{"type": "tensor", ...}` extension."""

    format: TensorFormat = "numpy-array"
    dtype: str | None = None
    shape: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if self.format not in ("numpy-array", "torch-tensor"):
            msg = f"TensorSchema(format={self.format!r}) must be 'numpy-array' or 'torch-tensor'"
            raise TypeError(msg)
        if self.shape is not None:
            object.__setattr__(self, "shape", Shape(self.shape).dimensions)

    @property
    def dim(self) -> int | None:
        """The number of elements, when the shape is fully known (BentoML's `dim`)."""
        if self.shape is None or any(d < 0 for d in self.shape):
            return None
        size = 1
        for d in self.shape:
            size *= d
        return size

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from nbserve._sdk.io.tensor import tensor_core_schema

        return tensor_core_schema(self)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        from nbserve._sdk.io.tensor import tensor_json_schema

        return tensor_json_schema(self, handler.mode)


@dataclass(frozen=True)
class DataframeSchema:
    """A `pd.DataFrame` sent as JSON: `orient="records"` is a list of row objects,
    `orient="columns"` an object of column lists. `columns` fixes the column order."""

    orient: DataframeOrient = "records"
    columns: Sequence[str] | None = field(default=None)
    """Stored as a tuple (a list is accepted), so the marker stays hashable."""

    def __post_init__(self) -> None:
        if self.orient not in ("records", "columns"):
            msg = f"DataframeSchema(orient={self.orient!r}) must be 'records' (a list of row objects) or 'columns' (an object of column lists)"
            raise TypeError(msg)
        columns: Any = self.columns  # typed as a tuple; a user may pass a str or a list
        if columns is not None:
            if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
                msg = f"DataframeSchema(columns={self.columns!r}) must be a list of column names, e.g. columns=['age', 'income']"
                raise TypeError(msg)
            # An empty list means "no fixed columns", as in BentoML.
            object.__setattr__(self, "columns", tuple(columns) or None)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from nbserve._sdk.io.dataframe import dataframe_core_schema

        return dataframe_core_schema(self)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        from nbserve._sdk.io.dataframe import dataframe_json_schema

        return dataframe_json_schema(self, handler.mode)


@dataclass(frozen=True)
class FileSchema:
    """A file input: a multipart part (or the raw body of a root input) saved under the
    request's temporary directory and passed to the API as a `Path`. `content_type`, when
    given, is checked with `fnmatch` and names the JSON schema's `format` (its major type)."""

    format: str = "binary"
    content_type: str | None = None

    def __post_init__(self) -> None:
        if self.content_type is not None:
            ContentType(self.content_type)  # same check, same message
            # BentoML derives the format from the media type: "image/*" -> "image".
            object.__setattr__(self, "format", self.content_type.split("/")[0])

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from nbserve._sdk.io.files import file_core_schema

        return file_core_schema(self)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        from nbserve._sdk.io.files import file_json_schema

        return file_json_schema(self, handler.mode)
