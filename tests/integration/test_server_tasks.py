"""`@task` APIs over real HTTP: submit, status, get, retry, cancel (bentoml.md §2.8, tasks.py).

Requests are written out with httpx, as BentoML's client or curl would send them, so these tests
pin the wire protocol; nbserve's own client is exercised at the end.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import nbserve
from nbserve.exceptions import InvalidArgument
from nbserve.testing import running_service

GATE = threading.Event()
"""`wait` blocks on it: tests clear it to hold a task in progress and set it to release."""
CALLS: list[str] = []
BATCHES: list[int] = []
STATUSES = {"pending", "in_progress", "completed", "failed", "canceled"}


@nbserve.service(threads=1)  # one sync task runs at a time, so a second one stays pending
class Jobs:
    @nbserve.task
    def double(self, x: int) -> int:
        return x * 2

    @nbserve.api(route="/double/get")
    def shadow(self) -> str:
        return "the API routed at /double/get"

    @nbserve.task
    def wait(self, tag: str) -> str:
        CALLS.append(tag)
        assert GATE.wait(10), "the test never released the gate"
        return tag

    @nbserve.task
    def scale(self, x: np.ndarray, factor: float = 2.0) -> np.ndarray:
        return x * factor

    @nbserve.task
    def shout_file(self, doc: Path) -> Path:
        out = doc.with_name("shouted.txt")
        out.write_text(doc.read_text().upper())
        return out

    @nbserve.task
    def fail(self, kind: str) -> str:
        if kind == "invalid":
            raise InvalidArgument("kind 'invalid' is refused on purpose")
        raise RuntimeError("secret-task-detail")

    @nbserve.task
    def created(self, ctx: nbserve.Context) -> str:
        ctx.response.status_code = 201
        ctx.response.headers["X-Job"] = "made"
        return "made"

    @nbserve.task(batchable=True, max_batch_size=8, max_latency_ms=5000)
    def triple(self, xs: list[int]) -> list[int]:
        BATCHES.append(len(xs))
        assert GATE.wait(10), "the test never released the gate"
        return [x * 3 for x in xs]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_service(Jobs) as handle:
        yield handle.url


@pytest.fixture(autouse=True)
def _open_gate() -> Iterator[None]:
    GATE.set()
    CALLS.clear()
    yield
    GATE.set()  # never leave a task blocked for the next test


def submit(url: str, api: str, **kwargs: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/{api}/submit", **kwargs)
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    assert set(status) == {"task_id", "status", "created_at", "executed_at"}
    assert re.fullmatch(r"[0-9a-f]{32}", status["task_id"])
    assert status["status"] in STATUSES
    return status


def status_of(url: str, api: str, task_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/{api}/status", params={"task_id": task_id})
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


def wait_for(url: str, api: str, task_id: str, *wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (status := status_of(url, api, task_id))["status"] not in wanted:
        assert time.monotonic() < deadline, status
        time.sleep(0.01)
    return status


def error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"}
    for word in words:
        assert word in body["error"], (word, body["error"])
    return body


def test_submit_status_get(url: str) -> None:
    task = submit(url, "double", json={"x": 21})
    done = wait_for(url, "double", task["task_id"], "completed")
    created = datetime.fromisoformat(done["created_at"])
    executed = datetime.fromisoformat(done["executed_at"])
    assert created.tzinfo is not None
    assert created <= executed
    result = httpx.get(f"{url}/double/get", params={"task_id": task["task_id"]})
    assert result.status_code == 200
    assert result.json() == 42
    assert result.headers["content-type"] == "application/json"
    assert httpx.post(f"{url}/double", json={"x": 21}).json() == 42  # still callable directly


def test_results_are_encoded_like_a_direct_call(url: str, tmp_path: Path) -> None:
    body = {"x": [[1.0, 2.0]], "factor": 0.5}
    direct = httpx.post(f"{url}/scale", json=body)
    task = submit(url, "scale", json=body)
    wait_for(url, "scale", task["task_id"], "completed")
    replay = httpx.get(f"{url}/scale/get", params={"task_id": task["task_id"]})
    assert (replay.status_code, replay.content) == (200, direct.content)
    assert replay.headers["content-type"] == direct.headers["content-type"]
    # A file input is saved before the task runs and kept until it has finished.
    files = {"doc": ("note.txt", b"hello", "text/plain")}
    task = submit(url, "shout_file", files=files)
    wait_for(url, "shout_file", task["task_id"], "completed")
    replay = httpx.get(f"{url}/shout_file/get", params={"task_id": task["task_id"]})
    assert replay.content == b"HELLO"
    assert replay.headers["content-disposition"] == 'attachment; filename="shouted.txt"'


def test_context_response_is_replayed(url: str) -> None:
    task = submit(url, "created")
    wait_for(url, "created", task["task_id"], "completed")
    replay = httpx.get(f"{url}/created/get", params={"task_id": task["task_id"]})
    assert (replay.status_code, replay.text, replay.headers["x-job"]) == (201, "made", "made")


def test_pending_tasks_can_be_canceled_running_ones_not(url: str) -> None:
    GATE.clear()
    first = submit(url, "wait", json={"tag": "first"})["task_id"]
    running = wait_for(url, "wait", first, "in_progress")
    assert running["executed_at"] is not None
    second = submit(url, "wait", json={"tag": "second"})["task_id"]
    pending = status_of(url, "wait", second)
    assert (pending["status"], pending["executed_at"]) == ("pending", None)

    not_yet = httpx.get(f"{url}/wait/get", params={"task_id": first})
    error(not_yet, 400, f"task {first} is not completed yet (it is in_progress)")
    error(httpx.post(f"{url}/wait/retry", params={"task_id": first}), 400, "not completed yet")
    busy = httpx.put(f"{url}/wait/cancel", params={"task_id": first})
    error(busy, 400, f"task {first} is already running", "cannot be canceled")

    canceled = httpx.put(f"{url}/wait/cancel", params={"task_id": second})
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    assert httpx.put(f"{url}/wait/cancel", params={"task_id": second}).status_code == 200
    no_result = httpx.get(f"{url}/wait/get", params={"task_id": second})
    error(no_result, 400, f"task {second} was canceled", f"/wait/retry?task_id={second}")

    GATE.set()
    wait_for(url, "wait", first, "completed")
    assert httpx.get(f"{url}/wait/get", params={"task_id": first}).text == "first"
    finished = httpx.put(f"{url}/wait/cancel", params={"task_id": first})
    error(finished, 400, "has already finished (completed); there is nothing to cancel")
    assert status_of(url, "wait", second)["status"] == "canceled"
    assert CALLS == ["first"]  # the canceled task never ran

    # A canceled task can be retried: a new task with the same request.
    retried = httpx.post(f"{url}/wait/retry", params={"task_id": second})
    assert retried.status_code == 200
    again = retried.json()["task_id"]
    assert again != second
    wait_for(url, "wait", again, "completed")
    assert httpx.get(f"{url}/wait/get", params={"task_id": again}).text == "second"


def test_retry_resubmits_a_finished_task(url: str, tmp_path: Path) -> None:
    files = {"doc": ("note.txt", b"again", "text/plain")}
    task = submit(url, "shout_file", files=files)["task_id"]
    wait_for(url, "shout_file", task, "completed")
    retried = httpx.post(f"{url}/shout_file/retry", params={"task_id": task})
    assert retried.status_code == 200
    new = retried.json()
    assert new["task_id"] != task
    wait_for(url, "shout_file", new["task_id"], "completed")
    replay = httpx.get(f"{url}/shout_file/get", params={"task_id": new["task_id"]})
    assert replay.content == b"AGAIN"  # the multipart body was decoded (and saved) again


def test_failed_tasks_replay_their_error(url: str, caplog: pytest.LogCaptureFixture) -> None:
    invalid = submit(url, "fail", json={"kind": "invalid"})["task_id"]
    assert wait_for(url, "fail", invalid, "completed", "failed")["status"] == "failed"
    replay = httpx.get(f"{url}/fail/get", params={"task_id": invalid})
    assert error(replay, 400)["error"] == "kind 'invalid' is refused on purpose"

    with caplog.at_level(logging.ERROR, logger="nbserve"):
        response = httpx.post(f"{url}/fail/submit", json={"kind": "boom"})
        boom = response.json()["task_id"]
        assert wait_for(url, "fail", boom, "completed", "failed")["status"] == "failed"
    replay = httpx.get(f"{url}/fail/get", params={"task_id": boom})
    body = error(replay, 500, "An unexpected error has occurred")
    assert "secret-task-detail" not in replay.text
    request_id = response.headers["x-request-id"]  # the submit's id finds the traceback
    assert body["detail"] == {"request_id": request_id}
    logged = [r for r in caplog.records if boom in r.getMessage()]
    assert len(logged) == 1
    assert request_id in logged[0].getMessage()
    assert logged[0].exc_info is not None


def test_a_failed_task_names_its_exception_with_debug() -> None:
    """As an API's 500 does (test_server_errors): in a kernel, or with `debug=True`."""
    with running_service(Jobs, debug=True) as handle:
        boom = submit(handle.url, "fail", json={"kind": "boom"})["task_id"]
        wait_for(handle.url, "fail", boom, "failed")
        replay = httpx.get(f"{handle.url}/fail/get", params={"task_id": boom})
    body = error(replay, 500)
    assert body["error"].startswith("RuntimeError: secret-task-detail")
    assert body["detail"]["exception"] == "RuntimeError"
    assert "Traceback" not in replay.text


def test_bad_body_is_400_at_submit(url: str) -> None:
    response = httpx.post(f"{url}/double/submit", json={"x": "many"})
    error(response, 400, "field 'x'")


def test_missing_and_unknown_task_ids(url: str) -> None:
    for method, action in (("GET", "status"), ("GET", "get"), ("POST", "retry"), ("PUT", "cancel")):
        missing = httpx.request(method, f"{url}/double/{action}")
        error(missing, 400, "task_id is required", f"{method} /double/{action}?task_id=")
        unknown = httpx.request(method, f"{url}/double/{action}", params={"task_id": "nope"})
        assert error(unknown, 404, "task_id 'nope' not found")["detail"] == {"task_id": "nope"}
    # An id belongs to its API: another task API's routes do not know it.
    task = submit(url, "double", json={"x": 1})["task_id"]
    error(httpx.get(f"{url}/scale/status", params={"task_id": task}), 404, "not found")


def test_wrong_methods_are_405_with_allow(url: str) -> None:
    for method, action, allow in (
        ("GET", "submit", "POST"),
        ("POST", "status", "GET"),
        ("PUT", "get", "GET"),
        ("GET", "retry", "POST"),
        ("POST", "cancel", "PUT"),
    ):
        response = httpx.request(method, f"{url}/double/{action}", params={"task_id": "x"})
        error(response, 405, f"use {allow}")
        assert response.headers["allow"] == allow


def test_task_routes_next_to_an_api_routed_at_one_of_them(url: str) -> None:
    assert httpx.post(f"{url}/double/get").text == "the API routed at /double/get"
    task = submit(url, "double", json={"x": 5})["task_id"]
    wait_for(url, "double", task, "completed")
    assert httpx.get(f"{url}/double/get", params={"task_id": task}).json() == 10


def test_batchable_tasks_are_batched(url: str) -> None:
    """Tasks go through `deployment.call`, so the adaptive batcher merges them."""
    BATCHES.clear()
    GATE.clear()
    first = submit(url, "triple", json={"xs": [1]})["task_id"]
    deadline = time.monotonic() + 10
    while not BATCHES:  # the first batch is running (and blocked)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    rest = [submit(url, "triple", json={"xs": [x]})["task_id"] for x in (2, 3, 4)]
    for task in rest:
        wait_for(url, "triple", task, "in_progress")
    GATE.set()
    results = []
    for task in [first, *rest]:
        wait_for(url, "triple", task, "completed")
        results.append(httpx.get(f"{url}/triple/get", params={"task_id": task}).json())
    assert results == [[3], [6], [9], [12]]
    assert sum(BATCHES) == 4
    assert len(BATCHES) < 4, BATCHES  # at least two tasks shared a batch


def test_openapi_describes_the_task_routes_the_server_answers(url: str) -> None:
    document = httpx.get(f"{url}/docs.json").json()
    task = submit(url, "double", json={"x": 2})["task_id"]
    wait_for(url, "double", task, "completed")
    schema = document["components"]["schemas"]["TaskStatusResponse"]
    for action, name in (
        ("submit", "double_submit"),
        ("status", "double_status"),
        ("get", "double_result"),  # BentoML's name; /double/get also has the shadow API's POST
        ("retry", "double_retry"),
        ("cancel", "double_cancel"),
    ):
        item = document["paths"][f"/double/{action}"]
        ((method, operation),) = [(m, o) for m, o in item.items() if o["x-bentoml-name"] == name]
        params = {"task_id": task} if "parameters" in operation else None
        body = {"x": 2} if "requestBody" in operation else None
        response = httpx.request(method.upper(), f"{url}/double/{action}", params=params, json=body)
        documented = {int(code) for code in operation["responses"]}
        assert response.status_code in documented, (action, response.status_code, response.text)
        if response.status_code == 200 and action != "get":
            answer = response.json()
            assert set(schema["required"]) <= set(answer) <= set(schema["properties"])
            assert answer["status"] in schema["properties"]["status"]["enum"]


def test_prefix_token_and_nbserve_s_client() -> None:
    @nbserve.service(path_prefix="/v1", threads=1)
    class Prefixed:
        @nbserve.task
        def wait(self, tag: str) -> str:
            assert GATE.wait(10)
            return tag

    with running_service(Prefixed, token="s3cret") as handle:
        assert handle.url.endswith("/v1")
        denied = httpx.get(f"{handle.url}/wait/status", params={"task_id": "x"})
        error(denied, 401, "bearer token")
        with handle.client(token="s3cret") as client:
            GATE.clear()
            running = client.wait.submit("a")
            pending = client.wait.submit("b")
            assert pending.get_status() == "pending"
            pending.cancel()
            assert pending.get_status() == "canceled"
            GATE.set()
            deadline = time.monotonic() + 10
            while running.get_status() != "completed":
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert running.get() == "a"
            again = pending.retry()
            while again.get_status() != "completed":
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert again.get() == "b"


def test_stop_cancels_pending_tasks_and_lets_running_ones_finish() -> None:
    @nbserve.service(threads=1)
    class Stopping:
        @nbserve.task
        def wait(self, tag: str) -> str:
            CALLS.append(tag)
            assert GATE.wait(10)
            return tag

    GATE.clear()
    with running_service(Stopping) as handle:
        first = submit(handle.url, "wait", json={"tag": "first"})["task_id"]
        wait_for(handle.url, "wait", first, "in_progress")
        submit(handle.url, "wait", json={"tag": "second"})
        threading.Timer(0.3, GATE.set).start()  # the running task ends while stop() drains
    assert CALLS == ["first"]
