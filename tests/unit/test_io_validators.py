"""`nbserve.validators`: the markers check their own arguments, and the schema types also
work inside a user's own pydantic models."""

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from nbserve import validators
from nbserve.validators import ContentType, DataframeSchema, DType, FileSchema, Shape, TensorSchema


def test_public_names() -> None:
    assert sorted(validators.__all__) == [
        "ContentType",
        "DType",
        "DataframeSchema",
        "FileSchema",
        "Shape",
        "TensorSchema",
    ]


def test_markers_keep_bentoml_attribute_names() -> None:
    assert ContentType("image/*").content_type == "image/*"
    assert Shape((2, -1)).dimensions == (2, -1)
    assert Shape([3]).dimensions == (3,)
    assert DType("float32").dtype == "float32"
    assert hash(Shape((1,))) == hash(Shape((1,)))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ContentType("png"), r"must be a media type such as 'image/png'"),
        (lambda: Shape((2, "x")), r"Shape\(\(2, 'x'\)\) must be a tuple of sizes"),
        (lambda: Shape((-2,)), r"-1 for any size"),
        (lambda: DType(""), r"must be a dtype name"),
        (lambda: TensorSchema("jax-array"), r"must be 'numpy-array' or 'torch-tensor'"),
        (lambda: DataframeSchema(orient="index"), r"must be 'records' .* or 'columns'"),
        (lambda: DataframeSchema(columns="ab"), r"must be a list of column names"),
        (lambda: FileSchema(content_type="nope"), r"must be a media type"),
    ],
)
def test_bad_arguments_name_the_value(make: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()


def test_schema_details() -> None:
    assert TensorSchema(shape=(2, 3)).dim == 6
    assert TensorSchema(shape=(-1, 3)).dim is None
    assert DataframeSchema(columns=[]).columns is None
    assert DataframeSchema(columns=["a"]).columns == ("a",)
    assert FileSchema(content_type="audio/wav").format == "audio"


def test_tensor_schema_inside_a_user_model() -> None:
    class Batch(BaseModel):
        x: Annotated[np.ndarray, TensorSchema(dtype="int64", shape=(-1,))]

    batch = Batch.model_validate_json(b'{"x": [1, 2, 3]}')
    assert batch.x.dtype == np.int64
    assert batch.model_dump_json() == '{"x":[1,2,3]}'
    with pytest.raises(ValidationError, match=r"shape \(-1,\)"):
        Batch.model_validate({"x": [[1]]})
    assert Batch.model_json_schema()["properties"]["x"]["type"] == "tensor"


def test_a_value_the_dtype_cannot_hold_is_a_validation_error() -> None:
    """1e300 as float32 would be a silent inf (and a RuntimeWarning): the client's error."""

    class Batch(BaseModel):
        x: Annotated[np.ndarray, TensorSchema(dtype="float32")]

    with pytest.raises(ValidationError, match="does not fit float32"):
        Batch.model_validate_json(b'{"x": [1.0, 1e300]}')
    assert Batch.model_validate_json(b'{"x": [1.0, 2.5]}').x.tolist() == [1.0, 2.5]


def test_dataframe_schema_inside_a_user_model() -> None:
    pd = pytest.importorskip("pandas")

    class Table(BaseModel):
        df: Annotated[pd.DataFrame, DataframeSchema(orient="columns")]

    table = Table.model_validate({"df": {"a": [1, 2]}})
    assert table.model_dump(mode="json") == {"df": {"a": [1, 2]}}


def test_file_schema_needs_a_file(tmp_path: Path) -> None:
    adapter = TypeAdapter(Annotated[Path, FileSchema()])
    assert adapter.validate_python(tmp_path) == tmp_path
    with pytest.raises(ValidationError, match="Input should be a file"):
        adapter.validate_python("/etc/passwd")
    with pytest.raises(RuntimeError, match="pass temp_dir="):
        adapter.validate_python(b"data")
    saved = adapter.validate_python(b"data", context={"temp_dir": tmp_path})
    assert saved.read_bytes() == b"data"
