"""nbserve's HTTP clients against one BentoML service file served by BentoML 1.4.39 and by nbserve.

`bentoml_services/echo_service.py` (`import bentoml`) is served twice per backend for the whole
module (launchers in `compat_servers.py`): `Echo` at the root and `Prefixed` (the same APIs)
under `/v2`. Every client test runs against both backends: BentoML is the compatibility oracle,
and nbserve must answer its client the same way. Where nbserve deliberately does better than
BentoML (bentoml.md §9.1), the assertion is split per backend with a comment saying why.
BentoML's own clients against nbserve are in `test_bentoml_client_against_nbserve.py`.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from compat_servers import Backend, ServerProcess, bentoml_python, serve_echo
from PIL import Image

from nbserve._client import AsyncHTTPClient, SyncHTTPClient
from nbserve.exceptions import InvalidArgument, NbserveError, NotFound, ServiceUnavailable

pytestmark = [pytest.mark.bentoml, pytest.mark.slow]


@pytest.fixture(scope="module", params=["bentoml", "nbserve"])
def backend(request: pytest.FixtureRequest) -> Backend:
    name: Backend = request.param
    return name


@pytest.fixture(scope="module")
def servers(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    with serve_echo(backend, tmp_path_factory.mktemp(backend)) as started:
        yield started


@pytest.fixture(scope="module")
def url(servers: dict[str, ServerProcess]) -> str:
    return servers["Echo"].origin


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[SyncHTTPClient]:
    with SyncHTTPClient(url) as c:
        yield c


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "note.txt"
    path.write_text("hello")
    return path


# --- discovery -----------------------------------------------------------------------------


def test_methods_are_named_after_routes_with_signatures(
    client: SyncHTTPClient, backend: Backend
) -> None:
    assert {"shout", "plain", "scale", "frame", "tokens", "events", "slow_double"} <= set(
        client.endpoints
    )
    assert str(inspect.signature(client.shout)) == "(text, times=1)"
    assert str(inspect.signature(client.plain)) == "(value, /)"
    assert client.shout.__name__ == "shout"
    if backend == "bentoml":
        assert client.shout.__doc__ is None  # BentoML's schema has no `doc` (reference §2.7)
    else:  # nbserve's schema carries the docstring, so help(client.shout) shows it (§9.1)
        assert client.shout.__doc__ == "Upper-case `text`, repeated `times` times."
    with pytest.raises(AttributeError, match=r"no API named 'nope'; its APIs are .*shout"):
        _ = client.nope


# --- arguments and JSON --------------------------------------------------------------------


def test_keyword_and_positional_arguments(client: SyncHTTPClient) -> None:
    assert client.shout(text="hi", times=2) == "HIHI"
    assert client.shout("hi", 2) == "HIHI"
    assert client.shout("hi") == "HI"
    assert client.call("shout", "ab", times=3) == "ABABAB"


def test_argument_errors_name_the_arguments(client: SyncHTTPClient) -> None:
    with pytest.raises(TypeError, match=r"unexpected argument 'loud'; it accepts text, times"):
        client.shout(text="hi", loud=True)
    with pytest.raises(TypeError, match=r"missing required argument: 'text'"):
        client.shout(times=2)
    with pytest.raises(TypeError, match=r"multiple values for argument 'text'"):
        client.shout("hi", text="ho")
    with pytest.raises(TypeError, match=r"takes 2 positional arguments \(text, times\)"):
        client.shout("hi", 2, 3)
    with pytest.raises(NotFound, match=r"no API named 'nope'"):
        client.call("nope")


def test_root_string_input(client: SyncHTTPClient) -> None:
    assert client.plain("x y") == "<x y>"
    with pytest.raises(TypeError, match=r"exactly one positional argument"):
        client.plain(text="x")


def test_numpy_in_and_out_with_dtype(client: SyncHTTPClient) -> None:
    result = client.scale(np.array([[1, 2], [3, 4]], dtype=np.float64), factor=0.5)
    assert isinstance(result, np.ndarray)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [[0.5, 1.0], [1.5, 2.0]])
    np.testing.assert_array_equal(client.scale([1, 2]), np.array([2, 4], dtype=np.float32))


def test_dataframes_records_and_columns(client: SyncHTTPClient) -> None:
    frame = client.frame(pd.DataFrame({"price": [1.5, 2.0], "qty": [2, 3]}))
    assert isinstance(frame, pd.DataFrame)
    assert frame.to_dict(orient="list") == {"price": [1.5, 2.0], "qty": [2, 3], "total": [3.0, 6.0]}
    columns = client.frame_columns(pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
    assert columns.to_dict(orient="list") == {"a": [10, 20], "b": [30, 40]}


def test_pydantic_models(client: SyncHTTPClient) -> None:
    from pydantic import BaseModel

    class Item(BaseModel):
        name: str
        qty: int = 1

    assert client.order(Item(name="tea", qty=3)) == {
        "item": {"name": "tea", "qty": 3},
        "total": 7.5,
    }
    assert client.order({"name": "tea"}, price=1) == {
        "item": {"name": "tea", "qty": 1},
        "total": 1.0,
    }
    assert client.order_root(Item(name="b", qty=4)) == {"name": "b", "double": 8}
    assert client.order_root(name="c", qty=5) == {"name": "c", "double": 10}


def test_bytes_in_and_out(client: SyncHTTPClient) -> None:
    assert client.raw(b"abc") == b"cba"


# --- files ---------------------------------------------------------------------------------


def test_path_in_path_out(client: SyncHTTPClient, text_file: Path) -> None:
    out = client.upper_file(text_file, suffix="?")
    assert isinstance(out, Path)
    assert out.name == "upper.txt"  # the Content-Disposition filename
    assert out.read_text() == "HELLO?"
    assert client.upper_file(str(text_file)).read_text() == "HELLO!"
    assert client.upper_file(io.BytesIO(b"file object")).read_text() == "FILE OBJECT!"
    assert client.upper_file(b"raw bytes").read_text() == "RAW BYTES!"


def test_file_lists_are_repeated_parts(client: SyncHTTPClient, text_file: Path) -> None:
    assert client.sizes([text_file, b"abc", io.BytesIO(b"12345678")]) == [5, 3, 8]


def test_missing_file_is_a_type_error_naming_it(client: SyncHTTPClient, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"Argument 'doc' of upper_file\(\) names the file .*gone"):
        client.upper_file(tmp_path / "gone.txt")


def test_pil_images(client: SyncHTTPClient) -> None:
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), (255, 0, 0))
    flipped = client.flip(image)
    assert isinstance(flipped, Image.Image)
    assert flipped.size == (2, 1)
    assert flipped.getpixel((1, 0)) == (255, 0, 0)


# --- streams -------------------------------------------------------------------------------


def test_stream_of_strings(client: SyncHTTPClient) -> None:
    stream = client.tokens("a bb ccc")
    assert not isinstance(stream, list)
    assert list(stream) == ["a", "bb", "ccc"]


def test_stream_of_dicts(client: SyncHTTPClient) -> None:
    assert list(client.events(3)) == [
        {"i": 0, "square": 0},
        {"i": 1, "square": 1},
        {"i": 2, "square": 4},
    ]


# --- errors --------------------------------------------------------------------------------


def test_validation_error_is_invalid_argument(client: SyncHTTPClient, backend: Backend) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.shout(text="a", times="many")
    assert info.value.error_code == 400
    assert info.value.detail[0]["loc"] == ["times"]
    if backend == "bentoml":
        assert str(info.value).startswith("1 validation error for Input: times: Input should be")
    else:  # nbserve's message also names the value it got and what to send (aesthetics §8.6)
        assert str(info.value).startswith(
            "1 validation error for Input: field 'times': Input should be a valid integer "
            "(got 'many'); send an integer"
        )


def test_server_errors_map_by_status(client: SyncHTTPClient) -> None:
    with pytest.raises(InvalidArgument, match=r"^kind 'invalid' is refused on purpose$"):
        client.fail("invalid")
    with pytest.raises(NotFound, match=r"^nothing called 'missing'$") as info:
        client.fail("missing")
    assert info.value.error_code == 404
    with pytest.raises(NbserveError, match=r"unexpected error.*\(request id [0-9a-f]+\)") as err:
        client.fail("boom")
    assert type(err.value) is NbserveError
    assert err.value.error_code == 500


# --- tasks ---------------------------------------------------------------------------------


def test_task_submit_status_get(client: SyncHTTPClient) -> None:
    task = client.slow_double.submit(21)
    deadline = time.monotonic() + 30
    while (status := task.get_status()) not in ("completed", "failed"):
        assert time.monotonic() < deadline, f"task still {status}"
        time.sleep(0.05)
    assert status == "completed"
    assert task.get() == 42
    assert client.slow_double(4) == 8  # a task API is callable directly too


# --- prefixes and readiness ----------------------------------------------------------------


def test_path_prefix(servers: dict[str, ServerProcess], backend: Backend) -> None:
    origin = servers["Prefixed"].origin
    with SyncHTTPClient(origin + "/v2") as prefixed:
        # BentoML puts the prefix in the schema's routes; nbserve's are relative to the base URL
        # the schema is served under, so clients that join them onto it (BentoML's) work (§3.4).
        route = "/v2/shout" if backend == "bentoml" else "/shout"
        assert prefixed.endpoints["shout"].route == route
        assert prefixed.shout("x", 2) == "XX"
        assert list(prefixed.tokens("a b")) == ["a", "b"]
    if backend == "bentoml":  # BentoML's /readyz is only under the prefix
        with pytest.raises(
            ServiceUnavailable, match=r"not ready after 0\.5 s: last answer HTTP 404"
        ):
            SyncHTTPClient(origin, server_ready_timeout=0.5)
        return
    # nbserve also answers the probes and /schema.json (routes prefixed) at the root.
    with SyncHTTPClient(origin, server_ready_timeout=5) as from_origin:
        assert from_origin.endpoints["shout"].route == "/v2/shout"
        assert from_origin.shout("y", 2) == "YY"


# --- the async client ----------------------------------------------------------------------


def test_async_client(url: str, text_file: Path) -> None:
    async def scenario() -> dict[str, Any]:
        async with AsyncHTTPClient(url) as client:
            streamed = [token async for token in client.tokens("x y")]
            events = [event async for event in client.events(2)]
            with pytest.raises(InvalidArgument, match=r"times: Input should be"):
                await client.shout(text="a", times="many")
            task = await client.slow_double.submit(5)
            while await task.get_status() != "completed":
                await asyncio.sleep(0.05)
            return {
                "shout": await client.shout("hi", times=2),
                "call": await client.call("plain", "p"),
                "scale": await client.scale(np.ones(2, dtype=np.float32)),
                "file": (await client.upper_file(text_file)).read_text(),
                "tokens": streamed,
                "events": events,
                "task": await task.get(),
            }

    result = asyncio.run(scenario())
    assert result["shout"] == "HIHI"
    assert result["call"] == "<p>"
    assert result["scale"].dtype == np.float32
    assert result["file"] == "HELLO!"
    assert result["tokens"] == ["x", "y"]
    assert result["events"] == [{"i": 0, "square": 0}, {"i": 1, "square": 1}]
    assert result["task"] == 10


def test_async_client_from_url_and_without_setup(url: str) -> None:
    async def scenario() -> str:
        client = AsyncHTTPClient(url)
        with pytest.raises(AttributeError, match=r"async with AsyncHTTPClient\(url\)"):
            _ = client.shout
        with pytest.raises(RuntimeError, match=r"cannot call 'shout' yet.*from_url"):
            client.call("shout", "x")
        await client.close()
        ready = await AsyncHTTPClient.from_url(url)
        try:
            text: str = await ready.shout("ok")
        finally:
            await ready.close()
        return text

    assert asyncio.run(scenario()) == "OK"


def test_the_bentoml_python_is_1_4_39() -> None:
    out = subprocess.run(
        [str(bentoml_python()), "-c", "import bentoml; print(bentoml.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "1.4.39", sys.version
