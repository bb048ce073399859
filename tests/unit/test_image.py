"""Image builds: the reproducible build context, the engine choice, what the cache reused."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from nbserve._bento.image import (
    EngineNotFound,
    build_args,
    build_command,
    cached_layers,
    context_tar,
    default_tag,
    find_engine,
)

FILES = {
    "bento.yaml": "name: iris\nversion: abc\n",
    "src/service.py": "print('hi')\n",
    "env/python/requirements.txt": "numpy==2.0\n",
    "env/python/install.sh": "#!/bin/sh\n",
    "env/docker/Dockerfile": "FROM x\n",
    "models/clf/v1/model.yaml": "name: clf\n",
}


def _bento(root: Path, mtime: int) -> Path:
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o700 if name.endswith(".sh") else 0o600)  # a umask the context must not keep
        os.utime(path, (mtime, mtime))
    return root


def test_the_same_bento_gives_the_same_context_bytes(tmp_path: Path) -> None:
    first = context_tar(_bento(tmp_path / "a", 1_000_000_000))
    second = context_tar(_bento(tmp_path / "elsewhere" / "b", 1_700_000_000))
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(n for n, m in members.items() if m.isfile()) == sorted(FILES)
    assert {m.mtime for m in members.values()} == {1577836800}
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert members["env/python/install.sh"].mode == 0o755
    assert members["src/service.py"].mode == 0o644
    assert members["models/clf/v1"].isdir()  # directories are explicit, 0755


def test_a_changed_file_changes_the_context(tmp_path: Path) -> None:
    bento = _bento(tmp_path, 0)
    before = context_tar(bento)
    (bento / "src/service.py").write_text("print('changed')\n")
    assert context_tar(bento) != before


def test_the_default_tag_is_the_name_as_a_dns_label_and_the_version() -> None:
    assert default_tag({"name": "Iris_Classifier", "version": "abc123"}) == "iris-classifier:abc123"


def test_without_an_engine_the_error_is_one_line_naming_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineNotFound) as caught:
        find_engine()
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install docker.io" in message
    assert "Podman" in message
    assert "--print" in message


def test_the_first_engine_found_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    true = shutil.which("true")
    assert true is not None
    (tmp_path / "podman").symlink_to(true)
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = find_engine()
    assert (engine.name, engine.path) == ("podman", str(tmp_path / "podman"))
    with pytest.raises(EngineNotFound, match=r"\(docker is not on PATH\)"):
        find_engine("docker")


def test_build_commands_per_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    assert build_command("docker", "iris:v1", "-") == [
        "docker", "build", "-f", "env/docker/Dockerfile", "-t", "iris:v1", "-",
    ]  # fmt: skip
    assert build_command("buildah", "iris:v1", "/ctx", "debian-py:12") == [
        "buildah", "bud", "-f", "env/docker/Dockerfile", "-t", "iris:v1",
        "--build-arg", "BASE_IMAGE=debian-py:12", "/ctx",
    ]  # fmt: skip


def test_pip_index_settings_go_in_by_name_never_by_value() -> None:
    env = {"PIP_INDEX_URL": "https://user:secret@pypi.example/simple", "PIP_CERT": "/ca.pem"}
    assert build_args(None, env) == ["--build-arg", "PIP_INDEX_URL"]


CLASSIC = """\
Step 7/22 : COPY env/python/ env/python/
 ---> Using cache
 ---> 1f2e3d
Step 11/22 : RUN sh env/python/install.sh
 ---> Using cache
Step 12/22 : COPY models/ models/
 ---> Using cache
Step 14/22 : COPY apis/ apis/
 ---> 9a8b7c
Step 17/22 : COPY src/ src/
 ---> 0d1e2f
"""
PODMAN = """\
STEP 7/22: COPY env/python/ env/python/
--> Using cache 1f2e3d4c
STEP 11/22: RUN sh env/python/install.sh
--> Using cache 5a6b7c8d
STEP 12/22: COPY models/ models/
--> 9e8d7c6b
STEP 17/22: COPY src/ src/
--> 0d1e2f3a
"""
BUILDKIT = """\
#8 [3/14] COPY env/python/ env/python/
#9 [4/14] RUN sh env/python/install.sh
#8 CACHED
#9 CACHED
#10 [5/14] COPY models/ models/
#10 CACHED
#11 [9/14] COPY src/ src/
#11 DONE 0.1s
"""


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (CLASSIC, {"requirements": True, "models": True, "code": False}),
        (PODMAN, {"requirements": True, "models": False, "code": False}),
        (BUILDKIT, {"requirements": True, "models": True, "code": False}),
        ("Step 1/2 : FROM x\n", {}),
    ],
    ids=["docker classic", "podman", "buildkit", "no layers"],
)
def test_the_layers_the_cache_answered(output: str, expected: dict[str, bool]) -> None:
    assert cached_layers(output.splitlines()) == expected
