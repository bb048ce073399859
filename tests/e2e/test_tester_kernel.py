"""The tester in a real kernel, driven over the Jupyter protocol the way a front end drives it.

A kernel runs `%%serve`; the test then plays JupyterLab's part: it reads the widget's model id
from the display output and sends `comm_msg`s (anywidget custom messages) to it, and reads the
kernel's answers from IOPub. So the whole path is real: comm → handler → bridge thread → HTTP
to the service → comm messages back. Also: `--no-tester`, `nbserve.tester(NAME)`, and
`%serve loadtest` with its report, plot and samples.
"""

from __future__ import annotations

import json
import os
import queue
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

ECHO = """\
%%serve {options}
import nbserve

@nbserve.service
class Echo:
    @nbserve.api
    def shout(self, text: str, times: int = 1) -> str:
        return text.upper() * times
"""
TESTER = "nbserve request tester for 'Echo': shout"
WIDGET = "application/vnd.jupyter.widget-view+json"


class Kernel:
    def __init__(self, client: Any) -> None:
        self.kc = client
        self.comm_messages: list[dict[str, Any]] = []

    def run(self, code: str, timeout: float = 120) -> list[dict[str, Any]]:
        """Execute `code`; its outputs (stream, display_data, execute_result, error)."""
        msg_id = self.kc.execute(code)
        outputs: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            kind = msg["msg_type"]
            if kind.startswith("comm_"):
                self.comm_messages.append(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"output_type": kind, **msg["content"]})
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                errors = [o for o in outputs if o["output_type"] == "error"]
                assert not errors, "\n".join(errors[0]["traceback"])
                return outputs
        raise TimeoutError(code)

    def comm_send(self, comm_id: str, content: dict[str, Any]) -> None:
        """What anywidget's `model.send(content)` puts on the wire."""
        msg = self.kc.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}}
        )
        self.kc.shell_channel.send(msg)

    def custom_messages(
        self, comm_id: str, until: str, timeout: float = 30
    ) -> list[dict[str, Any]]:
        """The widget's custom messages to the page, up to the first of type `until`."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.comm_messages:
                data = msg["content"].get("data", {})
                if msg["content"].get("comm_id") == comm_id and data.get("method") == "custom":
                    seen.append({**data["content"], "buffers": msg.get("buffers", [])})
            self.comm_messages.clear()
            if any(m.get("type") == until for m in seen):
                return seen
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            if msg["msg_type"].startswith("comm_"):
                self.comm_messages.append(msg)
        raise TimeoutError(f"no {until!r} message; got {seen}")


def texts(outputs: list[dict[str, Any]]) -> list[str]:
    return [
        o["data"]["text/plain"]
        for o in outputs
        if o["output_type"] in ("display_data", "execute_result")
    ]


# ipykernel major → what to put first on the kernel's path (as tests/e2e/test_kernel.py does):
# comm messages and output from threads are handled differently on the two.
IPYKERNELS = {7: None, 6: REPO / ".venv" / "ipykernel6"}


@pytest.fixture(scope="module", params=sorted(IPYKERNELS, reverse=True), ids="ipykernel{}".format)
def kernel(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kernel]:
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path_factory.mktemp("rt")),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    extra = IPYKERNELS[request.param]
    if extra is not None:
        assert extra.is_dir(), f"{extra} is missing: run `bash scripts/setup`"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra), env.get("PYTHONPATH")) if p)
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        k = Kernel(kc)
        major = k.run("print(__import__('ipykernel').__version__.split('.')[0])")
        assert major[0]["text"].strip() == str(request.param)
        k.run("%load_ext nbserve")
        yield k
        k.run("import nbserve\nnbserve.stop_all()")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_serve_shows_the_tester_and_it_answers_over_the_comm(kernel: Kernel) -> None:
    outputs = kernel.run(ECHO.format(options=""))
    assert texts(outputs) == ["nbserve service 'Echo': running, inline, routes /shout", TESTER]
    widget = outputs[1]["data"][WIDGET]
    comm_id = widget["model_id"]

    rid = uuid.uuid4().hex
    kernel.comm_send(
        comm_id,
        {
            "type": "send",
            "id": rid,
            "api": "shout",
            "path": "/shout",
            "kind": "json",
            "body": json.dumps({"text": "hi", "times": 2}),
        },
    )
    answer = kernel.custom_messages(comm_id, until="done")
    mine = [m for m in answer if m.get("id") == rid]
    assert [m["type"] for m in mine] == ["head", "chunk", "done"]
    assert mine[0]["status"] == 200
    assert len(mine[1]["buffers"]) == 1  # the body travels as a binary buffer
    assert mine[2]["size"] == 4

    # A 400 comes back with the field it names.
    rid = uuid.uuid4().hex
    kernel.comm_send(
        comm_id,
        {"type": "send", "id": rid, "api": "shout", "path": "/shout", "kind": "json", "body": "{}"},
    )
    mine = [m for m in kernel.custom_messages(comm_id, until="done") if m.get("id") == rid]
    assert mine[0]["status"] == 400

    # Nothing the bridge did printed into the notebook.
    outputs = kernel.run("1 + 1")
    assert [(o["output_type"], o["data"]["text/plain"]) for o in outputs] == [
        ("execute_result", "2")
    ]


def test_no_tester_and_the_python_entry_point(kernel: Kernel) -> None:
    outputs = kernel.run(ECHO.format(options="--no-tester"))
    assert texts(outputs) == ["nbserve service 'Echo': running, inline, routes /shout"]
    outputs = kernel.run("import nbserve\nnbserve.tester('Echo')")
    assert texts(outputs) == [TESTER]
    assert WIDGET in outputs[0]["data"]
    outputs = kernel.run("nbserve.services()['Echo'].dashboard()")
    assert texts(outputs) == ["nbserve dashboard for 'Echo': shout"]


def test_loadtest_magic_reports_plots_and_stores_the_samples(kernel: Kernel) -> None:
    outputs = kernel.run(
        "%serve loadtest Echo --route /shout --concurrency 2 --duration 30 --requests 40 --out df"
    )
    data = [o["data"] for o in outputs if o["output_type"] == "display_data"]
    report = next(d for d in data if "text/html" in d and "nbserve load test" in d["text/html"])
    assert report["text/plain"] == "nbserve load test of /shout: 2 clients"
    assert any("image/svg+xml" in d for d in data), "the plot is not in the outputs"
    outputs = kernel.run(
        "print(len(df), df.attrs['summary']['requests'], sorted(set(df['status'])))"
    )
    assert outputs[0]["text"] == "40 40 [200]\n"
    outputs = kernel.run("%serve loadtest Echo --route /nope")
    assert "no API at '/nope'; its routes: /shout" in "".join(o.get("text", "") for o in outputs)
