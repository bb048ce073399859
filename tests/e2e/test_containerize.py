"""From a live notebook service to a running container that answers the same.

A real kernel (nbclient) trains an iris classifier, saves it to the model store, serves it under
`%%serve` (a batchable API, a file input, a slow API) and exports it; then the service's code
alone changes and it is exported again. `nbserve containerize` builds the first bento on the
local base image; the container must become `healthy` by Docker's own healthcheck, run as uid
1034, answer as the notebook did, and on SIGTERM finish a request in flight, then exit 0. The
second bento's build must reuse the requirements and models layers. Containers and images are
removed at the end.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
import sklearn
import yaml
from container_engine import DockerEngine
from nbclient import NotebookClient
from notebook_export import kernel_env, run_cell

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SERVICE = """\
%%serve
@nbserve.service(python_packages=["scikit-learn=={sklearn}"], traffic={{"timeout": 30}})
class Iris:
    model = nbserve.models.BentoModel("iris-clf:latest")

    def __init__(self) -> None:
        self.clf = self.model.load()

    @nbserve.api(batchable=True, max_batch_size=16, max_latency_ms=20)
    def classify(self, x: np.ndarray) -> np.ndarray:
        return self.clf.predict(x){change}

    @nbserve.api
    def count_lines(self, doc: Path) -> int:
        return len(doc.read_text().splitlines())

    @nbserve.api
    def slow(self, seconds: float) -> str:
        time.sleep(seconds)
        return "finished"
"""
CELLS = [
    "%load_ext nbserve\nimport time\nfrom pathlib import Path\nimport numpy as np\nimport nbserve\nfrom nbserve import services, stop_all",
    "from sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression\n"
    "X, y = load_iris(return_X_y=True)\nnbserve.models.save('iris-clf', LogisticRegression(max_iter=1000).fit(X, y))",
]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
DOC = b"one\ntwo\nthree\n"


def ask(base: str) -> list[Any]:
    """The answers compared between the notebook and the container."""
    with httpx.Client(base_url=base, timeout=30) as client:
        answers = [client.post("/classify", json={"x": [row]}).json() for row in ROWS]
        answers.append(client.post("/classify", json={"x": ROWS}).json())
        files = {"doc": ("notes.txt", DOC, "text/plain")}
        answers.append(client.post("/count_lines", files=files).json())
    return answers


@pytest.fixture(scope="module")
def bentos(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], Path, Path]:
    """The live answers, the exported bento, and the bento of a code-only change."""
    work = tmp_path_factory.mktemp("notebook")
    nb = nbformat.v4.new_notebook()
    client = NotebookClient(nb, kernel_name="python3", timeout=180, startup_timeout=60)
    env = kernel_env(work)
    with client.setup_kernel(env=env, cwd=str(work)):
        for source in CELLS:
            run_cell(client, nb, source)
        run_cell(client, nb, SERVICE.format(sklearn=sklearn.__version__, change=""))
        answers = json.loads(
            run_cell(
                client,
                nb,
                f"import json, httpx\nfrom typing import Any\nROWS, DOC = {ROWS!r}, {DOC!r}\n{inspect.getsource(ask)}\n"
                "print(json.dumps(ask(services()['Iris'].url)))",
            )
        )
        run_cell(client, nb, f"%serve export Iris -o {work / 'v1'}")
        # The service's code changes (a comment is enough for a new version), nothing else.
        change = "  # rounded later"
        run_cell(client, nb, SERVICE.format(sklearn=sklearn.__version__, change=change))
        run_cell(client, nb, f"%serve export Iris -o {work / 'v2'}")
        run_cell(client, nb, "stop_all()")
    (first,) = (work / "v1").glob("*.bento")
    (second,) = (work / "v2").glob("*.bento")
    assert first.name != second.name
    return answers, first, second


def containerize(engine: DockerEngine, bento: Path, home: Path, *args: str) -> tuple[str, str]:
    """`nbserve containerize BENTO` on the local base: (its stdout, the tag; its stderr)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbserve._cli.main",
            "containerize",
            str(bento),
            "--base-image",
            engine.base_image,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NBSERVE_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip(), done.stderr


@pytest.fixture(scope="module")
def image(
    docker_engine: DockerEngine,
    bentos: tuple[list[Any], Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    """The first bento's image: (tag, build output); removed with every container of it."""
    _, bento, _ = bentos
    home = tmp_path_factory.mktemp("cache")
    tag, output = containerize(docker_engine, bento, home)
    tags = [tag]
    yield tag, output
    for name in docker_engine.run("ps", "-aq", "--filter", f"label=nbserve-test={tag}").split():
        docker_engine.run("rm", "-f", name)
    for built in tags:
        docker_engine.run("rmi", "-f", built, check=False)
    leftover = docker_engine.run("images", "-q", tag)
    assert leftover == "", f"image {tag} was not removed"


class Container:
    """One running container of the image, published on a free host port."""

    def __init__(self, engine: DockerEngine, tag: str, *args: str) -> None:
        self.engine = engine
        self.id = engine.run(
            "run",
            "-d",
            "--cpus",
            "1",
            "--label",
            f"nbserve-test={tag}",
            "-p",
            "127.0.0.1::3000",
            tag,
            *args,
        )
        port = engine.run("port", self.id, "3000/tcp").splitlines()[0].rsplit(":", 1)[1]
        self.url = f"http://127.0.0.1:{port}"

    def health(self) -> str:
        return self.engine.run("inspect", "-f", "{{.State.Health.Status}}", self.id)

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while (status := self.health()) != "healthy":
            assert status in ("starting", "healthy"), (status, self.logs())
            assert time.monotonic() < deadline, f"not healthy: {self.logs()}"
            time.sleep(0.5)

    def logs(self) -> str:
        out, err = self.streams()
        return out + err

    def streams(self) -> tuple[str, str]:
        """What the container wrote to stdout and to stderr."""
        done = subprocess.run(
            [self.engine.docker, "logs", self.id], capture_output=True, text=True, check=False
        )
        return done.stdout, done.stderr

    def remove(self) -> None:
        self.engine.run("rm", "-f", self.id)


@pytest.fixture(params=[()], ids=["text logs"])
def container(
    docker_engine: DockerEngine, image: tuple[str, str], request: pytest.FixtureRequest
) -> Iterator[Container]:
    """A healthy container; `request.param`: arguments after the image (nbserve serve's)."""
    running = Container(docker_engine, image[0], *request.param)
    try:
        running.wait_healthy()
        yield running
    finally:
        running.remove()


def test_the_image_is_tagged_with_the_bento_name_and_version(
    image: tuple[str, str], bentos: tuple[list[Any], Path, Path]
) -> None:
    tag, output = image
    _, bento, _ = bentos
    assert f"{tag.replace(':', '-')}.bento" == bento.name
    assert "Successfully tagged" in output or "naming to" in output  # the engine's own progress


def test_the_container_is_healthy_non_root_and_answers_as_the_notebook(
    container: Container, bentos: tuple[list[Any], Path, Path]
) -> None:
    live_answers, _, _ = bentos
    assert ask(container.url) == live_answers
    assert container.engine.run("exec", container.id, "id", "-u") == "1034"
    # PID 1 is nbserve itself (no shell in between): it is the one that gets SIGTERM.
    status = container.engine.run("exec", container.id, "cat", "/proc/1/status")
    assert re.search(r"^Uid:\s+1034\s", status, re.M), status
    logs = container.logs()
    assert "nbserve: serving Iris at http://0.0.0.0:3000 (routes: " in logs, logs
    # `--cpus 1`: the CPU limit read inside the container (cgroup quota), not the host's cores.
    probe = "from nbserve._runtime.execution.cpus import available_cpus; print(available_cpus())"
    assert container.engine.run("exec", container.id, "python", "-c", probe) == "1"


@pytest.mark.parametrize("container", [("--log-format", "json")], ids=["json logs"], indirect=True)
def test_sigterm_finishes_the_request_in_flight_then_exits_0(container: Container) -> None:
    answer: list[httpx.Response] = []

    def slow() -> None:
        answer.append(httpx.post(f"{container.url}/slow", json={"seconds": 3}, timeout=60))

    request = threading.Thread(target=slow)
    request.start()
    # In flight once the server counts it (its own gauge), not after a guessed sleep.
    with httpx.Client(base_url=container.url, timeout=10) as client:
        while not re.search(
            r'request_in_progress\{[^}]*endpoint="/slow"[^}]*\} 1\.0', client.get("/metrics").text
        ):
            assert request.is_alive(), answer
            time.sleep(0.05)
    container.engine.run("kill", "--signal", "TERM", container.id)
    exit_code = container.engine.run("wait", container.id, timeout=60)
    request.join(30)
    assert [(r.status_code, r.text) for r in answer] == [(200, "finished")]
    assert exit_code == "0", container.logs()
    # `--log-format json` after the image name: stdout only, one JSON object per line.
    out, err = container.streams()
    assert err == ""
    events = [json.loads(line) for line in out.splitlines()]
    serving = [e for e in events if e.get("event") == "serving"]
    assert [e["address"] for e in serving] == ["http://0.0.0.0:3000"]


def test_a_code_only_change_reuses_the_requirements_and_models_layers(
    docker_engine: DockerEngine,
    image: tuple[str, str],
    bentos: tuple[list[Any], Path, Path],
    tmp_path: Path,
) -> None:
    _, _, changed = bentos
    manifest, output = containerize(docker_engine, changed, tmp_path, "--kubernetes")
    tag = "iris:" + changed.name.removesuffix(".bento").split("-", 1)[1]
    try:
        # --kubernetes: the manifest on stdout, with the image just built.
        deployment = next(yaml.safe_load_all(manifest))
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == tag
        assert docker_engine.run("images", "-q", tag) != ""
        steps = _steps(output)
        assert steps["RUN sh env/python/install.sh"] == "cached", output
        assert steps["COPY models/ models/"] == "cached", output
        assert steps["COPY src/ src/"] == "built", output
        assert "layers reused: requirements, models; built: code" in output
    finally:
        docker_engine.run("rmi", "-f", tag, check=False)


def _steps(output: str) -> dict[str, str]:
    """Docker's classic builder output → {instruction: cached | built}."""
    steps: dict[str, str] = {}
    current = ""
    for line in output.splitlines():
        if match := re.match(r"^Step \d+/\d+ : (.*)$", line):
            current = match.group(1).strip()
            steps[current] = "built"
        elif line.startswith(" ---> Using cache") and current:
            steps[current] = "cached"
    return steps
