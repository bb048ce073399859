"""Fuzzing: schemathesis generates requests from a running service's own `/docs.json` (valid
and invalid bodies, odd types, unicode, multipart parts) and no request may get a 5xx, except
from the API that raises on purpose; inline and with two workers. Bounded: a fixed number of
examples per operation."""

from __future__ import annotations

import collections
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from pydantic import BaseModel, Field

import nbserve
from nbserve.testing import running_service
from nbserve.validators import DType, Shape

EXAMPLES = 25  # per operation: ~25 operations x 25 requests, seconds per mode (a loaded CI: more)
ON_PURPOSE = "POST /fail"


class Item(BaseModel):
    name: str = Field(max_length=50)
    qty: int = Field(default=1, ge=0, le=1000)


@nbserve.service(traffic={"timeout": 30})
class Fuzzed:
    """One API per IO kind, every one cheap whatever its (valid) input."""

    @nbserve.api
    def shout(self, text: str, times: Annotated[int, Field(ge=0, le=10)] = 1) -> str:
        return text.upper() * times

    @nbserve.api
    def plain(self, text: str, /) -> str:
        return text[::-1]

    @nbserve.api
    def numbers(
        self, x: float, flag: bool = False, values: list[int] | None = None
    ) -> dict[str, Any]:
        return {"x": x, "flag": flag, "n": len(values or [])}

    @nbserve.api
    def order(self, item: Item, note: str | None = None) -> Item:
        return item

    @nbserve.api
    def order_root(self, item: Item, /) -> dict[str, Any]:
        return item.model_dump()

    @nbserve.api
    def tensor(self, arr: Annotated[np.ndarray, Shape((-1, 3)), DType("float32")]) -> np.ndarray:
        return arr.sum(axis=0)

    @nbserve.api(batchable=True, max_batch_size=8)
    def batched(self, x: list[float]) -> list[float]:
        return [v * 2 for v in x]

    @nbserve.api
    def upload(self, doc: Path, label: str = "") -> dict[str, Any]:
        return {"size": doc.stat().st_size, "label": label}

    @nbserve.api
    def uploads(self, docs: list[Path]) -> list[int]:
        return [d.stat().st_size for d in docs]

    @nbserve.api
    def raw(self, data: bytes, /) -> bytes:
        return data[:100]

    @nbserve.api
    def tokens(self, text: str) -> Generator[str, None, None]:
        yield from text.split()[:20]

    @nbserve.api
    async def events(
        self, n: Annotated[int, Field(ge=0, le=20)]
    ) -> AsyncGenerator[dict[str, int], None]:
        for i in range(n):
            yield {"i": i}

    @nbserve.api
    def fail(self, kind: str) -> str:
        raise RuntimeError(f"raised on purpose ({kind!r})")

    @nbserve.task
    def double(self, x: int) -> int:
        return x * 2


@pytest.fixture(scope="module", params=[None, 2], ids=["inline", "2-workers"])
def schema(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Inline, and in two worker processes: every value then crosses the pipes both ways
    (pickled kwargs, results, stream items, errors), which inline calls never do."""
    with running_service(Fuzzed, workers=request.param) as handle:
        yield schemathesis.openapi.from_url(handle.url + "/docs.json")


@pytest.mark.slow
@pytest.mark.timeout(300)  # ~600 requests: a loaded machine may take minutes
def test_no_request_gets_a_server_error(schema: Any) -> None:
    server_errors: collections.Counter[tuple[str, int, str]] = collections.Counter()
    purposeful: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        _fuzz(operation, server_errors, purposeful)
    assert not server_errors, server_errors.most_common(10)
    assert purposeful  # the fuzzer did reach the API that fails on purpose


def _fuzz(
    operation: Any,
    server_errors: collections.Counter[tuple[str, int, str]],
    purposeful: list[int],
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure can be replayed
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        response = case.call(timeout=60)
        if response.status_code < 500:
            return
        if operation.label == ON_PURPOSE and response.status_code == 500:
            purposeful.append(response.status_code)
            return
        server_errors[(operation.label, response.status_code, response.text[:200])] += 1

    fuzz()
