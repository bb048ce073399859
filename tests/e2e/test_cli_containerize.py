"""`nbserve containerize` where no engine is needed or none exists: `--print`, the error line.

The builds themselves run in test_containerize.py (they need Docker); here PATH holds no
container engine at all, as on a laptop without Docker.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nbserve._bento.deploy import KUBERNETES_VERSION

pytestmark = pytest.mark.slow

SERVICE = """\
import nbserve


@nbserve.service
class Echo:
    @nbserve.api
    def echo(self, text: str) -> str:
        return text
"""


def nbserve_cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    # No docker, podman or buildah on this PATH (the CLI runs by its absolute python path).
    env = {**os.environ, "PATH": str(cwd / "no-engines"), "NBSERVE_HOME": str(home)}
    (cwd / "no-engines").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "nbserve._cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("echo")
    (work / "service.py").write_text(SERVICE)
    done = nbserve_cli("build", "service.py:Echo", "-o", "dist", cwd=work, home=work / "home")
    assert done.returncode == 0, done.stderr
    (path,) = (work / "dist").glob("*.bento")
    return path


def test_without_an_engine_it_fails_with_one_clear_line(bento: Path, tmp_path: Path) -> None:
    done = nbserve_cli("containerize", str(bento), cwd=tmp_path, home=tmp_path / "home")
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("nbserve containerize: error: no container engine found")
    assert "apt-get install docker.io" in line


def test_print_writes_the_same_context_and_the_command_without_an_engine(
    bento: Path, tmp_path: Path
) -> None:
    contexts = []
    for out in ("one", "two"):  # a fresh cache each time: extracted again, same bytes
        done = nbserve_cli(
            "containerize", str(bento), "--print", "-o", out, cwd=tmp_path, home=tmp_path / out
        )
        assert done.returncode == 0, done.stderr
        (context,) = (tmp_path / out).glob("*.context.tar")
        contexts.append(hashlib.sha256(context.read_bytes()).hexdigest())
        tag = "echo:" + bento.name.removesuffix(".bento").split("-", 1)[1]
        assert done.stdout.splitlines() == [
            f"docker build -f env/docker/Dockerfile -t {tag} - < {context.resolve()}"
        ]
    assert contexts[0] == contexts[1]


def test_print_with_kubernetes_gives_the_manifest_with_the_tag(bento: Path, tmp_path: Path) -> None:
    import kubernetes_validate

    done = nbserve_cli(
        "containerize", str(bento), "--print", "--kubernetes", "-t", "registry.example/echo:1",
        "--base-image", "debian-python:12", cwd=tmp_path, home=tmp_path / "home",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    command, manifest = done.stdout.split("\n", 1)
    assert "--build-arg BASE_IMAGE=debian-python:12" in command
    documents = list(yaml.safe_load_all(manifest))
    deployment = documents[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/echo:1"
    )
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
