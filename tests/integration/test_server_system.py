"""The routes the server owns: probes, metrics, schema, OpenAPI, the docs page, and path_prefix."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from openapi_spec_validator import validate

import nbserve
from nbserve.testing import running_service

READY = {"ready": True, "alive": True}


@nbserve.service(path_prefix="/v1")
class Probed:
    """A service whose probes and metrics the test steers."""

    def __is_ready__(self) -> bool:
        return READY["ready"]

    async def __is_alive__(self) -> bool:
        return READY["alive"]

    def __metrics__(self, text: str) -> str:
        return text + "# custom line\n"

    @nbserve.api
    def shout(self, text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    @nbserve.api(route="/math/add")
    async def add(self, a: int, b: int = 1) -> int:
        return a + b


@pytest.fixture(scope="module")
def handle() -> Iterator[nbserve.ServiceHandle]:
    with running_service(Probed) as handle:
        yield handle


@pytest.fixture
def client(handle: nbserve.ServiceHandle) -> Iterator[httpx.Client]:
    READY.update(ready=True, alive=True)
    with httpx.Client(base_url=f"http://127.0.0.1:{handle.port}", timeout=10) as http:
        yield http


def test_handle_url_includes_the_prefix(handle: nbserve.ServiceHandle) -> None:
    assert handle.url == f"http://127.0.0.1:{handle.port}/v1"
    assert handle.routes == ["/v1/shout", "/v1/math/add"]


def test_everything_lives_under_the_prefix(client: httpx.Client) -> None:
    for path in ("/livez", "/healthz", "/readyz", "/metrics", "/schema.json", "/docs.json", "/"):
        assert client.get("/v1" + path).status_code == 200, path
    for path in ("/metrics", "/docs.json", "/"):
        assert client.get(path).status_code == 404, path
    # Where BentoML's client looks given the origin: the probes, and the schema with
    # prefixed routes (test_bentoml_client_against_nbserve.py drives that client).
    for path in ("/livez", "/healthz", "/readyz"):
        assert client.get(path).status_code == 200, path
    assert [r["route"] for r in client.get("/schema.json").json()["routes"]] == [
        "/v1/shout",
        "/v1/math/add",
    ]
    assert [r["route"] for r in client.get("/v1/schema.json").json()["routes"]] == [
        "/shout",
        "/math/add",
    ]
    assert client.post("/v1/shout", json={"text": "a"}).text == "A"
    assert client.post("/shout", json={"text": "a"}).status_code == 404
    redirect = client.get("/v1")
    assert redirect.status_code == 301
    assert redirect.headers["location"] == "/v1/"


def test_probes_follow_the_dunder_hooks(client: httpx.Client) -> None:
    for path in ("/v1/livez", "/v1/healthz", "/v1/readyz"):
        r = client.get(path)
        assert (r.status_code, r.text) == (200, "\n")
        assert client.head(path).status_code == 200
    READY["ready"] = False
    assert client.get("/v1/readyz").status_code == 503
    assert client.get("/v1/livez").status_code == 200
    READY["alive"] = False
    assert client.get("/v1/livez").status_code == 503
    assert client.get("/v1/healthz").status_code == 503


def test_metrics_use_bentoml_names_and_count_requests(client: httpx.Client) -> None:
    client.post("/v1/shout", json={"text": "a"})
    client.post("/v1/shout", json={})
    r = client.get("/v1/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert re.search(
        r'bentoml_service_request_total\{endpoint="/v1/shout",[^}]*http_response_code="200"[^}]*\} [1-9]',
        text,
    )
    assert re.search(
        r'bentoml_service_request_total\{endpoint="/v1/shout",[^}]*http_response_code="400"[^}]*\} [1-9]',
        text,
    )
    assert "bentoml_service_request_duration_seconds_bucket" in text
    assert 'service_name="probed"' in text
    assert text.endswith("# custom line\n")  # __metrics__ post-processed it


def test_schema_json_is_what_bentoml_clients_read(client: httpx.Client) -> None:
    schema = client.get("/v1/schema.json").json()
    assert schema["name"] == "Probed"
    routes = {r["name"]: r for r in schema["routes"]}
    # Routes are relative to the base URL the schema is served under (the prefix included), as
    # clients join them onto it.
    assert routes["shout"]["route"] == "/shout"
    assert routes["shout"]["doc"] == "Upper-case the text."
    assert routes["add"]["route"] == "/math/add"
    assert list(routes["add"]["input"]["properties"]) == ["a", "b"]


def test_docs_json_is_valid_openapi(client: httpx.Client) -> None:
    document = client.get("/v1/docs.json").json()
    validate(document)
    assert "/v1/shout" in document["paths"]


def test_docs_page_works_offline(client: httpx.Client) -> None:
    r = client.get("/v1/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    # No external URL: no CDN script, stylesheet, font or image.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text)
    assert "@import" not in r.text


def test_an_api_at_root_leaves_get_to_the_docs_page() -> None:
    @nbserve.service
    class Rooted:
        @nbserve.api
        def __call__(self, x: int) -> int:
            return x + 1

    with running_service(Rooted) as handle, httpx.Client(base_url=handle.url) as client:
        assert client.post("/", json={"x": 1}).json() == 2
        assert client.get("/").headers["content-type"].startswith("text/html")


def test_system_routes_are_not_counted_as_api_traffic(
    client: httpx.Client, handle: nbserve.ServiceHandle
) -> None:
    before = handle.stats()["/v1/shout"]["count"]
    client.get("/v1/readyz")
    client.get("/v1/metrics")
    assert handle.stats()["/v1/shout"]["count"] == before
    assert set(handle.stats()) == {"/v1/shout", "/v1/math/add"}
