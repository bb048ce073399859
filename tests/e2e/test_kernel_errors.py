"""Errors as the person at the keyboard sees them, in a real ipykernel driven through nbclient.

A 500 from a service served in the kernel names the exception (type and message, never the
traceback), inline and from a worker process; a failed re-run of a `%%serve` cell shows the
user's frames, not nbserve's, and says which version keeps serving.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_kernel import Kernel, start_kernel

pytestmark = pytest.mark.slow

MODEL = """\
%%serve {options}
import nbserve

@nbserve.service
class {name}:
    def __init__(self) -> None:
        self.features = 4{init}

    @nbserve.api
    def predict(self, rows: list[list[float]]) -> list[int]:
        if len(rows[0]) != self.features:
            raise ValueError(
                f"X has {{len(rows[0])}} features, but LogisticRegression is expecting {{self.features}}"
            )
        return [0 for _ in rows]
"""

CALL = """\
import httpx, json
reply = httpx.post(nbserve.services()[{name!r}].url + "/predict", json={{"rows": [[1.0, 2.0]]}})
print(json.dumps({{"status": reply.status_code, "body": reply.json()}}))
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    client, context = start_kernel(tmp_path_factory.mktemp("runtime"))
    client.allow_errors = True  # the failing cells are the point
    with context:
        k = Kernel(client, client.nb)
        assert k.run("%load_ext nbserve\nimport nbserve") == []
        yield k
        k.run("nbserve.stop_all()")


def model(name: str, options: str = "", init: str = "") -> str:
    return MODEL.format(name=name, options=options, init=init)


def errors(outputs: list[Any]) -> list[Any]:
    return [o for o in outputs if o["output_type"] == "error"]


@pytest.mark.parametrize("options", ["", "--workers 1"], ids=["inline", "worker"])
def test_a_500_names_the_exception_but_never_the_traceback(kernel: Kernel, options: str) -> None:
    name = "Inline" if not options else "InWorker"
    assert errors(kernel.run(model(name, options + " --no-display"))) == []
    outputs = kernel.run(CALL.format(name=name))
    (line,) = [o["text"] for o in outputs if o["output_type"] == "stream"]
    import json

    reply = json.loads(line)
    assert reply["status"] == 500
    message = reply["body"]["error"]
    assert message.startswith(
        "ValueError: X has 2 features, but LogisticRegression is expecting 4 (request id "
    )
    assert reply["body"]["detail"]["exception"] == "ValueError"
    assert "Traceback" not in line
    assert 'File "' not in line
    # The client raises with the same text, so a notebook user sees it at the call.
    outputs = kernel.run(
        f"with nbserve.services()[{name!r}].client() as c:\n    c.predict(rows=[[1.0, 2.0]])"
    )
    (error,) = errors(outputs)
    assert "X has 2 features, but LogisticRegression is expecting 4" in error["evalue"]


def test_a_failed_rerun_shows_the_users_frames_and_what_keeps_serving(kernel: Kernel) -> None:
    assert errors(kernel.run(model("Rerun", "--no-display"))) == []
    url = kernel.value("nbserve.services()['Rerun'].public_url")
    broken = model("Rerun", "--no-display", init="\n        raise RuntimeError('no model file')")
    (error,) = errors(kernel.run(broken))
    assert (error["ename"], error["evalue"]) == ("RuntimeError", "no model file")
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert "raise RuntimeError('no model file')" in text  # the user's own line
    assert "nbserve/_runtime" not in text
    assert "nbserve/_notebook" not in text
    assert "asyncio" not in text
    assert f"version 1 of 'Rerun' keeps serving at {url}" in text
    outputs = kernel.run(
        CALL.format(name="Rerun").replace("[[1.0, 2.0]]", "[[1.0, 2.0, 3.0, 4.0]]")
    )
    assert '"status": 200' in outputs[0]["text"]


def test_a_failed_rerun_with_workers_shows_the_workers_frames_of_the_users_code(
    kernel: Kernel,
) -> None:
    assert errors(kernel.run(model("WorkerRerun", "--no-display --workers 1"))) == []
    broken = model(
        "WorkerRerun",
        "--no-display --workers 1",
        init="\n        raise RuntimeError('no model file')",
    )
    (error,) = errors(kernel.run(broken))
    assert error["ename"] == "WorkerError"
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert "RuntimeError: no model file" in text
    assert re.search(r'File "[^"]+", line 7, in __init__', text)  # the user's line, from the worker
    assert "nbserve/_runtime" not in text
    assert "keeps serving at" in text


def test_a_failed_first_run_says_nothing_is_serving(kernel: Kernel, tmp_path: Path) -> None:
    broken = model("Never", "--no-display", init="\n        raise RuntimeError('no model file')")
    (error,) = errors(kernel.run(broken))
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert "'Never' was not started" in text
    assert "nbserve/_runtime" not in text
