"""The same BentoML-style service file (`bentoml_services/parity_service.py`) served by
`bentoml serve` 1.4.39 and by nbserve: every request gets the same status, content type and
body (headers and cookies included where the API sets them), and BentoML's own client gets the
same answers from both, a path-prefixed service included."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from compat_servers import SERVICES, ServerProcess, bentoml_python, start_bentoml, start_nbserve

pytestmark = [pytest.mark.bentoml, pytest.mark.slow]

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/headers", {"json": {}, "headers": {"X-Caller": "tests"}}),
    ("/state", {"json": {}}),
    ("/state", {"json": {}}),
    ("/gather", {"json": {"text": "hi there"}}),
    ("/echo_text", {"content": b"abc", "headers": {"Content-Type": "text/plain"}}),
    (
        "/echo_text",
        {"content": b"abc", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    ),
    ("/who", {"json": {}}),
    ("/monitored", {"json": {"x": 1.5}}),
    ("/environment", {"json": {}}),
]
# The mounted FastAPI app (GET), served beside the APIs on both.
GETS = ["/v1/plain?q=x", "/v1/plain", "/v1/view"]

CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import bentoml
    out = {}
    with bentoml.SyncHTTPClient(sys.argv[1]) as client:
        out["gather"] = client.gather(text="hi")
        out["echo_text"] = client.echo_text("xyz")
        out["state"] = client.state()
    try:
        with bentoml.SyncHTTPClient(sys.argv[2]) as client:
            out["prefixed_hello"] = client.hello(name="parity")
    except bentoml.exceptions.BentoMLException as exc:
        out["prefixed_hello"] = type(exc).__name__
    json.dump(out, open(sys.argv[3], "w"))
    """
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    root = tmp_path_factory.mktemp("parity")
    monitoring = root / "monitoring"
    import os

    os.environ["PARITY_MONITORING_DIR"] = str(monitoring)
    started: dict[str, ServerProcess] = {}
    try:
        started["bentoml"] = start_bentoml("Front", root / "h1", root / "b.log", "parity_service")
        started["bentoml/v3"] = start_bentoml(
            "PrefixedFront", root / "h2", root / "b3.log", "parity_service"
        )
        started["nbserve"] = start_nbserve("Front", root / "n.log", "parity_service")
        started["nbserve/v3"] = start_nbserve("PrefixedFront", root / "n3.log", "parity_service")
        for name, server in started.items():
            server.wait_ready("/v3/readyz" if name.endswith("/v3") else "/readyz")
        yield started
    finally:
        os.environ.pop("PARITY_MONITORING_DIR", None)
        for server in started.values():
            server.stop()


def _answer(response: httpx.Response) -> dict[str, Any]:
    body: Any = response.text
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        if response.status_code >= 400:
            body = "<error>"  # the texts differ on purpose (nbserve's say what to do)
    cookie = response.headers.get("set-cookie")
    return {
        "status": response.status_code,
        "content_type": response.headers.get("content-type", "").split(";")[0],
        "body": body,
        "x-multi": response.headers.get_list("x-multi"),
        "x-single": response.headers.get("x-single"),
        "cookie": sorted(p.strip().lower() for p in cookie.split(";")) if cookie else None,
    }


def test_every_request_answers_the_same(servers: dict[str, ServerProcess]) -> None:
    answers: dict[str, list[dict[str, Any]]] = {}
    for name in ("bentoml", "nbserve"):
        with httpx.Client(base_url=servers[name].origin, timeout=60) as client:
            answers[name] = [_answer(client.post(path, **kw)) for path, kw in REQUESTS]
    # One known difference: BentoML copies response headers into a dict, so of two values
    # appended under one name only the last reaches the client; nbserve sends both.
    assert answers["bentoml"][0].pop("x-multi") == ["two"]
    assert answers["nbserve"][0].pop("x-multi") == ["one", "two"]
    for (path, _), theirs, ours in zip(
        REQUESTS, answers["bentoml"], answers["nbserve"], strict=True
    ):
        assert ours == theirs, path
    by_path = dict(zip([p for p, _ in REQUESTS], answers["nbserve"], strict=False))
    mounted = {
        name: [_answer(httpx.get(servers[name].origin + path, timeout=60)) for path in GETS]
        for name in ("bentoml", "nbserve")
    }
    assert mounted["nbserve"] == mounted["bentoml"]
    # A path under the mount that the app lacks: 404 from both (the app's own JSON 404 on
    # nbserve, Starlette's plain-text one on BentoML, whose router answers before the app).
    for name in ("bentoml", "nbserve"):
        assert httpx.get(servers[name].origin + "/v1/missing", timeout=60).status_code == 404
    assert mounted["nbserve"][2]["body"] == {"class": "Front", "shouter": True}
    assert by_path["/gather"]["body"] == ["HI THERE", 8]


def test_prefixed_schema_at_the_root(servers: dict[str, ServerProcess]) -> None:
    schemas = {
        name: httpx.get(servers[name].origin + "/schema.json", timeout=30).json()
        for name in ("bentoml/v3", "nbserve/v3")
    }
    routes = {name: [r["route"] for r in s["routes"]] for name, s in schemas.items()}
    assert routes["nbserve/v3"] == routes["bentoml/v3"] == ["/v3/hello"]


def test_bentomls_client_gets_the_same_answers(
    servers: dict[str, ServerProcess], tmp_path: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    reports = {}
    for name in ("bentoml", "nbserve"):
        out = tmp_path / f"{name}.json"
        subprocess.run(
            [
                str(bentoml_python()),
                str(script),
                servers[name].origin,
                servers[f"{name}/v3"].origin,
                str(out),
            ],
            cwd=SERVICES,
            check=True,
            capture_output=True,
            timeout=180,
        )
        reports[name] = json.loads(out.read_text())
    # BentoML's client cannot reach a prefixed BentoML service at all: from the origin it polls
    # /readyz, which BentoML serves only under the prefix; from `<origin>/v3` it fetches
    # /v3/schema.json, which BentoML serves only at the root. Both answer on nbserve.
    assert reports["bentoml"].pop("prefixed_hello") == "ServiceUnavailable"
    assert reports["nbserve"].pop("prefixed_hello") == "hello parity"
    assert reports["nbserve"] == reports["bentoml"]
