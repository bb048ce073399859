"""A bento carries its `HuggingFaceModel` attributes: packed at build, found when served."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from nbserve._bento import archive, builder, loader, sources
from nbserve._models.huggingface import HuggingFaceModel, packed_name
from nbserve.exceptions import NotFound

safetensors_numpy = pytest.importorskip("safetensors.numpy")
pytest.importorskip("huggingface_hub")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONFIG = {"model_type": "bert", "hidden_size": 8, "transformers_version": "4.0.0"}
SERVICE = """\
import json
import os

import nbserve
from nbserve.models import HuggingFaceModel
from safetensors.numpy import load_file


@nbserve.service
class Reader:
    path = HuggingFaceModel("Acme/tiny-bert", exclude=["*.bin"])

    def __init__(self) -> None:
        with open(os.path.join(self.path, "config.json")) as f:
            self.hidden = json.load(f)["hidden_size"]
        self.weights = load_file(os.path.join(self.path, "model.safetensors"))["w"]

    @nbserve.api
    def read(self, x: float) -> dict[str, object]:
        return {
            "hidden": self.hidden,
            "total": float(self.weights.sum()) * x,
            "path": self.path,
            "files": sorted(os.listdir(self.path)),
        }
"""


def hf_cache(root: Path, model_id: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry as huggingface_hub writes it: files in `blobs/` by hash,
    a snapshot of links to them, `refs/main` naming the commit. Returns the snapshot."""
    repo = root / f"models--{model_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    snapshot = repo / "snapshots" / COMMIT
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def model_files(tmp_path: Path) -> dict[str, bytes]:
    safetensors_numpy.save_file({"w": np.arange(4, dtype=np.float32)}, tmp_path / "w.st")
    return {
        "config.json": json.dumps(CONFIG).encode(),
        "model.safetensors": (tmp_path / "w.st").read_bytes(),
        "pytorch_model.bin": b"not packed: excluded",
        "tokenizer/vocab.txt": b"[PAD]\n[UNK]\n",
    }


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NBSERVE_MODEL_STORE", "")  # so the loader's setting is undone after
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NBSERVE_HF_CACHE_DIR", str(tmp_path / "hub"))
    monkeypatch.setattr(builder, "nbserve_wheel", lambda cache, **_: None)
    (tmp_path / "service.py").write_text(SERVICE)
    previous = sys.modules.get("service")
    yield
    sys.modules.pop("service", None)
    if previous is not None:
        sys.modules["service"] = previous


def build(tmp_path: Path, out: str = "dist") -> Path:
    return sources.build_file(tmp_path / "service.py", "Reader", tmp_path / out)


def members(path: Path) -> dict[str, bytes]:
    with archive.open_tar(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def test_the_bento_carries_the_model_and_serves_it_without_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = model_files(tmp_path)
    hf_cache(tmp_path / "hub", "Acme/tiny-bert", files)
    bento = build(tmp_path)

    inside = members(bento)
    info = yaml.safe_load(inside["bento.yaml"])
    (entry,) = info["models"]
    name, version = entry["tag"].split(":")
    assert name == "acme--tiny-bert"  # BentoML's name for it
    assert entry["registry"] == "huggingface"
    assert entry["metadata"] == {
        "model_id": "Acme/tiny-bert",
        "revision": "main",
        "include": None,
        "exclude": ["*.bin"],
        "commit": COMMIT,
    }
    assert info["services"][0]["models"] == [entry["tag"]]
    prefix = f"models/{name}/{version}"
    assert inside[f"{prefix}/snapshot/model.safetensors"] == files["model.safetensors"]
    assert inside[f"{prefix}/snapshot/tokenizer/vocab.txt"] == files["tokenizer/vocab.txt"]
    assert f"{prefix}/snapshot/pytorch_model.bin" not in inside  # exclude=["*.bin"]
    assert inside[f"models/{name}/latest"] == version.encode()
    record = yaml.safe_load(inside[f"{prefix}/model.yaml"])
    assert record["creation_time"] == "2020-01-01T00:00:00+00:00"
    # config.json names transformers: where it is installed, the bento pins it to load the model.
    if importlib.util.find_spec("transformers") is not None:
        assert "transformers" in record["context"]["framework_versions"]
        assert b"\ntransformers==" in b"\n" + inside["env/python/requirements.txt"]

    # Elsewhere: no Hugging Face cache at all, the Hub off, an empty nbserve home.
    shutil.rmtree(tmp_path / "hub")
    monkeypatch.delenv("NBSERVE_HF_CACHE_DIR")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "elsewhere"))
    service = loader.load_bento_service(bento)
    answer = service().read(2.0)
    assert answer["hidden"] == 8
    assert answer["total"] == 12.0
    assert answer["files"] == ["config.json", "model.safetensors", "tokenizer"]
    extracted = tmp_path / "elsewhere" / "bentos" / "reader"
    assert Path(str(answer["path"])).is_relative_to(extracted)
    assert str(answer["path"]).endswith(f"{prefix}/snapshot")


def test_the_same_model_gives_the_same_archive_and_other_files_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = model_files(tmp_path)
    hf_cache(tmp_path / "hub", "Acme/tiny-bert", files)
    first = build(tmp_path, "a")
    # The same files in another cache, in another place: the same bytes.
    hf_cache(tmp_path / "hub2", "Acme/tiny-bert", files)
    monkeypatch.setenv("NBSERVE_HF_CACHE_DIR", str(tmp_path / "hub2"))
    second = build(tmp_path, "b")
    assert first.name == second.name
    assert first.read_bytes() == second.read_bytes()

    hf_cache(tmp_path / "hub3", "Acme/tiny-bert", {**files, "config.json": b"{}"})
    monkeypatch.setenv("NBSERVE_HF_CACHE_DIR", str(tmp_path / "hub3"))
    third = build(tmp_path, "c")
    assert third.name != first.name
    old = yaml.safe_load(members(first)["bento.yaml"])["models"][0]["tag"]
    new = yaml.safe_load(members(third)["bento.yaml"])["models"][0]["tag"]
    assert old != new  # the entry's version is a hash of its content


def test_a_local_directory_is_packed_and_found_by_the_same_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "models" / "My Model"
    (model / ".git").mkdir(parents=True)
    (model / ".git" / "HEAD").write_text("history stays behind")
    (model / "config.json").write_text(json.dumps(CONFIG))
    safetensors_numpy.save_file({"w": np.ones(3, dtype=np.float32)}, model / "model.safetensors")
    source = SERVICE.replace('"Acme/tiny-bert", exclude=["*.bin"]', repr(str(model)))
    (tmp_path / "service.py").write_text(source)
    bento = build(tmp_path)
    names = [n for n in members(bento) if n.startswith("models/")]
    assert not [n for n in names if ".git" in n]

    shutil.rmtree(model)
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "elsewhere"))
    answer = loader.load_bento_service(bento)().read(1.0)
    assert answer["total"] == 3.0
    assert "/models/my-model/" in str(answer["path"])


def test_a_model_the_bento_does_not_carry_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBSERVE_MODEL_STORE", str(tmp_path / "bento-models"))
    with pytest.raises(NotFound, match=r"does not carry it: .*class attribute of the service"):
        HuggingFaceModel("acme/absent").resolve()


def test_an_empty_selection_is_an_error_that_names_the_patterns(tmp_path: Path) -> None:
    hf_cache(tmp_path / "hub", "Acme/tiny-bert", model_files(tmp_path))
    (tmp_path / "service.py").write_text(SERVICE.replace('exclude=["*.bin"]', 'include=["*.onnx"]'))
    with pytest.raises(Exception, match=r"holds no files to pack \(include=\['\*\.onnx'\]"):
        build(tmp_path)


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers--all-minilm-l6-v2"),
        ("gpt2", "gpt2"),
        ("/srv/models/My Model/", "my-model"),
        ("./checkpoints/run_1", "run_1"),
        ("a/" + "b" * 80, "a--" + "b" * 51 + "-"),
    ],
)
def test_entry_names_are_valid_tags_from_the_id_alone(model_id: str, name: str) -> None:
    got = packed_name(model_id)
    assert got.startswith(name)
    assert len(got) <= 63
