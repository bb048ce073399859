"""The adaptive dispatcher against a fake `run_batch`: batching, splitting, waits, shedding, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from nbserve._runtime.execution.batching.cost import CostModel
from nbserve._runtime.execution.batching.dispatcher import Dispatcher
from nbserve._runtime.execution.executor import Withdrawn
from nbserve.exceptions import ServiceUnavailable


class FakeModel:
    """Doubles its input; records each batch's rows; each batch takes `a + b·rows` seconds."""

    def __init__(self, a: float = 0.0, b: float = 0.0) -> None:
        self.a, self.b = a, b
        self.batches: list[int] = []
        self.fail_on: int | None = None

    async def __call__(self, batch: Any) -> Any:
        rows = len(batch)
        self.batches.append(rows)
        await asyncio.sleep(self.a + self.b * rows)
        if self.fail_on is not None and self.fail_on in list(np.asarray(batch).ravel()):
            raise ValueError(f"poisoned batch of {rows}")
        return np.asarray(batch) * 2


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def dispatcher(model: FakeModel, **options: Any) -> Dispatcher:
    defaults: dict[str, Any] = {
        "name": "API 'double'",
        "max_batch_size": 64,
        "max_latency_ms": 10_000,
    }
    return Dispatcher(model, **{**defaults, **options})


def assert_no_timers(d: Dispatcher) -> None:
    assert d._hold is None


def test_a_lone_request_goes_out_at_once() -> None:
    async def scenario() -> None:
        model = FakeModel()
        d = dispatcher(model)
        out = await d.submit(np.array([1, 2]))
        np.testing.assert_array_equal(out, [2, 4])
        assert model.batches == [2]
        assert_no_timers(d)

    run(scenario)


def test_requests_arriving_while_the_slot_is_busy_form_one_batch_and_get_their_own_rows() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.02)
        seen: list[tuple[int, float]] = []
        d = dispatcher(model, observe=lambda rows, wait: seen.append((rows, wait)))
        outs = await asyncio.gather(*(d.submit(np.array([i, i])) for i in range(10)))
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out, [2 * i, 2 * i])
        assert model.batches == [2, 18]
        assert [rows for rows, _ in seen] == [2, 18]
        assert seen[1][1] > 0.01  # the second batch waited for the first
        assert d.stats()["batches"] == 2
        assert_no_timers(d)

    run(scenario)


def test_one_batch_in_flight_per_slot() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.02)
        d = dispatcher(model, slots=lambda: 3)
        await asyncio.gather(*(d.submit([i]) for i in range(9)))
        assert model.batches[:3] == [1, 1, 1]
        assert sum(model.batches) == 9

    run(scenario)


def test_an_oversized_request_is_split_and_merged_back() -> None:
    async def scenario() -> None:
        model = FakeModel()
        d = dispatcher(model, max_batch_size=4)
        out = await d.submit(np.arange(10))
        np.testing.assert_array_equal(out, np.arange(10) * 2)
        assert model.batches == [4, 4, 2]

    run(scenario)


def test_rows_not_requests_are_counted_and_a_tail_keeps_its_place() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.01)
        d = dispatcher(model, max_batch_size=4)
        outs = await asyncio.gather(*(d.submit(np.full(3, i)) for i in range(4)))
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out, [2 * i] * 3)
        assert model.batches == [3, 4, 4, 1]

    run(scenario)


def test_a_failing_batch_falls_back_to_one_call_per_request_and_only_the_bad_one_fails() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.01)
        model.fail_on = 7
        d = dispatcher(model, max_batch_size=2)
        results = await asyncio.gather(
            *(d.submit([v]) for v in (1, 7, 3, 4, 5)), return_exceptions=True
        )
        # batches: [1], [7, 3] fails, then [7] and [3] alone, then [4, 5]
        assert model.batches == [1, 2, 1, 1, 2]
        assert isinstance(results[1], ValueError)
        assert [list(results[i]) for i in (0, 2, 3, 4)] == [[2], [6], [8], [10]]  # type: ignore[call-overload]
        assert d.fallbacks == 1

    run(scenario)


def test_requests_that_cannot_be_merged_run_one_by_one() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.01)
        d = dispatcher(model)
        busy = asyncio.ensure_future(d.submit(np.ones((1, 2))))
        await asyncio.sleep(0)
        # queued while the slot is busy: rows of width 2, 3 and 2 cannot be concatenated
        outs = await asyncio.gather(
            d.submit(np.full((1, 2), 1.0)),
            d.submit(np.full((2, 3), 2.0)),
            d.submit(np.zeros((1, 2))),
        )
        await busy
        assert [o.tolist() for o in outs] == [[[2.0, 2.0]], [[4.0] * 3] * 2, [[0.0, 0.0]]]
        assert model.batches == [1, 1, 2, 1]
        assert d.fallbacks == 1

    run(scenario)


def test_a_failure_of_the_machinery_is_not_retried_request_by_request() -> None:
    async def scenario() -> None:
        calls: list[int] = []

        async def dead_worker(batch: Any) -> Any:
            calls.append(len(batch))
            await asyncio.sleep(0.01)
            raise ServiceUnavailable("worker 0 died while handling this request")

        d = Dispatcher(dead_worker, name="API 'x'", max_batch_size=8, max_latency_ms=20)
        results = await asyncio.gather(*(d.submit([i]) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, ServiceUnavailable) for r in results)
        assert calls == [1, 2]
        assert d.fallbacks == 0

    run(scenario)


def test_a_request_waits_for_a_busy_slot_past_max_latency_and_is_served() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.1)  # every batch takes five times max_latency_ms
        d = dispatcher(model, max_latency_ms=20)
        outs = await asyncio.gather(*(d.submit([i]) for i in range(8)))
        assert [list(o) for o in outs] == [[2 * i] for i in range(8)]
        assert model.batches == [1, 7]
        for _ in range(3):  # and once the cost model knows batches are slow, still served
            outs = await asyncio.gather(*(d.submit([i]) for i in range(8)))
            assert [list(o) for o in outs] == [[2 * i] for i in range(8)]
        assert d.shed == 0
        assert_no_timers(d)

    run(scenario)


def test_a_full_queue_sheds_with_a_503_that_names_the_queue() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.05)
        shed: list[str] = []
        d = dispatcher(
            model, max_batch_size=2, max_queue_batches=1, on_shed=lambda r, m: shed.append(r)
        )
        assert d.queue_limit() == 2
        busy = asyncio.ensure_future(d.submit([0]))
        await asyncio.sleep(0)
        queued = asyncio.ensure_future(d.submit([1, 2]))  # fills the queue: 2 rows
        await asyncio.sleep(0)
        with pytest.raises(
            ServiceUnavailable, match=r"batch queue is full \(2 rows waiting, limit 2"
        ) as info:
            await d.submit([3])
        assert info.value.detail == {"reason": "queue_full"}
        assert shed == ["queue_full"]
        assert d.shed == 1
        assert not busy.done()  # turned away at once, not after a wait
        assert [list(await busy), list(await queued)] == [[0], [2, 4]]

    run(scenario)


def test_a_request_bigger_than_the_queue_limit_is_taken_into_an_empty_queue() -> None:
    async def scenario() -> None:
        model = FakeModel()
        d = dispatcher(model, max_batch_size=2, max_queue_batches=1)
        assert list(await d.submit(list(range(5)))) == [0, 2, 4, 6, 8]
        assert model.batches == [2, 2, 1]

    run(scenario)


def test_a_hold_for_more_rows_never_passes_max_latency() -> None:
    async def scenario() -> None:
        model = FakeModel()
        d = dispatcher(model, max_batch_size=64, max_latency_ms=5)
        for i in range(30):  # about 1000 rows/s
            await d.submit([i])
            await asyncio.sleep(0.001)
        d.cost = CostModel(warmup=0)
        for n in (1, 2, 3):  # a fixed cost of 1 s: waiting would pay for up to a second
            d.cost.observe(n, 1.0)
        held = asyncio.ensure_future(d.submit([100]))
        await asyncio.sleep(0)
        assert d._hold is not None  # it waits for company...
        arrived = d._queue.oldest()
        assert d._hold_until == pytest.approx(arrived + 0.005)  # ...for max_latency_ms at most
        assert list(await held) == [200]

    run(scenario)


def test_waiting_pays_when_rows_arrive_faster_than_the_fixed_cost() -> None:
    async def scenario() -> None:
        model = FakeModel()
        d = dispatcher(model, max_batch_size=8)
        for i in range(30):  # requests 1 ms apart: the arrival rate is about 1000 rows/s
            await d.submit([i])
            await asyncio.sleep(0.001)
        d.cost = CostModel(warmup=0)
        for n in (1, 2, 3):  # and a batch has a fixed cost of 30 ms: λ·a ≈ 30 rows > 1
            d.cost.observe(n, 0.03)
        before = len(model.batches)
        first = asyncio.ensure_future(d.submit([100]))
        await asyncio.sleep(0.002)
        assert len(model.batches) == before  # the free slot waits for more rows...
        second = asyncio.ensure_future(d.submit([101]))
        await asyncio.gather(first, second)
        assert model.batches[before] == 2  # ...and they go out together
        assert_no_timers(d)

    run(scenario)


def test_a_lone_request_after_a_quiet_spell_is_not_held() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.03)
        d = dispatcher(model)
        for n in (1, 2, 1, 3, 2):
            d.cost.observe(n, 0.03)
        await asyncio.gather(*(d.submit([i]) for i in range(5)))
        await asyncio.sleep(0.2)
        before = len(model.batches)
        lone = asyncio.ensure_future(d.submit([1]))
        for _ in range(10):  # a few loop turns: enough to dispatch, no time for a hold to end
            await asyncio.sleep(0)
        assert len(model.batches) == before + 1  # dispatched at once, not held for company
        assert d._hold is None
        await lone

    run(scenario)


def test_a_cancelled_request_is_skipped() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.02)
        d = dispatcher(model)
        first = asyncio.ensure_future(d.submit([1]))
        await asyncio.sleep(0)
        gone = asyncio.ensure_future(d.submit([2]))
        kept = asyncio.ensure_future(d.submit([3]))
        await asyncio.sleep(0)
        gone.cancel()
        assert list(await kept) == [6]
        await first
        assert model.batches == [1, 1]

    run(scenario)


def test_a_request_cancelled_in_the_queue_is_withdrawn_and_leaves_it_at_once() -> None:
    """It never ran: `Withdrawn`; its rows stop counting against the queue bound at once and
    never join a batch."""

    async def scenario() -> None:
        model = FakeModel(a=0.02)
        d = dispatcher(model, max_batch_size=4, max_queue_batches=1)
        first = asyncio.ensure_future(d.submit([1]))
        await asyncio.sleep(0)  # in flight: the queue is empty again
        gone = asyncio.ensure_future(d.submit([2, 2, 2]))
        await asyncio.sleep(0)
        assert d.stats()["queued_rows"] == 3
        gone.cancel()
        with pytest.raises(Withdrawn):
            await gone
        assert d.stats()["queued_rows"] == 0
        # The bound (4 rows) has room for all of these only because the 3 rows left.
        kept = [asyncio.ensure_future(d.submit([v])) for v in (3, 4, 5, 6)]
        assert [list(await k) for k in kept] == [[6], [8], [10], [12]]
        await first
        assert model.batches == [1, 4]
        assert d.shed == 0

    run(scenario)


def test_a_request_cancelled_behind_others_is_withdrawn_and_skipped() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.02)
        d = dispatcher(model)
        first = asyncio.ensure_future(d.submit([1]))
        await asyncio.sleep(0)
        before = asyncio.ensure_future(d.submit([3]))
        gone = asyncio.ensure_future(d.submit([2, 2]))
        after = asyncio.ensure_future(d.submit([5]))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(Withdrawn):
            await gone
        assert d.stats()["queued_rows"] == 2
        assert [list(await before), list(await after)] == [[6], [10]]
        await first
        assert model.batches == [1, 2]

    run(scenario)


def test_a_request_cancelled_in_a_running_batch_is_not_withdrawn() -> None:
    """Its batch runs on for the others (a plain `CancelledError`); a split request's tail still
    queued leaves the queue."""

    async def scenario() -> None:
        model = FakeModel(a=0.02)
        d = dispatcher(model, max_batch_size=4)
        split = asyncio.ensure_future(d.submit(np.arange(6)))  # 4 rows go, 2 stay queued
        await asyncio.sleep(0)
        assert d.stats()["queued_rows"] == 2
        split.cancel()
        with pytest.raises(asyncio.CancelledError) as raised:
            await split
        assert not isinstance(raised.value, Withdrawn)
        assert d.stats()["queued_rows"] == 0
        await d.close()
        assert model.batches == [4]  # the tail never ran

    run(scenario)


def test_close_drains_the_queue_and_refuses_new_requests() -> None:
    async def scenario() -> None:
        model = FakeModel(a=0.02)
        d = dispatcher(model)
        pending = [asyncio.ensure_future(d.submit([i])) for i in range(3)]
        await asyncio.sleep(0)
        await d.close()
        assert [list(p.result()) for p in pending] == [[0], [2], [4]]
        with pytest.raises(ServiceUnavailable, match="stopping"):
            await d.submit([1])
        assert_no_timers(d)

    run(scenario)


def test_wrong_output_rows_fail_the_batch_with_a_clear_message() -> None:
    async def scenario() -> None:
        async def short(batch: Any) -> Any:
            return batch[:-1]

        d = Dispatcher(short, name="API 'short'", max_batch_size=8, max_latency_ms=1000)
        with pytest.raises(TypeError, match=r"returned 1 row\(s\) for a batch of 2"):
            await d.submit([1, 2])

    run(scenario)


def test_an_empty_request_skips_the_queue() -> None:
    async def scenario() -> None:
        model = FakeModel()
        d = dispatcher(model)
        assert list(await d.submit([])) == []

    run(scenario)


def test_cost_model_fits_fixed_and_per_row_cost() -> None:
    cost = CostModel(warmup=1)
    cost.observe(1, 5.0)  # warm-up outlier, ignored
    for rows in (1, 2, 4, 8, 16):
        cost.observe(rows, 0.002 + 0.0001 * rows)
    assert cost.trained
    assert cost.a == pytest.approx(0.002)
    assert cost.b == pytest.approx(0.0001)
    assert cost.estimate(10) == pytest.approx(0.003)
    flat = CostModel(warmup=0)
    for _ in range(3):
        flat.observe(4, 0.01)
    assert (flat.a, flat.b) == (pytest.approx(0.01), 0.0)
