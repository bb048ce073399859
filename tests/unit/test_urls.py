"""Public URL resolution (`nbserve._notebook.urls`): every rule without a hub or a server."""

from __future__ import annotations

import pytest

from nbserve._notebook.urls import local_url, public_url, resolve_public_url

SERVERS = [
    {"pid": 111, "url": "http://localhost:8888/other/", "base_url": "/other/"},
    {"pid": 222, "url": "http://localhost:8890/lab-base/", "base_url": "/lab-base/"},
]


def test_plain_local_is_loopback_http() -> None:
    assert resolve_public_url(3000, environ={}) == "http://127.0.0.1:3000"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("", "127.0.0.1"),
        ("::", "127.0.0.1"),
        ("::1", "[::1]"),
        ("10.0.0.5", "10.0.0.5"),
    ],
)
def test_local_url_shows_wildcards_as_loopback_and_brackets_ipv6(host: str, expected: str) -> None:
    assert local_url(host, 8000) == f"http://{expected}:8000"


def test_explicit_template_wins_over_everything() -> None:
    environ = {
        "NBSERVE_PUBLIC_URL": "https://dev.example.org/ports/{port}/",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/a/",
        "JPY_PARENT_PID": "222",
    }
    url = resolve_public_url(3000, environ=environ, running_servers=SERVERS, proxy_installed=True)
    assert url == "https://dev.example.org/ports/3000/"


def test_template_without_port_names_the_variable_and_the_fix() -> None:
    with pytest.raises(
        ValueError,
        match=r"NBSERVE_PUBLIC_URL='https://x.org/' has no \{port\} placeholder.*proxy/\{port\}/",
    ):
        resolve_public_url(3000, environ={"NBSERVE_PUBLIC_URL": "https://x.org/"})


@pytest.mark.parametrize("prefix", ["/user/alice/", "/user/alice", "user/alice/"])
def test_jupyterhub_and_binder_use_the_service_prefix_proxy_route(prefix: str) -> None:
    assert (
        resolve_public_url(3000, environ={"JUPYTERHUB_SERVICE_PREFIX": prefix})
        == "/user/alice/proxy/3000/"
    )


def test_jupyterhub_with_subdomains_prefixes_the_host() -> None:
    environ = {
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
        "JUPYTERHUB_HOST": "https://alice.hub.example.org/",
    }
    assert (
        resolve_public_url(8000, environ=environ)
        == "https://alice.hub.example.org/user/alice/proxy/8000/"
    )


def test_local_jupyter_server_base_url_when_the_proxy_is_installed() -> None:
    environ = {"JPY_PARENT_PID": "222"}
    url = resolve_public_url(3000, environ=environ, running_servers=SERVERS, proxy_installed=True)
    assert url == "http://localhost:8890/lab-base/proxy/3000/"


def test_local_jupyter_server_is_ignored_without_the_proxy() -> None:
    """Without jupyter-server-proxy the /proxy/ route 404s; the direct URL is the right one."""
    url = resolve_public_url(
        3000, environ={"JPY_PARENT_PID": "222"}, running_servers=SERVERS, proxy_installed=False
    )
    assert url == "http://127.0.0.1:3000"


def test_no_matching_server_falls_back_to_direct() -> None:
    url = resolve_public_url(
        3000, environ={"JPY_PARENT_PID": "999"}, running_servers=SERVERS, proxy_installed=True
    )
    assert url == "http://127.0.0.1:3000"


def test_public_url_reads_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.setenv("NBSERVE_PUBLIC_URL", "http://tunnel.example/{port}")
    assert public_url(4321) == "http://tunnel.example/4321"
    monkeypatch.delenv("NBSERVE_PUBLIC_URL")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/bob/")
    assert public_url(4321) == "/user/bob/proxy/4321/"


# nbserve's own server extension (nbserve._jupyter) in the server that launched the kernel.
MARKER = {"pid": 222, "url": "http://localhost:8890/lab-base/", "base_url": "/lab-base/"}


def test_the_extension_s_proxy_wins_over_jupyter_server_proxy() -> None:
    environ = {"JPY_PARENT_PID": "222"}
    url = resolve_public_url(
        3000,
        environ=environ,
        running_servers=SERVERS,
        proxy_installed=True,
        name="Echo",
        extension_server=MARKER,
    )
    assert url == "http://localhost:8890/lab-base/nbserve/services/Echo/"


def test_on_a_hub_the_extension_s_proxy_is_under_the_service_prefix() -> None:
    environ = {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/", "JUPYTERHUB_HOST": "https://hub.example"}
    url = resolve_public_url(3000, environ=environ, name="My Model", extension_server=MARKER)
    assert url == "https://hub.example/user/ada/nbserve/services/My%20Model/"


def test_without_the_extension_today_s_rules_stand() -> None:
    environ = {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/"}
    assert resolve_public_url(3000, environ=environ, name="Echo") == "/user/ada/proxy/3000/"


def test_public_url_finds_the_marker_of_the_parent_server(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    from pathlib import Path

    runtime = Path(str(tmp_path))
    (runtime / "nbserve").mkdir()
    (runtime / "nbserve" / "server-4242.json").write_text(json.dumps(MARKER))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    for name in ("NBSERVE_PUBLIC_URL", "JUPYTERHUB_SERVICE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    assert public_url(3000, name="Echo") == "http://localhost:8890/lab-base/nbserve/services/Echo/"
    monkeypatch.setenv("JPY_PARENT_PID", "4243")  # another server launched it: no extension there
    assert "nbserve/services" not in public_url(3000, name="Echo")
