"""nbserve.models: the model store (create/save/get/list/delete, verification, export/import)."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import types
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import yaml

import nbserve.models as models
from nbserve._models import pickling
from nbserve.exceptions import InvalidArgument, NbserveError, NotFound
from nbserve.models import UnstableVersionWarning

torch = pytest.importorskip("torch")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store; returns its models/ directory."""
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NBSERVE_MODEL_STORE", raising=False)
    return tmp_path / "home" / "models"


class Scaler:
    """A plain Python object: stored with cloudpickle."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, x: float) -> float:
        return x * self.factor


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.register_buffer("offset", torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.offset


def entry_files(model: models.Model) -> list[str]:
    root = Path(model.path)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# -- create / get / info / latest ---------------------------------------------------------------


def test_create_stores_files_under_a_content_version(store: Path) -> None:
    with models.create("my-model", labels={"team": "ml"}, metadata={"acc": 0.9}) as m:
        assert Path(m.path).parent == store / ".tmp"  # staging, not yet in the store
        Path(m.path_of("weights.bin")).write_bytes(b"\x00\x01")
        os.makedirs(m.path_of("sub"))
        Path(m.path_of("sub/config.json")).write_text("{}")

    assert len(m.version) == 16
    assert m.path == str(store / "my-model" / m.version)
    assert m.path_of("sub/config.json") == str(
        store / "my-model" / m.version / "sub" / "config.json"
    )
    assert entry_files(m) == ["model.yaml", "sub/config.json", "weights.bin"]
    assert (store / "my-model" / "latest").read_text() == m.version

    got = models.get("my-model")
    assert got == models.get("my-model:latest") == models.get(f"my-model:{m.version}") == m
    assert got.info.labels == {"team": "ml"}
    assert got.info.metadata == {"acc": 0.9}
    assert got.info.module == "custom"
    assert got.info.context.nbserve_version
    assert got.info.context.python_version.startswith(f"{sys.version_info[0]}.")
    assert set(got.info.files) == {"sub/config.json", "weights.bin"}
    assert got.creation_time.tzinfo is not None
    assert got.file_size == sum(p.stat().st_size for p in Path(got.path).rglob("*") if p.is_file())
    assert models.get(f"my-model:{m.version[:6]}") == m  # a unique prefix is enough


def test_model_yaml_has_bentoml_fields(store: Path) -> None:
    m = models.save("arr", np.arange(3))
    data = yaml.safe_load(Path(m.path_of("model.yaml")).read_text())
    assert list(data) == [
        "name",
        "version",
        "module",
        "api_version",
        "labels",
        "options",
        "metadata",
        "context",
        "files",
        "creation_time",
    ]
    assert data["context"]["framework_name"] == "numpy"
    assert data["context"]["framework_versions"] == {"numpy": np.__version__}


def test_same_content_same_version_and_latest_moves(store: Path) -> None:
    first = models.save("clf", np.arange(10), metadata={"acc": 0.5})
    other = models.save("clf", np.arange(11), metadata={"acc": 0.5})
    assert other.version != first.version
    assert models.get("clf").version == other.version

    again = models.save("clf", np.arange(10), metadata={"acc": 0.5})
    assert again.version == first.version
    assert again.creation_time == first.creation_time  # the existing entry, not a new one
    assert models.get("clf:latest").version == first.version
    assert sorted(m.version for m in models.list("clf")) == sorted([first.version, other.version])


@pytest.mark.parametrize(
    "change",
    [{"labels": {"stage": "prod"}}, {"metadata": {"acc": 0.6}}, {"module": "cloudpickle"}],
)
def test_labels_metadata_and_format_are_part_of_the_version(
    store: Path, change: dict[str, Any]
) -> None:
    base = models.save("clf", np.arange(10), metadata={"acc": 0.5})
    changed = models.save("clf", np.arange(10), **{"metadata": {"acc": 0.5}, **change})
    assert changed.version != base.version


def test_metadata_numpy_scalars_are_stored_as_plain_values(store: Path) -> None:
    m = models.save(
        "arr", np.zeros(2), metadata={"acc": np.float64(0.25), "n": np.int64(3), "xs": (1, 2)}
    )
    assert models.get("arr").info.metadata == {"acc": 0.25, "n": 3, "xs": [1, 2]}
    assert (
        m.version
        == models.save("arr", np.zeros(2), metadata={"acc": 0.25, "n": 3, "xs": [1, 2]}).version
    )


def test_an_exception_in_create_stores_nothing(store: Path) -> None:
    def fail_midway() -> None:
        with models.create("broken") as m:
            Path(m.path_of("half.bin")).write_bytes(b"x")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    assert models.list() == []
    assert list((store / ".tmp").iterdir()) == []


def test_create_refuses_a_version_and_reserved_or_linked_files(store: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="content hashes"), models.create("x:v1"):
        pass
    with pytest.raises(InvalidArgument, match="reserved"), models.create("x") as m:
        Path(m.path_of("model.yaml")).write_text("mine")
    (tmp_path / "secret").write_text("s")
    with pytest.raises(InvalidArgument, match="symlink"), models.create("x") as m:
        os.symlink(tmp_path / "secret", m.path_of("link"))
    with (
        pytest.raises(InvalidArgument, match="leaves the model directory"),
        models.create("x") as m,
    ):
        m.path_of("../escape")
    assert models.list() == []


def test_home_is_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBSERVE_MODEL_STORE", raising=False)
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "a"))
    models.save("one", np.arange(2))
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "b"))
    assert models.list() == []
    monkeypatch.setenv(
        "NBSERVE_MODEL_STORE", str(tmp_path / "a" / "models")
    )  # e.g. a bento's models/
    assert [m.name for m in models.list()] == ["one"]


# -- round trips per object kind ---------------------------------------------------------------


def test_numpy_round_trip(store: Path) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    m = models.save("arr", array)
    assert m.info.module == "numpy"
    loaded = models.get("arr").load()
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array)
    mapped = models.get("arr").load(mmap_mode="r")
    np.testing.assert_array_equal(mapped, array)


def test_object_arrays_fall_back_to_cloudpickle(store: Path) -> None:
    array = np.array([{"a": 1}, None], dtype=object)
    assert models.save("objs", array).info.module == "cloudpickle"
    assert models.get("objs").load().tolist() == [{"a": 1}, None]


def test_torch_module_round_trip(store: Path) -> None:
    net = Net()
    m = models.save("net", net)
    assert (m.info.module, m.info.options) == ("torch", {"kind": "module", "format": "safetensors"})
    assert entry_files(m) == ["model.yaml", "module.pkl", "weights.safetensors"]
    assert m.info.context.framework_versions == {"torch": torch.__version__}
    loaded = models.get("net").load()
    assert isinstance(loaded, Net)
    x = torch.randn(3, 4)
    torch.testing.assert_close(loaded(x), net(x))


def test_torch_state_dict_and_tensor_round_trip(store: Path) -> None:
    state = Net().state_dict()
    m = models.save("weights", state)
    assert m.info.options == {"kind": "tensors", "format": "safetensors"}
    assert entry_files(m) == ["model.yaml", "tree.json", "weights.safetensors"]
    loaded = models.get("weights").load()
    assert list(loaded) == list(state)
    assert loaded._metadata == state._metadata  # type: ignore[attr-defined]
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value)

    tensor = torch.arange(6).reshape(2, 3)
    models.save("tensor", tensor)
    torch.testing.assert_close(models.get("tensor").load(), tensor)


def test_entries_in_the_earlier_formats_still_load(store: Path) -> None:
    """Before stable versions: `torch.save`d modules and state dicts, plain pickles."""
    net = Net().eval()
    with models.create("old-net", module="torch", options={"kind": "module"}) as m:
        torch.save(net, m.path_of("model.pt"), pickle_module=cloudpickle)
    with models.create("old-weights", module="torch", options={"kind": "tensors"}) as m:
        torch.save(net.state_dict(), m.path_of("weights.pt"))
    with models.create("old-pickle", module="cloudpickle") as m:
        Path(m.path_of("model.pkl")).write_bytes(pickle.dumps({"a": {1, 2}}, protocol=4))
    x = torch.randn(2, 4)
    torch.testing.assert_close(models.get("old-net").load()(x), net(x))
    assert list(models.get("old-weights").load()) == list(net.state_dict())
    assert models.get("old-pickle").load() == {"a": {1, 2}}


def test_tensors_safetensors_cannot_hold_fall_back_with_a_warning(store: Path) -> None:
    sparse = {"adjacency": torch.eye(3).to_sparse()}
    pickling._warned.clear()
    with pytest.warns(
        UnstableVersionWarning, match=r"'adjacency' is torch\.sparse_coo.*torch\.save"
    ):
        m = models.save("graph", sparse)
    assert entry_files(m) == ["model.yaml", "weights.pt"]
    torch.testing.assert_close(models.get("graph").load()["adjacency"].to_dense(), torch.eye(3))


def test_exported_program_round_trip(store: Path) -> None:
    program = torch.export.export(Net(), (torch.randn(2, 4),))
    assert models.save("exported", program).info.options == {"kind": "exported"}
    loaded = models.get("exported").load()
    x = torch.randn(2, 4)
    torch.testing.assert_close(loaded.module()(x), program.module()(x))


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # torch 2.13 deprecates it
def test_torchscript_round_trip(store: Path) -> None:
    scripted = torch.jit.script(Net())
    pickling._warned.clear()
    with pytest.warns(UnstableVersionWarning, match="TorchScript"):
        models.save("scripted", scripted)
    loaded = models.get("scripted").load()
    x = torch.randn(2, 4)
    torch.testing.assert_close(loaded(x), scripted(x))


def test_cloudpickle_round_trip(store: Path) -> None:
    m = models.save("scaler", Scaler(3.0))
    assert m.info.module == "cloudpickle"
    assert "cloudpickle" in m.info.context.framework_versions
    assert models.get("scaler").load()(2.0) == 6.0


def test_module_forces_or_refuses_a_format(store: Path) -> None:
    assert models.save("a", np.arange(3), module="cloudpickle").info.module == "cloudpickle"
    with pytest.raises(InvalidArgument, match="cannot store"):
        models.save("a", Scaler(1.0), module="torch")
    with pytest.raises(InvalidArgument, match="not a format"):
        models.save("a", Scaler(1.0), module="onnx")


def test_a_created_entry_has_no_object_to_load(store: Path) -> None:
    with models.create("files", module="custom") as m:
        Path(m.path_of("a.txt")).write_text("a")
    with pytest.raises(NbserveError, match="holds files"):
        models.get("files").load()


def _fake_transformers(monkeypatch: pytest.MonkeyPatch) -> type:
    """A stand-in for transformers with a save_pretrained/from_pretrained class."""

    class FakeModel:
        def __init__(self, weights: list[int]) -> None:
            self.weights = weights

        def save_pretrained(self, directory: str) -> None:
            Path(directory, "weights.json").write_text(json.dumps(self.weights))

        @classmethod
        def from_pretrained(cls, directory: str, **kwargs: Any) -> FakeModel:
            assert kwargs == {"local_files_only": True}
            return cls(json.loads(Path(directory, "weights.json").read_text()))

    FakeModel.__module__ = "transformers.fake"
    package = types.ModuleType("transformers")
    package.__version__ = "0.0-fake"  # type: ignore[attr-defined]
    submodule = types.ModuleType("transformers.fake")
    submodule.FakeModel = FakeModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "transformers", package)
    monkeypatch.setitem(sys.modules, "transformers.fake", submodule)
    return FakeModel


def test_transformers_objects_use_save_pretrained(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_transformers(monkeypatch)
    m = models.save("hf", fake([1, 2]))
    assert m.info.module == "transformers"
    assert m.info.options == {"class": "FakeModel", "class_module": "transformers.fake"}
    assert m.info.context.framework_versions["transformers"] == "0.0-fake"
    assert entry_files(m) == ["model.yaml", "weights.json"]
    assert models.get("hf").load().weights == [1, 2]

    bundle = models.save("hf-pair", {"model": fake([1]), "tokenizer": fake([2])})
    assert entry_files(bundle) == ["model.yaml", "model/weights.json", "tokenizer/weights.json"]
    loaded = models.get("hf-pair").load()
    assert (loaded["model"].weights, loaded["tokenizer"].weights) == ([1], [2])


def test_real_transformers_round_trip(store: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    model = transformers.BertModel(config).eval()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]))
    tokenizer = transformers.BertTokenizer(vocab_file=str(vocab))
    models.save("bert", {"model": model, "tokenizer": tokenizer})
    loaded = models.get("bert").load()
    ids = loaded["tokenizer"]("hello world", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            loaded["model"](**ids).last_hidden_state, model(**ids).last_hidden_state
        )


# -- verification -------------------------------------------------------------------------------


def test_a_tampered_file_is_refused_naming_file_hashes_and_fix(store: Path) -> None:
    m = models.save("arr", np.arange(100))
    fetched = models.get("arr")
    target = Path(m.path_of("array.npy"))
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    stat = target.stat()
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    with pytest.raises(models.CorruptModelError) as info:
        models.get("arr")
    message = str(info.value)
    assert "array.npy" in message
    assert m.info.files["array.npy"] in message
    assert f"nbserve.models.delete('arr:{m.version}')" in message
    with pytest.raises(models.CorruptModelError):
        fetched.load()  # a Model fetched before the change is checked again on load

    repaired = models.save("arr", np.arange(100))  # saving again replaces the damaged entry
    assert repaired.version == m.version
    np.testing.assert_array_equal(models.get("arr").load(), np.arange(100))


@pytest.mark.parametrize("damage", ["delete", "add", "edit-yaml", "garbage-yaml", "symlink"])
def test_a_damaged_entry_is_refused(store: Path, damage: str) -> None:
    m = models.save("arr", np.arange(5), metadata={"acc": 0.5})
    root = Path(m.path)
    if damage == "delete":
        (root / "array.npy").unlink()
        expected = "missing"
    elif damage == "add":
        (root / "extra.bin").write_bytes(b"!")
        expected = "not listed"
    elif damage == "edit-yaml":
        text = (root / "model.yaml").read_text().replace("acc: 0.5", "acc: 0.99")
        (root / "model.yaml").write_text(text)
        expected = "hashes to version"
    elif damage == "garbage-yaml":
        (root / "model.yaml").write_text("{{ not yaml")
        expected = "unreadable"
    else:
        os.symlink("/etc/hostname", root / "link")
        expected = "symlink"
    with pytest.raises(models.CorruptModelError, match=expected):
        models.get("arr").load()


def test_model_pickles_to_workers_with_its_verified_hashes(store: Path) -> None:
    m = models.get(models.save("scaler", Scaler(2.0)).tag)
    clone = pickle.loads(cloudpickle.dumps(m))
    assert clone == m
    assert clone.load()(1.0) == 2.0


# -- tags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "-model",
        "model-",
        "my model",
        "a" * 64,
        "model:",
        "model:v 1",
        "model:v1:x",
        "mødel",
        42,
    ],
)
def test_bad_tags_are_refused_naming_the_value_and_rule(store: Path, tag: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        models.save(tag, np.arange(2))
    assert repr(tag) in str(info.value) or "nothing after" in str(info.value)
    assert "e.g." in str(info.value) or "write" in str(info.value)


def test_uppercase_is_lowered_with_a_logged_warning(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="nbserve.models"):
        m = models.save("Iris", np.arange(2))
    assert m.name == "iris"
    assert "lowercase" in caplog.text
    assert models.get("IRIS") == m
    assert str(models.Tag("iris", "v1")) == "iris:v1"


def test_missing_models_raise_not_found_with_a_hint(store: Path) -> None:
    with pytest.raises(NotFound, match=r"nbserve\.models\.save\('nope', obj\)"):
        models.get("nope")
    models.save("here", np.arange(2))
    with pytest.raises(NotFound, match="versions of 'here'"):
        models.get("here:zzzzzzzzzzzzzzzz")


# -- list / delete ----------------------------------------------------------------------------


def test_list_and_delete(store: Path) -> None:
    a1 = models.save("a", np.arange(1), labels={"v": "1"})
    a2 = models.save("a", np.arange(2), labels={"v": "2"})
    b = models.save("b", np.arange(3))
    listed = models.list()
    assert [(m.name, m.version) for m in listed] == [
        ("a", a1.version),
        ("a", a2.version),
        ("b", b.version),
    ]
    assert [m.info.labels for m in listed[:2]] == [{"v": "1"}, {"v": "2"}]
    assert all(m.file_size > 0 for m in listed)
    assert models.list("a:latest") == [a2]
    assert models.list(f"a:{a1.version}") == [a1]
    assert models.list("nothing") == []

    models.delete("a:latest")  # the latest version goes; latest falls back to the newest left
    assert models.get("a") == a1
    assert (store / "a" / "latest").read_text() == a1.version
    models.delete(f"a:{a1.version}")
    assert not (store / "a").exists()
    models.delete("b")
    assert models.list() == []
    with pytest.raises(NotFound):
        models.delete("b")
    with pytest.raises(NotFound):
        models.delete("b:abc")


def test_latest_is_rebuilt_when_missing(store: Path) -> None:
    models.save("a", np.arange(1))
    newest = models.save("a", np.arange(2))
    (store / "a" / "latest").unlink()
    assert models.get("a") == newest


# -- BentoModel -------------------------------------------------------------------------------


def test_bento_model_resolves_lazily_as_a_class_attribute(store: Path) -> None:
    class Service:
        model = models.BentoModel("iris:latest")  # nothing is stored yet: no error here

    assert isinstance(Service.model, models.BentoModel)
    assert Service.model.stored is None
    stored = models.save("iris", Scaler(4.0))
    service = Service()
    assert service.model == stored
    assert service.model.load()(1.0) == 4.0
    assert models.BentoModel("iris").path == stored.path  # attribute access resolves too
    clone = pickle.loads(cloudpickle.dumps(Service))  # workers get the class by cloudpickle
    assert clone().model == stored


def test_referenced_models_lists_what_a_service_uses(store: Path) -> None:
    from nbserve._models.model import referenced_models

    a = models.save("a", np.arange(1))
    b = models.save("b", np.arange(2))

    class Base:
        first = models.get("a")

    class Service(Base):
        second = models.BentoModel("b")
        again = models.get("a")

    assert referenced_models(Service) == [a, b]


# -- export / import --------------------------------------------------------------------------


def test_export_import_round_trip_is_reproducible(store: Path, tmp_path: Path) -> None:
    m = models.save("net", Net().state_dict(), labels={"k": "v"})
    first = models.export_model("net", tmp_path)
    assert Path(first).name == f"net-{m.version}.nbmodel"
    second = models.export_model(m, tmp_path / "copy.nbmodel")
    assert Path(first).read_bytes() == Path(second).read_bytes()

    with tarfile.open(first) as tar:
        members = tar.getmembers()
    assert [t.name for t in members] == ["model.yaml", "tree.json", "weights.safetensors"]
    assert {(t.mtime, t.uid, t.gid, t.uname, t.mode) for t in members} == {(0, 0, 0, "", 0o644)}

    models.delete("net")
    imported = models.import_model(first)
    assert imported == models.get("net")
    assert imported.version == m.version
    assert imported.info.labels == {"k": "v"}
    assert imported.creation_time == m.creation_time
    assert models.import_model(first) == imported  # importing again is a no-op


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([(_member("../escape.txt"), b"x")], "'..'"),
        ([(_member("/tmp/abs-escape.txt"), b"x")], "absolute"),
        (
            [(_member("link", tarfile.SYMTYPE, "../.."), None), (_member("link/escape.txt"), b"x")],
            "link",
        ),
        ([(_member("hard", tarfile.LNKTYPE, "/etc/passwd"), None)], "link"),
        ([(_member("dev", tarfile.CHRTYPE), None)], "device"),
        ([(_member("a.txt"), b"x"), (_member("a.txt"), b"y")], "twice"),
        ([(_member("weights.bin"), b"x")], "no top-level model.yaml"),
    ],
)
def test_malicious_archives_are_refused_without_writing(
    store: Path, tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], expected: str
) -> None:
    archive = _archive(tmp_path / "evil.nbmodel", members)
    before = sorted(str(p) for p in tmp_path.rglob("*") if not p.is_dir())
    with pytest.raises(InvalidArgument, match=expected):
        models.import_model(archive)
    assert sorted(str(p) for p in tmp_path.rglob("*") if not p.is_dir()) == before
    assert not Path("/tmp/abs-escape.txt").exists()
    assert models.list() == []
    assert not (store / ".tmp").exists() or list((store / ".tmp").iterdir()) == []


def test_an_archive_with_altered_content_or_over_max_size_is_refused(
    store: Path, tmp_path: Path
) -> None:
    m = models.save("arr", np.arange(10))
    good = Path(models.export_model(m, tmp_path))
    yaml_bytes = Path(m.path_of("model.yaml")).read_bytes()
    models.delete("arr")
    altered = _archive(
        tmp_path / "altered.nbmodel",
        [(_member("model.yaml"), yaml_bytes), (_member("array.npy"), b"not the saved bytes")],
    )
    with pytest.raises(InvalidArgument, match="do not match"):
        models.import_model(altered)
    with pytest.raises(InvalidArgument, match="max_size"):
        models.import_model(good, max_size=10)
    (tmp_path / "junk.nbmodel").write_bytes(gzip.compress(b"junk"))
    with pytest.raises(InvalidArgument, match="not a readable tar"):
        models.import_model(tmp_path / "junk.nbmodel")
    assert models.list() == []


# -- import cost ------------------------------------------------------------------------------


def test_importing_the_store_is_cheap() -> None:
    code = "import json, sys, nbserve.models; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code])))
    heavy = {
        "torch",
        "transformers",
        "pandas",
        "tornado",
        "multiprocessing",
        "cloudpickle",
        "tarfile",
    }
    assert loaded & heavy == set()
