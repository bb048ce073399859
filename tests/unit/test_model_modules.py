"""The modules a model-store entry needs to load, read from its model.yaml and its pickles."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import nbserve.models
from nbserve._bento.model_modules import model_modules, pickle_modules


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "home"))


class _Explodes:
    """Unpickling this would create a file: reading the pickle must not."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.target,))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_globals_are_read_at_every_protocol(tmp_path: Path, protocol: int) -> None:
    value = {
        "order": collections.OrderedDict(a=1),
        "array": np.arange(3),
        "again": np.arange(2),  # the same globals twice: memoized, read back with GET
    }
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    found = pickle_modules(path)
    assert {"collections", "numpy"} <= found
    assert found - {"collections", "numpy"} <= {"_codecs", "copyreg", "builtins"}


def test_a_pickle_is_read_never_run(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Explodes(target), protocol=5))
    assert pickle_modules(path) == {"pathlib"}
    assert not target.exists()


def test_a_torch_file_is_read_through_its_zip(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 1), path)
    assert path.read_bytes().startswith(b"PK\x03\x04")
    assert "torch" in pickle_modules(path)


def test_weights_and_trailing_data_are_not_mistaken_for_pickles(tmp_path: Path) -> None:
    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(10.0))
    assert pickle_modules(npy) == set()
    # joblib appends raw array bytes after its pickle: keep what was read before them.
    joblib_like = tmp_path / "model.joblib"
    joblib_like.write_bytes(pickle.dumps(collections.OrderedDict(), protocol=4) + b"\x00\xff" * 64)
    assert pickle_modules(joblib_like) == {"collections"}
    Path(tmp_path / "broken.pkl").write_bytes(b"\x80\x05garbage")
    assert pickle_modules(tmp_path / "broken.pkl") == set()


def test_python2_names_are_read_as_python3_modules(tmp_path: Path) -> None:
    path = tmp_path / "old.pkl"
    path.write_bytes(b"c__builtin__\nset\n(]tR.")
    assert pickle_modules(path) == {"builtins"}


def test_an_entry_needs_its_frameworks_and_what_its_pickles_name() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    saved = nbserve.models.save("iris", LogisticRegression(max_iter=300).fit(x, y))
    modules = model_modules(saved)
    assert {"sklearn", "numpy", "cloudpickle"} <= modules

    arrays = nbserve.models.save("weights", np.arange(4.0))
    assert model_modules(arrays) == {"numpy"}


def test_the_modules_of_an_entry_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = nbserve.models.save("linear", torch.nn.Linear(2, 1))
    first = model_modules(saved)
    assert "torch" in first
    read: list[Path] = []

    def reading(path: Path) -> set[str]:
        read.append(path)
        return set()

    monkeypatch.setattr("nbserve._bento.model_modules.pickle_modules", reading)
    assert model_modules(saved) == first
    assert read == []
