"""Models saved by BentoML 1.4.39 itself, in its own store, used by tag from nbserve.

BentoML (from .venv-bentoml) writes scikit-learn, XGBoost and LightGBM models, a picklable
object, a torch module, and a transformers pipeline, model and tokenizer into a temporary
`$BENTOML_HOME`; nbserve then finds them by tag, through `nbserve.models.get` (falling back to
BentoML's store) and the framework modules, and loads what BentoML loads, for the same input.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest

import nbserve
import nbserve.models as models
from nbserve._bento.archive import open_tar
from nbserve.exceptions import NotFound
from tests.integration.compat_servers import bentoml_python

pytestmark = [pytest.mark.bentoml, pytest.mark.slow]

SAVE_WITH_BENTOML = textwrap.dedent(
    """
    import json, warnings
    warnings.simplefilter("ignore")  # BentoML deprecates picklable_model; not ours to judge
    import bentoml
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    iris = bentoml.sklearn.save_model(
        "iris-clf", clf, labels={"team": "ml"}, metadata={"acc": 0.97},
        custom_objects={"classes": ["setosa", "versicolor", "virginica"]},
    )
    rules = bentoml.picklable_model.save_model("rules", {"threshold": 0.5, "tags": ["a", "b"]})
    got = bentoml.sklearn.get(rules.tag)  # BentoML's sklearn.get is models.get: no check
    try:
        bentoml.sklearn.load_model(rules.tag)
        wrong = None
    except bentoml.exceptions.NotFound as exc:
        wrong = str(exc)
    import lightgbm, xgboost
    import _bentoml_impl.frameworks.xgboost as bentoml_xgb
    # BentoML records xgboost's version by distribution name "xgboost"; here it is the
    # CPU-only wheel "xgboost-cpu" (same module), which that lookup does not know.
    bentoml_xgb.get_pkg_version = lambda name: xgboost.__version__
    xgb_clf = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X, y)
    xgb_tag = bentoml.xgboost.save_model("iris-xgb", xgb_clf)
    booster_tag = bentoml.xgboost.save_model("iris-booster", xgb_clf.get_booster())
    lgb_clf = lightgbm.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1, n_jobs=1).fit(X, y)
    lgb_tag = bentoml.lightgbm.save_model("iris-lgb", lgb_clf)
    print(json.dumps({
        "xgb": str(xgb_tag.tag),
        "xgb_proba": bentoml.xgboost.load_model(xgb_tag.tag).predict_proba(X[:5]).tolist(),
        "xgb_loaded_class": type(bentoml.xgboost.load_model(xgb_tag.tag)).__name__,
        "booster": str(booster_tag.tag),
        "booster_class": type(bentoml.xgboost.load_model(booster_tag.tag)).__name__,
        "lgb": str(lgb_tag.tag),
        "lgb_pred": bentoml.lightgbm.load_model(lgb_tag.tag).predict(X[:5]).tolist(),
        "lgb_class": type(bentoml.lightgbm.load_model(lgb_tag.tag)).__name__,
        "iris": str(iris.tag),
        "rules": str(rules.tag),
        "proba": bentoml.sklearn.load_model(iris.tag).predict_proba(X[:5]).tolist(),
        "rules_loaded": bentoml.picklable_model.load_model(rules.tag),
        "wrong_module": wrong,
        "get_any_module": got.info.module,
    }))
    """
)


def save_with_bentoml(home: Path, script: str, *, needs: str) -> tuple[Path, dict[str, object]]:
    """Run `script` under BentoML 1.4.39 with `home` as its store; what it printed last, as JSON."""
    python = bentoml_python()
    if subprocess.run(
        [str(python), "-c", f"import {needs}"], capture_output=True, check=False
    ).returncode:
        pytest.fail(
            f"{needs}: missing from .venv-bentoml; run `bash scripts/setup` again", pytrace=False
        )
    env = {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",  # everything is made locally; nothing may be downloaded
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [str(python), "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return home, json.loads(done.stdout.strip().splitlines()[-1])


def use_stores(
    saved_home: tuple[Path, dict[str, object]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    """An empty nbserve store, and BentoML's store (`saved_home`'s) as `$BENTOML_HOME`."""
    home, saved = saved_home
    monkeypatch.setenv("BENTOML_HOME", str(home))
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "nbserve-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NBSERVE_MODEL_STORE", raising=False)
    monkeypatch.delenv("NBSERVE_BENTOML_STORE", raising=False)
    return saved


@pytest.fixture(scope="module")
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    pytest.importorskip("sklearn")
    return save_with_bentoml(
        tmp_path_factory.mktemp("bentoml-home"),
        SAVE_WITH_BENTOML,
        needs="sklearn, xgboost, lightgbm",
    )


@pytest.fixture
def stores(
    bentoml_home: tuple[Path, dict[str, object]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, object]:
    """An empty nbserve store, and BentoML's store (the fixture's) as `$BENTOML_HOME`."""
    return use_stores(bentoml_home, tmp_path, monkeypatch)


def test_a_bentoml_sklearn_model_loads_by_tag_as_bentoml_loads_it(
    stores: dict[str, object],
) -> None:
    from sklearn.datasets import load_iris

    tag = str(stores["iris"])
    X, _ = load_iris(return_X_y=True)
    clf = nbserve.sklearn.load_model(tag)
    np.testing.assert_allclose(clf.predict_proba(X[:5]), np.array(stores["proba"]))

    model = nbserve.sklearn.get(tag)
    assert str(model.tag) == tag
    assert model.info.module == "bentoml.sklearn"
    assert model.info.labels == {"team": "ml"}
    assert model.info.metadata == {"acc": 0.97}
    assert model.custom_objects == {"classes": ["setosa", "versicolor", "virginica"]}
    # By name alone too (BentoML's `latest`), and as nbserve.models.get(...).load().
    np.testing.assert_allclose(
        models.get("iris-clf").load().predict_proba(X[:5]), np.array(stores["proba"])
    )


def test_a_bentoml_picklable_model_loads_and_a_bento_model_resolves_it(
    stores: dict[str, object],
) -> None:
    tag = str(stores["rules"])
    assert nbserve.picklable_model.load_model(tag) == stores["rules_loaded"]
    ref = models.BentoModel(tag)
    assert ref.resolve().info.module == "bentoml.picklable_model"
    assert ref.load() == {"threshold": 0.5, "tags": ["a", "b"]}


def test_the_wrong_framework_is_refused_where_bentoml_refuses_it(
    stores: dict[str, object],
) -> None:
    tag = str(stores["rules"])
    # BentoML 1.4's sklearn.get is models.get; its load_model checks the module.
    assert nbserve.sklearn.get(tag).info.module == stores["get_any_module"]
    with pytest.raises(NotFound) as info:
        nbserve.sklearn.load_model(tag)
    theirs = str(stores["wrong_module"])  # "Model X was saved with module Y, not loading with Z."
    assert str(info.value).startswith(theirs.split(", not loading")[0])
    assert "not loading with nbserve.sklearn" in str(info.value)
    with pytest.raises(NotFound, match=r"not loading with nbserve\.pytorch"):
        nbserve.pytorch.get(tag)  # the legacy modules check in get() too, as BentoML's do


def test_nbserve_store_wins_and_the_fallback_can_be_turned_off(
    stores: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = models.save("iris-clf", np.arange(3))
    assert models.get("iris-clf") == mine  # name only: nbserve's own entry first
    assert models.get(str(stores["iris"])).info.module == "bentoml.sklearn"  # by version

    monkeypatch.setenv("NBSERVE_BENTOML_STORE", "0")
    with pytest.raises(NotFound):
        models.get(str(stores["rules"]))
    monkeypatch.delenv("NBSERVE_BENTOML_STORE")
    monkeypatch.setenv("NBSERVE_MODEL_STORE", str(Path(mine.path).parents[1]))  # a bento's store
    with pytest.raises(NotFound):
        models.get(str(stores["rules"]))


def test_reading_bentomls_store_never_writes_to_it(
    stores: dict[str, object], bentoml_home: tuple[Path, dict[str, object]]
) -> None:
    home, _ = bentoml_home
    latest = home / "models" / "rules" / "latest"
    latest.unlink()  # BentoML would rebuild it; nbserve only reads
    try:
        assert models.get("rules").info.module == "bentoml.picklable_model"
        assert not latest.exists()
    finally:
        latest.write_text(str(stores["rules"]).split(":")[1])


def test_a_bentoml_entry_copied_as_a_bento_copies_it_stays_verifiable(
    stores: dict[str, object], tmp_path: Path
) -> None:
    """A bento's models/ holds `model.yaml` rewritten from `info.to_dict()` plus the files it
    lists: a BentoML entry must list its files and still read as BentoML's there."""
    model = models.get(str(stores["iris"]))
    assert model.info.origin == "bentoml"
    assert sorted(model.info.files) == ["custom_objects.pkl", "saved_model.pkl"]
    copy = tmp_path / "bento-models" / model.name / model.version
    copy.mkdir(parents=True)
    for rel in model.info.files:
        (copy / rel).write_bytes(Path(model.path_of(rel)).read_bytes())
    model.info.write(copy)

    again = models.Model.from_path(copy)
    assert again.info.origin == "bentoml"
    assert again.info.context.bentoml_version == "1.4.39"
    again.verify()  # file hashes now recorded, and checked
    (copy / "saved_model.pkl").write_bytes(b"tampered")
    with pytest.raises(models.CorruptModelError, match=r"saved_model\.pkl"):
        models.Model.from_path(copy).verify(cached=False)


def test_bentoml_xgboost_and_lightgbm_models_load_as_bentoml_loads_them(
    stores: dict[str, object],
) -> None:
    xgboost = pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True)
    clf = nbserve.xgboost.load_model(str(stores["xgb"]))
    assert type(clf).__name__ == stores["xgb_loaded_class"]
    np.testing.assert_allclose(clf.predict_proba(X[:5]), np.array(stores["xgb_proba"]), rtol=1e-6)
    booster = nbserve.xgboost.load_model(str(stores["booster"]))
    assert type(booster).__name__ == stores["booster_class"]
    assert booster.predict(xgboost.DMatrix(X[:5])).shape == (5, 3)
    lgb_model = nbserve.lightgbm.load_model(str(stores["lgb"]))
    assert type(lgb_model).__name__ == stores["lgb_class"]
    np.testing.assert_allclose(lgb_model.predict(X[:5]), np.array(stores["lgb_pred"]), rtol=1e-6)


SERVICE = textwrap.dedent(
    """
    import numpy as np
    import nbserve as bentoml


    @bentoml.service
    class Iris:
        def __init__(self) -> None:
            self.clf = bentoml.sklearn.load_model("iris-clf:latest")

        @bentoml.api
        def classify(self, x: np.ndarray) -> np.ndarray:
            return self.clf.predict(x)
    """
)


def test_a_service_using_a_bentoml_store_model_exports_and_serves_without_it(
    stores: dict[str, object], tmp_path: Path
) -> None:
    """BentoML's own service style, a model only BentoML's store has: the bento carries it."""
    nbserve_cli = str(Path(sys.executable).parent / "nbserve")
    (tmp_path / "service.py").write_text(SERVICE)
    build = subprocess.run(
        [nbserve_cli, "build", "service.py:Iris", "-o", "dist"],
        cwd=tmp_path,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (bento,) = (tmp_path / "dist").glob("*.bento")
    version = str(stores["iris"]).split(":")[1]
    with open_tar(bento) as tar:
        names = tar.getnames()
    assert f"models/iris-clf/{version}/saved_model.pkl" in names

    # Served with neither store: no BentoML home, an empty nbserve home.
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "none"),
        "NBSERVE_HOME": str(tmp_path / "h"),
    }
    server = subprocess.Popen(
        [nbserve_cli, "serve", str(bento), "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = None
        for line in server.stdout:  # "nbserve: serving Iris at http://127.0.0.1:PORT ..."
            found = re.search(r"serving \S+ at (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the bento did not start"
        x = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        answer = httpx.post(f"{url}/classify", json={"x": x}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == [0, 2]
    finally:
        server.terminate()
        server.communicate(timeout=30)


SAVE_TORCH_WITH_BENTOML = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("ignore")  # BentoML deprecates its pytorch/transformers modules
    import torch, transformers
    import bentoml

    class Net(torch.nn.Module):  # defined in __main__: BentoML's cloudpickle stores it by value
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)
            self.register_buffer("scale", torch.tensor([2.0]))

        def forward(self, x):
            return torch.softmax(self.lin(x) * self.scale, dim=-1)

    torch.manual_seed(0)
    x = torch.arange(8, dtype=torch.float32).reshape(2, 4)
    net = bentoml.pytorch.save_model(
        "net", Net().eval(), labels={"team": "ml"}, metadata={"inputs": 4},
        custom_objects={"classes": ["a", "b", "c"]},
    )
    # torch >= 2.6 loads weights only by default, which refuses BentoML's pickled module.
    net_out = bentoml.pytorch.load_model(net.tag, weights_only=False)(x).tolist()

    # A tiny BERT and a tokenizer over a local vocabulary: nothing comes from the Hub.
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "good", "bad", "movie"]
    tok = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    config = transformers.BertConfig(
        vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=32, num_labels=2,
    )
    bert = transformers.BertForSequenceClassification(config).eval()

    class Tagged(transformers.TextClassificationPipeline):  # BentoML keeps the class
        def __call__(self, *args, **kwargs):
            return [{**r, "via": "Tagged"} for r in super().__call__(*args, **kwargs)]

    pipe = transformers.pipeline(
        "text-classification", model=bert, tokenizer=tok, pipeline_class=Tagged
    )
    # BentoML 1.4.39 predates transformers 5, which dropped TensorFlow and Flax: it asks for
    # both. transformers swaps its module object in sys.modules on lazy imports, hence here.
    tf = sys.modules["transformers"]
    for name in ("is_flax_available", "is_tf_available"):
        if not hasattr(tf.utils, name):
            setattr(tf.utils, name, lambda: False)
    for name in ("TFPreTrainedModel", "FlaxPreTrainedModel"):
        if not hasattr(tf, name):
            setattr(tf, name, type(name, (), {}))
    text = "hello good movie"
    pipe_tag = bentoml.transformers.save_model("tiny-pipe", pipe).tag
    bert_tag = bentoml.transformers.save_model("tiny-bert", bert).tag
    tok_tag = bentoml.transformers.save_model("tiny-tok", tok).tag
    ids = bentoml.transformers.load_model(tok_tag)(text, return_tensors="pt")
    with torch.no_grad():
        logits = bentoml.transformers.load_model(bert_tag)(**ids).logits.tolist()
    print(json.dumps({
        "net": str(net.tag),
        "net_out": net_out,
        "pipe": str(pipe_tag),
        "pipe_out": bentoml.transformers.load_model(pipe_tag)(text),
        "pipe_class": type(bentoml.transformers.load_model(pipe_tag)).__name__,
        "bert": str(bert_tag),
        "bert_class": type(bentoml.transformers.load_model(bert_tag)).__name__,
        "logits": logits,
        "tok": str(tok_tag),
        "tok_class": type(bentoml.transformers.load_model(tok_tag)).__name__,
        "ids": ids["input_ids"].tolist(),
    }))
    """
)


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """BentoML's store holding a torch module, a transformers pipeline, model and tokenizer."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return save_with_bentoml(
        tmp_path_factory.mktemp("bentoml-torch-home"),
        SAVE_TORCH_WITH_BENTOML,
        needs="torch, transformers",
    )


@pytest.fixture
def torch_stores(
    torch_home: tuple[Path, dict[str, object]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, object]:
    return use_stores(torch_home, tmp_path, monkeypatch)


def test_a_bentoml_pytorch_module_loads_by_tag_as_bentoml_loads_it(
    torch_stores: dict[str, object],
) -> None:
    import torch

    tag = str(torch_stores["net"])
    x = torch.arange(8, dtype=torch.float32).reshape(2, 4)
    expected = np.array(torch_stores["net_out"])
    net = nbserve.pytorch.load_model(tag)  # a class from BentoML's __main__, by value
    np.testing.assert_allclose(net(x).detach().numpy(), expected, rtol=1e-6)
    by_name = models.get("net").load()  # BentoML's `latest`, through nbserve.models
    np.testing.assert_allclose(by_name(x).detach().numpy(), expected, rtol=1e-6)

    model = nbserve.pytorch.get(tag)
    assert model.info.module == "bentoml.pytorch"
    assert model.info.origin == "bentoml"
    assert model.info.labels == {"team": "ml"}
    assert model.info.metadata == {"inputs": 4}
    assert model.info.options == {"partial_kwargs": {}}
    assert model.info.context.framework_versions == {"torch": torch.__version__}
    assert model.custom_objects == {"classes": ["a", "b", "c"]}
    assert sorted(model.info.files) == ["custom_objects.pkl", "saved_model.pt"]


def test_bentoml_transformers_entries_load_by_tag_as_bentoml_loads_them(
    torch_stores: dict[str, object],
) -> None:
    import torch

    text = "hello good movie"
    pipe = nbserve.transformers.load_model(str(torch_stores["pipe"]))
    assert type(pipe).__name__ == torch_stores["pipe_class"]  # BentoML's saved pipeline class
    assert pipe(text) == torch_stores["pipe_out"]
    assert models.get("tiny-pipe").load()(text) == torch_stores["pipe_out"]
    assert nbserve.transformers.get("tiny-pipe").info.options["task"] == "text-classification"

    tok = nbserve.transformers.load_model(str(torch_stores["tok"]))
    assert type(tok).__name__ == torch_stores["tok_class"]
    ids = tok(text, return_tensors="pt")
    assert ids["input_ids"].tolist() == torch_stores["ids"]
    bert = nbserve.transformers.load_model(str(torch_stores["bert"]))
    assert type(bert).__name__ == torch_stores["bert_class"]
    with torch.no_grad():
        logits = models.get("tiny-bert").load()(**ids).logits
    np.testing.assert_allclose(logits.numpy(), np.array(torch_stores["logits"]), rtol=1e-5)

    model = nbserve.transformers.get(str(torch_stores["bert"]))
    assert model.info.module == "bentoml.transformers"
    assert model.info.api_version == "v2"
    assert model.info.metadata["_pretrained_class"] == "BertForSequenceClassification"
    with pytest.raises(NotFound, match=r"not loading with nbserve\.pytorch"):
        nbserve.pytorch.load_model(model.tag)
