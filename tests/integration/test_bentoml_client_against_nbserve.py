"""BentoML 1.4.39's own `SyncHTTPClient` / `AsyncHTTPClient` call every API of a service nbserve
serves (issue 2: "BentoML's client calls every API of a test service").

The service is `bentoml_services/echo_service.py`, a plain BentoML file that nbserve serves with
`bentoml` aliased to it (`compat_servers.py`). `bentoml_services/call_every_api.py` runs in
.venv-bentoml, calls every API, and writes a JSON report of what each call returned or raised.
It runs three times at once: against nbserve at the root and under `/v2`, and against
`bentoml serve` of the same file, the oracle: the nbserve report must equal BentoML's apart from
error texts (nbserve's bodies are one JSON object with a message that says what to do,
bentoml.md §2.5, §9.1) and names BentoML makes up (task ids, downloaded files' temp names).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from compat_servers import SERVICES, bentoml_python, start_bentoml, start_nbserve

pytestmark = [pytest.mark.bentoml, pytest.mark.slow]

SCRIPT_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`call_every_api.py`'s report per target: `bentoml`, `nbserve` and `nbserve/v2`."""
    root = tmp_path_factory.mktemp("bentoml-client")
    servers = {
        "bentoml": start_bentoml("Echo", root / "home", root / "bentoml.log"),
        "nbserve": start_nbserve("Echo", root / "nbserve.log"),
        "nbserve/v2": start_nbserve("Prefixed", root / "nbserve-v2.log"),
    }
    try:
        for name, server in servers.items():
            server.wait_ready("/v2/readyz" if name.endswith("/v2") else "/readyz")
        runs: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
        # The prefixed service twice: from `<origin>/v2`, and from its bare origin, where
        # BentoML's client reads `/schema.json` (routes carrying the prefix) as with BentoML.
        targets = {
            **{
                name: server.origin + ("/v2" if name.endswith("/v2") else "")
                for name, server in servers.items()
            },
            "nbserve/v2 from its origin": servers["nbserve/v2"].origin,
        }
        for name, url in targets.items():  # all at once: BentoML's import is slow
            report = root / f"{name.replace('/', '-').replace(' ', '-')}.json"
            log = root / f"{name.replace('/', '-').replace(' ', '-')}-client.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [str(bentoml_python()), str(SERVICES / "call_every_api.py"), url, str(report)],
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            runs[name] = (process, report, log)
        results: dict[str, Any] = {}
        for name, (process, report, log) in runs.items():
            try:
                code = process.wait(timeout=SCRIPT_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = -9
            if code != 0:
                pytest.fail(
                    f"call_every_api.py against {name} exited with {code}:\n{log.read_text()}"
                )
            results[name] = orjson.loads(report.read_bytes())
        yield results
    finally:
        for server in servers.values():
            server.stop()


def normalised(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what legitimately differs between servers (see the module docstring)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            if "raised" in value:
                return {k: v for k, v in value.items() if k != "message"}
            if "Path" in value:  # BentoML's client saves downloads as tmpXXXX<filename>
                return {"Path": value["Path"][-len("upper.txt") :], "text": value["text"]}
            return {k: strip(v) for k, v in value.items() if k != "task_id"}
        return value

    return {section: strip(report[section]) for section in ("sync", "async", "sync_task")}


ECHO_APIS = [
    *("shout", "plain", "scale", "frame", "frame_columns", "upper_file", "sizes", "flip"),
    *("order", "order_root", "raw", "tokens", "events", "fail", "slow_double"),
]

# What BentoML's client returns for each call (its values as `call_every_api.describe` shows them).
EXPECTED_SYNC: dict[str, Any] = {
    "shout": {"value": "HIHI"},
    "shout_positional": {"value": "HIHI"},
    "call": {"value": "ABABAB"},
    "plain": {"value": "<x y>"},
    "scale": {"value": {"ndarray": [[0.5, 1.0], [1.5, 2.0]], "dtype": "float32"}},
    "frame": {
        "value": {
            "DataFrame": [
                {"price": 1.5, "qty": 2, "total": 3.0},
                {"price": 2.0, "qty": 3, "total": 6.0},
            ],
            "columns": ["price", "qty", "total"],
        }
    },
    "frame_columns": {
        "value": {"DataFrame": [{"a": 10, "b": 30}, {"a": 20, "b": 40}], "columns": ["a", "b"]}
    },
    "upper_file": {"value": {"Path": "upper.txt", "text": "HELLO?"}},
    "sizes": {"value": [5, 3]},
    "flip": {"value": {"Image": [2, 1], "pixel": [255, 0, 0]}},
    "order": {"value": {"item": {"name": "tea", "qty": 3}, "total": 7.5}},
    "order_dict": {"value": {"item": {"name": "tea", "qty": 1}, "total": 1.0}},
    "order_root": {"value": {"name": "b", "double": 8}},
    "raw": {"value": {"bytes": "cba"}},
    "tokens": {"value": {"iterated": ["a", "bb", "ccc"]}},
    "events": {
        "value": {"iterated": [{"i": 0, "square": 0}, {"i": 1, "square": 1}, {"i": 2, "square": 4}]}
    },
    "invalid_input": {"raised": "InvalidArgument", "bentoml_exception": True, "error_code": 400},
    "fail_invalid": {"raised": "InvalidArgument", "bentoml_exception": True, "error_code": 400},
    "fail_missing": {"raised": "NotFound", "bentoml_exception": True, "error_code": 404},
    "fail_boom": {"raised": "BentoMLException", "bentoml_exception": True, "error_code": 500},
    "task_direct": {"value": 8},
    # BentoML's sync `.submit()` sends the request, then trips over its own `_opened_files`
    # (bentoml.md §3.1); the async client submits fine.
    "task_submit_sync": {"raised": "AttributeError", "bentoml_exception": False},
}

EXPECTED_ASYNC: dict[str, Any] = {
    "shout": {"value": "HIHI"},
    "scale": {"value": {"ndarray": [2.0, 2.0], "dtype": "float32"}},
    "frame": {
        "value": {
            "DataFrame": [{"price": 1.0, "qty": 4, "total": 4.0}],
            "columns": ["price", "qty", "total"],
        }
    },
    "upper_file": {"value": {"Path": "upper.txt", "text": "HELLO!"}},
    "tokens": {"value": {"iterated": ["x", "y"]}},
    "events": {"value": {"iterated": [{"i": 0, "square": 0}, {"i": 1, "square": 1}]}},
    "fail_missing": {"raised": "NotFound", "bentoml_exception": True, "error_code": 404},
    "task_submit": {"value": "AsyncTask"},
    "task_status": {"ResultStatus": "completed"},
    "task_get": {"value": 42},
    # BentoML's local server always refuses cancel; nbserve refuses it once the task has run.
    "task_cancel_finished": {
        "raised": "InvalidArgument",
        "bentoml_exception": True,
        "error_code": 400,
    },
    "task_retry_new_id": True,
    "task_retry_status": {"ResultStatus": "completed"},
    "task_retry_get": {"value": 42},
    "task_unknown": {"raised": "NotFound", "bentoml_exception": True, "error_code": 404},
}


def test_the_client_is_bentoml_1_4_39(reports: dict[str, Any]) -> None:
    assert {r["bentoml_version"] for r in reports.values()} == {"1.4.39"}


def test_every_api_through_the_sync_client(reports: dict[str, Any]) -> None:
    sync = normalised(reports["nbserve"])["sync"]
    assert sync.pop("endpoints") == {"value": sorted(ECHO_APIS)}
    assert sync == EXPECTED_SYNC
    assert normalised(reports["nbserve"])["sync_task"] == {
        "status": {"ResultStatus": "completed"},
        "get": {"value": 42},
    }


def test_every_api_through_the_async_client(reports: dict[str, Any]) -> None:
    assert normalised(reports["nbserve"])["async"] == EXPECTED_ASYNC


def test_nbserve_answers_bentoml_s_client_as_bentoml_does(reports: dict[str, Any]) -> None:
    assert normalised(reports["nbserve"]) == normalised(reports["bentoml"])


def test_error_messages_reach_the_client(reports: dict[str, Any]) -> None:
    # BentoML's client puts the raw body in the message: nbserve's is one JSON object where
    # BentoML sends a 4xx as a one-element array (bentoml.md §2.5, §9.1).
    sync = reports["nbserve"]["sync"]
    assert orjson.loads(sync["fail_invalid"]["message"]) == {
        "error": "kind 'invalid' is refused on purpose",
        "detail": None,
    }
    assert orjson.loads(reports["bentoml"]["sync"]["fail_invalid"]["message"]) == [
        {"error": "kind 'invalid' is refused on purpose"}
    ]
    assert orjson.loads(sync["fail_missing"]["message"])["error"] == "nothing called 'missing'"
    invalid = orjson.loads(sync["invalid_input"]["message"])
    assert invalid["error"].startswith("1 validation error for Input: field 'times'")
    assert invalid["detail"][0]["loc"] == ["times"]
    # A bug's message stays hidden, as in BentoML, but nbserve gives an id to find it in the log.
    boom = orjson.loads(sync["fail_boom"]["message"])
    assert boom["error"].startswith("An unexpected error has occurred, please check the server log")
    assert boom["error"].endswith(f"(request id {boom['detail']['request_id']})")
    cancel = orjson.loads(reports["nbserve"]["async"]["task_cancel_finished"]["message"])
    assert "has already finished (completed); there is nothing to cancel" in cancel["error"]


def test_under_a_path_prefix(reports: dict[str, Any]) -> None:
    """With nbserve, BentoML's client works from `<origin>/v2` (BentoML's own server fails it,
    §3.4), except for `.submit()`: the client replaces the URL's path with `<route>/submit`
    instead of joining the route onto it, so the prefix is lost and the server says 404.
    The task's other calls join correctly, so one submitted by hand is polled and fetched."""
    root, prefixed = normalised(reports["nbserve"]), normalised(reports["nbserve/v2"])
    submit = prefixed["async"].pop("task_submit")
    assert submit == {"raised": "BentoMLException", "bentoml_exception": True, "error_code": 404}
    assert "POST /slow_double/submit" in reports["nbserve/v2"]["async"]["task_submit"]["message"]
    del root["async"]["task_submit"]
    assert prefixed == root


def test_under_a_path_prefix_from_the_origin(reports: dict[str, Any]) -> None:
    """Given the server's origin, as with a prefixed BentoML service, BentoML's client finds
    `/schema.json` at the root with prefixed routes: every call works, `.submit()` included."""
    assert normalised(reports["nbserve/v2 from its origin"]) == normalised(reports["nbserve"])
