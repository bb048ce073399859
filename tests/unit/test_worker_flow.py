"""A worker's stream window: a producer waits for the server's credit and stops when cancelled."""

from __future__ import annotations

import asyncio
import threading

from nbserve._runtime.execution.workers.flow import StreamWindow


def test_a_sync_producer_waits_for_credit_and_stops_when_the_stream_is_cancelled() -> None:
    window = StreamWindow(2)
    assert window.take()
    assert window.take()
    took: list[bool] = []
    first = threading.Event()

    def produce() -> None:
        took.append(window.take())
        first.set()
        took.append(window.take())

    producer = threading.Thread(target=produce)
    producer.start()
    assert took == []  # no credit: it waits
    window.grant(1)
    assert first.wait(10)
    window.close()
    producer.join(10)
    assert took == [True, False]  # the granted item, then cancelled while waiting


def test_an_async_producer_waits_on_its_loop_for_credit_from_another_thread() -> None:
    async def scenario() -> tuple[bool, bool]:
        window = StreamWindow(1)
        assert await window.take_async()
        waiter = asyncio.ensure_future(window.take_async())
        await asyncio.sleep(0)
        assert not waiter.done()
        granter = threading.Thread(target=window.grant, args=(1,))
        granter.start()
        granted = await waiter
        granter.join()
        waiter = asyncio.ensure_future(window.take_async())
        await asyncio.sleep(0)
        threading.Thread(target=window.close).start()
        return granted, await waiter

    assert asyncio.run(scenario()) == (True, False)
