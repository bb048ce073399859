"""`%%serve --workers N` in a real ipykernel (nbclient): the workers' start progress is shown and
updated in place (started / loading / ready, with each worker's CPU threads), then gives way to
the status, whose HTML lists the workers."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from test_kernel import Kernel, start_kernel

pytestmark = pytest.mark.slow

SLOW_START = """\
%%serve --workers 2
import time
import nbserve

@nbserve.service
class Loader:
    def __init__(self) -> None:
        time.sleep(1.5)  # loading a model

    @nbserve.api
    def ping(self) -> str:
        return "pong"
"""
ORDER = ["started", "loading", "ready"]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kernel, list[Any]]]:
    client, context = start_kernel(tmp_path_factory.mktemp("runtime"))
    messages: list[Any] = []
    process = client.process_message

    def recording(msg: Any, cell: Any, cell_index: int) -> Any:
        messages.append(msg)
        return process(msg, cell, cell_index)

    client.process_message = recording  # type: ignore[method-assign]
    with context:
        k = Kernel(client, client.nb)
        assert k.run("%load_ext nbserve\nimport nbserve") == []
        yield k, messages
        k.run("nbserve.stop_all()")


def test_worker_start_progress_is_shown_and_updated_in_place(
    kernel: tuple[Kernel, list[Any]],
) -> None:
    k, messages = kernel
    messages.clear()
    outputs = k.run(SLOW_START)
    progress = [
        m
        for m in messages
        if m["msg_type"] in ("display_data", "update_display_data")
        and str(m["content"].get("transient", {}).get("display_id", "")).startswith(
            "nbserve-progress-"
        )
    ]
    assert progress[0]["msg_type"] == "display_data"  # shown once...
    assert {m["msg_type"] for m in progress[1:]} == {"update_display_data"}  # ...then updated
    texts = [m["content"]["data"]["text/plain"] for m in progress]
    assert texts[-1] == ""  # emptied once the service runs
    shown = texts[:-1]
    assert shown[0].startswith("nbserve service 'Loader': starting 2 workers")
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    for index in (0, 1):
        phases = []
        for text in shown:
            part = re.search(rf"worker {index} (\w+)[^;]*", text)
            assert part is not None, text
            phase = part.group(1)
            if not phases or phases[-1] != phase:
                phases.append(phase)
            if phase != "started":
                assert f"({share} CPU thread" in part.group(0)
        assert phases == sorted(phases, key=ORDER.index), phases  # never backwards
        assert "loading" in phases  # __init__ takes 1.5 s: seen while it runs
    assert "(1 ready)" in shown[-1] or "(2 ready)" in shown[-1]
    # The status follows, text as always (deterministic), the workers in its HTML.
    (status,) = [
        o
        for o in outputs
        if o["output_type"] == "display_data"
        and o["data"]["text/plain"].startswith("nbserve service")  # not the request tester
    ]
    assert (
        status["data"]["text/plain"] == "nbserve service 'Loader': running, 2 workers, routes /ping"
    )
    assert "CPU thread" in status["data"]["text/html"]
    assert "worker 0" in status["data"]["text/html"]
