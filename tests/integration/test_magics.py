"""`%%serve` / `%serve` driven through IPython's own shell, against real servers on 127.0.0.1."""

from __future__ import annotations

import json
import linecache
import os
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import get_ipython
from IPython.utils.capture import capture_output

import nbserve
from nbserve._notebook import (
    load_ipython_extension,
    rollback,
    services,
    stop,
    stop_all,
    unload_ipython_extension,
)
from nbserve._notebook.discovery import discovery_dir

ECHO = """
import nbserve

@nbserve.service
class Echo:
    def __init__(self) -> None:
        self.suffix = "{suffix}"

    @nbserve.api
    def shout(self, text: str) -> str:
        return text.upper() + self.suffix

    @nbserve.api(route="/fail")
    def fail(self) -> str:
        raise RuntimeError("boom")
"""


def echo(suffix: str = "") -> str:
    return ECHO.replace("{suffix}", suffix)


@pytest.fixture(scope="module")
def ip() -> Iterator[Any]:
    shell = get_ipython()
    load_ipython_extension(shell)
    yield shell
    stop_all()


@pytest.fixture(autouse=True)
def runtime_dir(ip: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("NBSERVE_PUBLIC_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    yield tmp_path
    stop_all()
    assert not list(discovery_dir().glob("*.json")), "a stopped service left its discovery file"


def serve(ip: Any, cell: str, line: str = "--no-display") -> Any:
    ip.run_cell_magic("serve", line, cell)
    return ip


def shout(port: int, text: str = "hi", **headers: str) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/shout", json={"text": text}, headers=headers, timeout=10
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_cell_defines_the_class_in_the_namespace_and_serves_it(ip: Any) -> None:
    cell = echo()
    serve(ip, cell)
    live = services()["Echo"]
    assert isinstance(ip.user_ns["Echo"], nbserve.Service)
    assert ip.user_ns["Echo"].source == cell
    assert live.source == cell
    assert live.state == "running"
    assert live.routes == ["/shout", "/fail"]
    assert shout(live.port).text == "HI"


def test_status_output_is_one_deterministic_display(ip: Any) -> None:
    with capture_output() as captured:
        ip.run_cell_magic("serve", "", echo())
    assert len(captured.outputs) == 1
    data = captured.outputs[0].data
    assert data["text/plain"] == "nbserve service 'Echo': running, inline, routes /shout /fail"
    port = services()["Echo"].port
    assert f"http://127.0.0.1:{port}" in data["text/html"]
    assert "<td><code>/shout</code></td>" in data["text/html"]


def test_rerun_swaps_on_the_same_port_and_rollback_restores(ip: Any) -> None:
    serve(ip, echo())
    port = services()["Echo"].port
    serve(ip, echo("!"))
    live = services()["Echo"]
    assert live.port == port
    assert shout(port).text == "HI!"
    assert [v.number for v in live.versions] == [1, 2]
    assert live.versions[-1].source == echo("!")

    with capture_output() as captured:
        ip.run_line_magic("serve", "rollback Echo")
    assert captured.stdout == "rolled 'Echo' back to version 1\n"
    assert shout(port).text == "HI"
    assert services()["Echo"].source == echo()
    with pytest.raises(UsageError, match="only one version; there is nothing to roll back to"):
        ip.run_line_magic("serve", "rollback Echo")


def test_python_rollback_and_stop(ip: Any) -> None:
    serve(ip, echo())
    serve(ip, echo("?"))
    live = rollback("Echo")
    assert shout(live.port).text == "HI"
    port = live.port
    stop("Echo")
    assert "Echo" not in services()
    assert port_is_free(port)


def test_stop_frees_the_port_and_removes_the_discovery_file(ip: Any) -> None:
    serve(ip, echo())
    live = services()["Echo"]
    assert live.discovery_file.exists()
    with capture_output() as captured:
        ip.run_line_magic("serve", "stop Echo")
    assert captured.stdout == "stopped nbserve service 'Echo'\n"
    assert not live.discovery_file.exists()
    assert port_is_free(live.port)
    with pytest.raises(
        UsageError, match=r"no nbserve service named 'Echo' in this kernel \(running: none\)"
    ):
        ip.run_line_magic("serve", "stop Echo")


def test_stop_all(ip: Any) -> None:
    serve(ip, echo())
    serve(ip, echo(), "--no-display --name Other")
    ports = [s.port for s in services().values()]
    assert len(set(ports)) == 2
    with capture_output() as captured:
        ip.run_line_magic("serve", "stop --all")
    assert captured.stdout.splitlines() == [
        "stopped nbserve service 'Echo'",
        "stopped nbserve service 'Other'",
    ]
    assert services() == {}
    assert all(port_is_free(p) for p in ports)


def test_discovery_file_describes_the_service(ip: Any, runtime_dir: Path) -> None:
    serve(ip, echo(), "--no-display --token auto")
    live = services()["Echo"]
    assert live.discovery_file.parent == runtime_dir / "nbserve"
    record = json.loads(live.discovery_file.read_text())
    assert record["name"] == "Echo"
    assert record["port"] == live.port
    assert record["routes"] == ["/shout", "/fail"]
    assert record["kernel_id"] is None  # not in a kernel: the file is named after the pid
    assert live.discovery_file.name.startswith("pid")
    # The server extension's proxy adds the token and stops the service with the admin secret,
    # so both are in the file, which only this user can read.
    assert live.token is not None
    assert record["token"] == live.token
    assert len(record["admin_secret"]) >= 32
    assert record["mode"] == "inline"
    assert live.discovery_file.stat().st_mode & 0o777 == 0o600


def test_token_auto_requires_the_bearer_token_and_survives_a_swap(ip: Any) -> None:
    serve(ip, echo(), "--no-display --token auto")
    live = services()["Echo"]
    token = live.token
    assert shout(live.port).status_code == 401
    assert shout(live.port, Authorization=f"Bearer {token}").text == "HI"
    serve(ip, echo("!"), "--no-display --token auto")
    assert services()["Echo"].token == token
    assert shout(live.port, Authorization=f"Bearer {token}").text == "HI!"
    with live.client() as client:
        assert client.shout(text="a") == "A!"


def test_changing_a_server_option_restarts_on_the_kept_port(ip: Any) -> None:
    serve(ip, echo())
    port = services()["Echo"].port
    serve(ip, echo("!"), "--no-display --token auto")  # a token changes the server: restart
    live = services()["Echo"]
    assert live.port == port
    assert shout(port).status_code == 401
    assert [v.number for v in live.versions] == [1, 2]


def test_explicit_port_and_port_in_use(ip: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        with pytest.raises(
            UsageError,
            match=rf"cannot serve 'Echo' on 127.0.0.1:{busy}: .*pick another --port, or --port 0",
        ):
            serve(ip, echo(), f"--no-display --port {busy}")
    assert "Echo" not in services()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--port abc", "argument --port: invalid port 'abc'"),
        ("--port 70000", "argument --port: invalid port '70000'"),
        ("--workers 0", "argument --workers: invalid worker count '0'"),
        ("--token secret", "argument --token: invalid choice: 'secret'"),
        ("--colour red", "unrecognized arguments: --colour red"),
    ],
)
def test_bad_options_are_usage_errors_with_argparse_messages(
    ip: Any, line: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        serve(ip, echo(), line)
    assert services() == {}


def test_a_cell_without_a_service_says_so(ip: Any) -> None:
    with pytest.raises(
        UsageError,
        match=r"this %%serve cell defines no service; decorate a class with @nbserve\.service",
    ):
        serve(ip, "x = 1\nclass Plain: pass\n")


def test_a_cell_with_two_services_lists_them(ip: Any) -> None:
    cell = (
        echo()
        + "\n@nbserve.service\nclass Second:\n    @nbserve.api\n    def ping(self) -> str:\n        return 'pong'\n"
    )
    with pytest.raises(
        UsageError,
        match=r"defines 2 services: Echo \(service 'Echo'\), Second \(service 'Second'\); choose one with --name",
    ):
        serve(ip, cell)
    serve(ip, cell, "--no-display --name Second")
    assert list(services()) == ["Second"]
    with pytest.raises(
        UsageError, match=r"--name 'Third' matches none of the services this cell defines: Echo"
    ):
        serve(ip, cell, "--no-display --name Third")


def test_name_renames_the_only_service(ip: Any) -> None:
    serve(ip, echo(), "--no-display --name loud")
    assert list(services()) == ["loud"]
    assert services()["loud"].status().text().startswith("nbserve service 'loud': running")


def test_rerunning_an_import_cell_finds_the_service_again(ip: Any) -> None:
    serve(ip, echo())
    ip.user_ns["_nbserve_test_mod_svc"] = ip.user_ns["Echo"]
    cell = "Echo2 = _nbserve_test_mod_svc\n"
    serve(ip, cell, "--no-display --name again")
    serve(ip, cell, "--no-display --name again")  # same object, rebound: still found
    assert [v.number for v in services()["again"].versions] == [1, 2]


def test_tracebacks_point_at_the_cell_lines(ip: Any) -> None:
    cell = "import nbserve\n\nraise ValueError('line three')\n"
    with pytest.raises(ValueError, match="line three") as info:
        serve(ip, cell)
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    assert (
        linecache.getline(frame.filename, frame.lineno).strip() == "raise ValueError('line three')"
    )


def test_a_failing_new_version_keeps_the_old_one_serving(ip: Any) -> None:
    serve(ip, echo())
    port = services()["Echo"].port
    broken = echo().replace('self.suffix = ""', "raise RuntimeError('no model')")
    with pytest.raises(RuntimeError, match="no model"):
        serve(ip, broken)
    assert shout(port).text == "HI"
    assert [v.number for v in services()["Echo"].versions] == [1]


def test_a_failing_restart_leaves_the_service_stopped_until_the_next_run(ip: Any) -> None:
    serve(ip, echo())
    live = services()["Echo"]
    port = live.port
    broken = echo().replace('self.suffix = ""', "raise RuntimeError('no model')")
    with pytest.raises(RuntimeError, match="no model"):
        serve(ip, broken, "--no-display --token auto")  # a new token restarts the server
    assert live.state == "stopped"
    assert not live.discovery_file.exists()
    assert live.status().text() == "nbserve service 'Echo': stopped, inline, routes /shout /fail"
    serve(ip, echo("!"))
    assert live.state == "running"
    assert live.port == port
    assert shout(port).text == "HI!"
    assert live.discovery_file.exists()


def test_a_bad_public_url_template_names_the_variable_and_leaves_no_server(
    ip: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBSERVE_PUBLIC_URL", "https://tunnel.example.org/")
    with pytest.raises(
        ValueError, match=r"NBSERVE_PUBLIC_URL='https://tunnel.example.org/' has no \{port\}"
    ):
        serve(ip, echo())
    assert services() == {}
    assert not [t for t in threading.enumerate() if t.name.startswith("nbserve-server-")]


def test_list_status_and_logs(ip: Any) -> None:
    with capture_output() as captured:
        ip.run_line_magic("serve", "list")
    assert captured.outputs[0].data["text/plain"] == "no nbserve services in this kernel"
    serve(ip, echo())
    port = services()["Echo"].port
    assert shout(port).status_code == 200
    assert httpx.post(f"http://127.0.0.1:{port}/fail", json={}).status_code == 500
    with capture_output() as captured:
        ip.run_line_magic("serve", "")
        ip.run_line_magic("serve", "status Echo")
        ip.run_line_magic("serve", "logs Echo -n 3")
    listing, status = (o.data for o in captured.outputs)
    assert listing["text/plain"] == "nbserve service 'Echo': running, inline, routes /shout /fail"
    assert status["text/plain"] == listing["text/plain"]
    assert "<td><code>/fail</code></td><td>1</td><td>1 (100%)</td>" in status["text/html"]
    # Records, not lines: the request error's traceback shows the cell's own source line.
    assert "Echo started" in captured.stdout
    assert 'raise RuntimeError("boom")' in captured.stdout
    stats = services()["Echo"].stats()
    assert stats["/shout"]["count"] == 1
    assert stats["/fail"]["errors"] == 1


def test_line_magic_usage_errors(ip: Any) -> None:
    with pytest.raises(UsageError, match="invalid choice: 'restart'"):
        ip.run_line_magic("serve", "restart Echo")
    with pytest.raises(UsageError, match=r"use %serve stop NAME or %serve stop --all"):
        ip.run_line_magic("serve", "stop")
    with pytest.raises(UsageError, match="invalid line count 'x'"):
        ip.run_line_magic("serve", "logs Echo -n x")


def test_help_is_generated_from_the_arguments(ip: Any) -> None:
    line_doc = ip.find_line_magic("serve").__doc__
    cell_doc = ip.find_cell_magic("serve").__doc__
    for text in (
        "%serve rollback name",
        "%serve logs [-n LINES] name",
        "%serve stop [--all] [name]",
        "--workers N",
    ):
        assert text in line_doc
    for text in ("%%serve [--name NAME] [--port PORT]", "--token <{auto,none}>", "--no-display"):
        assert text in cell_doc


def test_server_threads_print_nothing(ip: Any, capfd: pytest.CaptureFixture[str]) -> None:
    serve(ip, echo())
    port = services()["Echo"].port
    for _ in range(3):
        shout(port)
        httpx.post(f"http://127.0.0.1:{port}/fail", json={})
        httpx.post(f"http://127.0.0.1:{port}/nope", json={})
    serve(ip, echo("!"))
    stop_all()
    assert capfd.readouterr() == ("", "")


def test_workers_mode_serves_from_another_process_and_stop_ends_it(ip: Any) -> None:
    cell = "import os\nimport nbserve\n\n@nbserve.service\nclass Pid:\n    @nbserve.api\n    def pid(self) -> int:\n        return os.getpid()\n"
    serve(ip, cell, "--no-display --workers 1")
    live = services()["Pid"]
    assert live.status().text() == "nbserve service 'Pid': running, 1 worker, routes /pid"
    worker = httpx.post(f"{live.url}/pid", json={}).json()
    assert worker != os.getpid()
    stop("Pid")
    assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE


def test_the_registry_is_safe_from_other_threads_during_swaps(ip: Any) -> None:
    """Widget callbacks run on other threads (ipykernel 7 subshells) while cells re-serve."""
    serve(ip, echo())
    errors: list[BaseException] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                live = services()["Echo"]
                live.status()
                live.stats()
                live.logs(5)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for suffix in "!?.":
            serve(ip, echo(suffix))
    finally:
        done.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert [v.number for v in services()["Echo"].versions] == [1, 2, 3, 4]


_EXIT_SCRIPT = """
import nbserve
from nbserve._notebook.registry import REGISTRY

@nbserve.service
class Echo:
    @nbserve.api
    def shout(self, text: str) -> str:
        return text

live = REGISTRY.serve(Echo)
assert live.discovery_file.exists()
print(live.port)
"""


def test_interpreter_exit_stops_services_and_removes_discovery_files(runtime_dir: Path) -> None:
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime_dir)}
    result = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stderr == ""
    assert port_is_free(int(result.stdout))
    assert sorted((runtime_dir / "nbserve").glob("*.json")) == []


def test_unload_extension_stops_everything_and_removes_the_magics(ip: Any) -> None:
    serve(ip, echo())
    port = services()["Echo"].port
    unload_ipython_extension(ip)
    try:
        assert services() == {}
        assert port_is_free(port)
        assert ip.find_cell_magic("serve") is None
        assert ip.find_line_magic("serve") is None
    finally:
        load_ipython_extension(ip)
    assert ip.find_cell_magic("serve") is not None


def test_cells_run_without_history_are_still_recorded_for_export(ip: Any) -> None:
    """nbval runs cells with store_history=False; the exporter must still see their helpers."""
    from nbserve._notebook.history import executed_cells

    helper = "def _helper_for_export_test(x):\n    return x + 1\n"
    assert ip.run_cell(helper, store_history=False).success
    assert helper in executed_cells(ip)
    assert helper not in list(ip.history_manager.input_hist_raw)


def test_an_export_that_cannot_read_or_write_says_which_path(ip: Any, tmp_path: Path) -> None:
    serve(ip, echo())
    missing = tmp_path / "no-such-requirements.txt"
    with pytest.raises(UsageError, match=rf"cannot export 'Echo': .*{missing.name}"):
        ip.run_line_magic("serve", f"export Echo -o {tmp_path} --requirements {missing}")
    assert list(tmp_path.glob("*.bento")) == []


@pytest.mark.slow
def test_serve_containerize_print_exports_and_writes_the_build_context(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`%serve containerize NAME --print`: the export, then the context and the command."""
    serve(ip, echo())
    ip.run_line_magic("serve", f"containerize Echo --print -o {tmp_path}")
    (bento,) = tmp_path.glob("echo-*.bento")
    (context,) = tmp_path.glob("echo-*.context.tar")
    version = bento.name.removesuffix(".bento").split("-", 1)[1]
    assert context.name == f"echo-{version}.context.tar"
    out = capsys.readouterr().out
    assert f"exported 'Echo' to {bento}" in out
    assert f"docker build -f env/docker/Dockerfile -t echo:{version} - < {context}" in out
