"""Merge and split of every batchable container, along `batch_dim`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nbserve._runtime.execution.batching.containers import (
    BatchTypeError,
    batch_size,
    merge,
    slice_rows,
    split,
)


def test_lists() -> None:
    assert batch_size([1, 2, 3]) == 3
    assert merge([[1, 2], [3], (4, 5)]) == [1, 2, 3, 4, 5]
    assert split(["a", "b", "c"], [2, 1]) == [["a", "b"], ["c"]]
    assert slice_rows([1, 2, 3, 4], 1, 3) == [2, 3]
    with pytest.raises(BatchTypeError, match="batches along axis 0 only"):
        batch_size([1], 1)


def test_ndarrays_along_any_axis() -> None:
    a, b = np.ones((2, 3)), np.zeros((1, 3))
    merged = merge([a, b])
    assert merged.shape == (3, 3)
    first, second = split(merged, [2, 1])
    np.testing.assert_array_equal(first, a)
    np.testing.assert_array_equal(second, b)
    cols = merge([np.ones((4, 2)), np.zeros((4, 1))], dim=1)
    assert cols.shape == (4, 3)
    assert batch_size(cols, 1) == 3
    assert [p.shape for p in split(cols.T, [2, 1], dim=0)] == [(2, 4), (1, 4)]
    np.testing.assert_array_equal(
        slice_rows(np.arange(12).reshape(3, 4), 1, 3, dim=1), [[1, 2], [5, 6], [9, 10]]
    )


def test_ndarray_with_too_few_dimensions() -> None:
    with pytest.raises(BatchTypeError, match="batch_dim=1 is out of range"):
        batch_size(np.arange(3), 1)


def test_dataframes_and_series_are_renumbered_per_caller() -> None:
    df1 = pd.DataFrame({"a": [1, 2]})
    df2 = pd.DataFrame({"a": [3]})
    merged = merge([df1, df2])
    assert list(merged["a"]) == [1, 2, 3]
    assert list(merged.index) == [0, 1, 2]
    first, second = split(merged, [2, 1])
    pd.testing.assert_frame_equal(first, df1)
    pd.testing.assert_frame_equal(second, df2)  # index 0, not 2
    series = merge([pd.Series([1.0]), pd.Series([2.0, 3.0])])
    assert batch_size(series) == 3
    assert [list(s) for s in split(series, [1, 2])] == [[1.0], [2.0, 3.0]]


def test_torch_tensors() -> None:
    a, b = torch.ones(2, 3), torch.zeros(3, 3)
    merged = merge([a, b])
    assert tuple(merged.shape) == (5, 3)
    first, second = split(merged, [2, 3])
    assert torch.equal(first, a)
    assert torch.equal(second, b)
    assert batch_size(torch.ones(4, 7), 1) == 7
    assert tuple(merge([torch.ones(4, 2), torch.ones(4, 5)], dim=1).shape) == (4, 7)
    assert tuple(slice_rows(torch.arange(10), 2, 5).shape) == (3,)


def test_output_may_differ_from_input_type() -> None:
    assert split(np.array([1, 2, 3]), [1, 2])[1].tolist() == [2, 3]
    assert split([1, 2, 3], [3]) == [[1, 2, 3]]


def test_output_with_the_wrong_row_count_names_the_numbers() -> None:
    with pytest.raises(BatchTypeError, match=r"returned 2 row\(s\) for a batch of 3"):
        split(np.zeros(2), [1, 2])


def test_unbatchable_values() -> None:
    with pytest.raises(BatchTypeError, match=r"must be a list, np\.ndarray"):
        batch_size({"a": 1})
    with pytest.raises(BatchTypeError, match="output must be a list"):
        split(42, [1])
    with pytest.raises(BatchTypeError, match="different types"):
        merge([[1], np.zeros(1)])


def test_single_value_merge_is_the_value_itself() -> None:
    a = np.zeros((2, 2))
    assert merge([a]) is a
    assert split(a, [2])[0] is a
