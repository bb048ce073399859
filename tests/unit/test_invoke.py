"""The one invocation path: binding, context in and out, sync/async/generator dispatch, errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

import nbserve
from nbserve._runtime.execution.invoke import (
    END,
    Signature,
    SyncSteps,
    call_async,
    call_sync,
    captured,
)
from nbserve._sdk.context import Context, current_context


@nbserve.service
class Shapes:
    @nbserve.api
    def plain(self, a: int, b: int = 2) -> int:
        return a * b

    @nbserve.api
    def root(self, text: str, /) -> str:
        return text.upper()

    @nbserve.api
    async def with_ctx(self, name: str, ctx: nbserve.Context) -> str:
        ctx.response.headers["X-Name"] = name
        return name

    @nbserve.api
    def numbers(self, n: int) -> Iterator[int]:
        yield from range(n)

    @nbserve.api
    async def anumbers(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i


def test_signatures_describe_how_each_api_is_called() -> None:
    sigs = {name: Signature.of(api) for name, api in Shapes.apis.items()}
    assert sigs["plain"] == Signature("plain", False, False, None, None)
    assert sigs["root"] == Signature("root", False, False, None, "text")
    assert sigs["with_ctx"] == Signature("with_ctx", True, False, "ctx", None)
    assert sigs["numbers"] == Signature("numbers", False, True, None, None)
    assert sigs["anumbers"] == Signature("anumbers", True, True, None, None)


def test_binding_passes_a_root_input_positionally_and_the_context_by_name() -> None:
    ctx = Context()
    assert Signature.of(Shapes.apis["root"]).bind({"text": "hi"}, ctx) == (("hi",), {})
    assert Signature.of(Shapes.apis["with_ctx"]).bind({"name": "x"}, ctx) == (
        (),
        {"name": "x", "ctx": ctx},
    )
    assert Signature.of(Shapes.apis["plain"]).bind({"a": 1}, ctx) == ((), {"a": 1})


def test_a_sync_call_sees_its_context_only_while_it_runs() -> None:
    ctx = Context()
    seen: list[object] = []

    def method() -> str:
        seen.append(current_context.get(None))
        return "ok"

    outside = threading.Thread(target=lambda: seen.append(call_sync(method, (), {}, ctx)))
    outside.start()
    outside.join()
    assert seen == [ctx, "ok"]
    assert current_context.get(None) is not ctx


def test_an_async_call_is_awaited_and_a_plain_function_is_accepted() -> None:
    ctx = Context()
    instance = Shapes()

    async def scenario() -> tuple[object, object, object]:
        value = await call_async(instance.with_ctx, (), {"name": "n", "ctx": ctx}, ctx)
        plain = await call_async(lambda: current_context.get(None), (), {}, ctx)
        return value, plain, current_context.get(None)

    value, plain, after = asyncio.run(scenario())
    assert (value, plain, after) == ("n", ctx, None)
    assert ctx.response.headers["X-Name"] == "n"  # what the method set, for the caller to read


def test_sync_steps_advance_a_generator_one_item_at_a_time_and_close_it() -> None:
    closed: list[bool] = []

    def gen() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    steps = SyncSteps(gen(), None)
    assert steps.step() == 1
    assert not steps.done
    steps.close()
    assert steps.done
    assert closed == [True]

    steps = SyncSteps(iter([7]), None)
    assert (steps.step(), steps.step(), steps.done) == (7, END, True)


def test_a_failing_generator_is_done_after_its_error() -> None:
    def gen() -> Iterator[int]:
        raise ValueError("bad item")
        yield 0

    steps = SyncSteps(gen(), None)
    with pytest.raises(ValueError, match="bad item"):
        steps.step()
    assert steps.done


def test_captured_turns_what_would_stop_a_loop_into_an_ordinary_error() -> None:
    error = ValueError("x")
    assert captured(error) is error
    stopped = captured(SystemExit(3))
    assert isinstance(stopped, RuntimeError)
    assert "SystemExit(3)" in str(stopped)
