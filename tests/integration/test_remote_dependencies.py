"""`depends(url=...)` and `depends(deployment=...)` (`_sdk/remote.py`): a proxy whose methods are
the remote service's APIs, read from its `/schema.json`, with awaitable versions on `.to_async`;
tested against real servers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbserve
from nbserve._notebook import discovery
from nbserve._notebook.registry import REGISTRY
from nbserve._sdk.remote import RemoteService
from nbserve.exceptions import NotFound


@nbserve.service
class Words:
    @nbserve.api
    def shout(self, text: str) -> str:
        return text.upper()

    @nbserve.api
    def count(self, text: str) -> int:
        return len(text.split())

    @nbserve.api
    def spell(self, text: str) -> Iterator[str]:
        yield from text


@pytest.fixture
def words() -> Iterator[str]:
    with nbserve.serve(Words) as handle:
        yield handle.url


def test_depends_url_calls_the_remote_apis_sync_and_async(words: str) -> None:
    @nbserve.service
    class Caller:
        remote = nbserve.depends(url=words)

        @nbserve.api
        def loud(self, text: str) -> str:
            result: str = self.remote.shout(text=text)
            return result

        @nbserve.api
        async def both(self, text: str) -> list[object]:
            return list(
                await asyncio.gather(
                    self.remote.to_async.shout(text=text), self.remote.to_async.count(text=text)
                )
            )

        @nbserve.api
        async def letters(self, text: str) -> list[str]:
            return [letter async for letter in self.remote.to_async.spell(text=text)]

    assert isinstance(Caller.inner.remote, object)
    with nbserve.serve(Caller) as handle, handle.client() as client:
        assert client.loud(text="hi there") == "HI THERE"
        assert client.both(text="hi there") == ["HI THERE", 2]
        assert client.letters(text="abc") == ["a", "b", "c"]


def test_depends_url_from_inside_a_worker(words: str) -> None:
    @nbserve.service
    class Caller:
        remote = nbserve.depends(url=words)

        @nbserve.api
        async def loud(self, text: str) -> str:
            result: str = await self.remote.to_async.shout(text=text)
            return result

    with nbserve.serve(Caller, workers=1) as handle, handle.client() as client:
        assert client.loud(text="hi") == "HI"


def test_a_missing_api_is_named_with_the_remote_ones(words: str) -> None:
    remote = RemoteService(words)
    try:
        with pytest.raises(
            AttributeError, match=r"no API 'whisper'; its APIs: shout, count, spell"
        ):
            _ = remote.whisper
        assert remote.count(text="a b c") == 3
        assert list(remote.spell(text="ab")) == ["a", "b"]
    finally:
        remote.close()


def _resolver(name: str) -> nbserve.Dependency[object]:
    @nbserve.service
    class Caller:
        remote = nbserve.depends(deployment=name)

    dependency: nbserve.Dependency[object] = Caller.inner.__dict__["remote"]
    return dependency


def test_depends_deployment_finds_a_service_of_this_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    REGISTRY.serve(Words, name="KernelWords")
    try:
        remote = _resolver("KernelWords").get()
        assert isinstance(remote, RemoteService)
        assert remote.url == REGISTRY.get("KernelWords").url
        assert remote.shout(text="ok") == "OK"
        remote.close()
    finally:
        REGISTRY.stop("KernelWords")


def test_depends_deployment_reads_the_discovery_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, words: str
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    port = int(words.rsplit(":", 1)[1])
    record = discovery.record(
        name="OtherKernelWords",
        host="127.0.0.1",
        port=port,
        url=words,
        routes=["/shout"],
        token=None,
        version=1,
        admin_secret="not-used-here",
        mode="inline",
    )
    discovery.write(discovery.discovery_path("OtherKernelWords", kernel="k1"), record)
    remote = _resolver("OtherKernelWords").get()
    assert remote.url == words
    assert remote.shout(text="far") == "FAR"
    remote.close()


def test_depends_deployment_names_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(NotFound) as caught:
        _resolver("Nowhere").get()
    message = str(caught.value)
    assert "no live nbserve service named 'Nowhere'" in message
    assert "nbserve.services()" in message
    assert str(tmp_path / "nbserve") in message
    assert "depends(url=" in message


def test_a_hot_swap_keeps_the_remote_clients_of_the_same_class(words: str) -> None:
    @nbserve.service
    class Caller:
        remote = nbserve.depends(url=words)

        @nbserve.api
        async def loud(self, text: str) -> str:
            result: str = await self.remote.to_async.shout(text=text)
            return result

        @nbserve.api
        def count(self, text: str) -> int:
            result: int = self.remote.count(text=text)
            return result

    with nbserve.serve(Caller) as handle, handle.client() as client:
        assert client.loud(text="a") == "A"
        assert client.count(text="a b") == 2
        handle.swap(Caller)  # the old deployment stops: the clients the new one uses stay open
        assert client.loud(text="b") == "B"
        assert client.count(text="a b c") == 3


def test_depends_deployment_reaches_a_kernel_service_with_a_token_from_a_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from nbserve._notebook.live import ServeOptions

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    REGISTRY.serve(Words, name="GuardedWords", options=ServeOptions(token="auto"))
    try:
        assert REGISTRY.get("GuardedWords").token  # the worker cannot read the kernel's token

        @nbserve.service
        class Caller:
            remote = nbserve.depends(deployment="GuardedWords")

            @nbserve.api
            def loud(self, text: str) -> dict[str, object]:
                return {"text": self.remote.shout(text=text), "pid": os.getpid()}

        with nbserve.serve(Caller, workers=1) as handle, handle.client() as client:
            answer = client.loud(text="guarded")
            assert answer["text"] == "GUARDED"
            assert answer["pid"] != os.getpid()  # resolved by the server, called from a worker
    finally:
        REGISTRY.stop("GuardedWords")
