"""BentoML's own clients call every API of `echo_service.py`; the outcomes go to a JSON report.

Run by .venv-bentoml's python (BentoML 1.4.39), never by nbserve's:

    python call_every_api.py URL REPORT.json

`URL` is the service's base URL (with its path prefix, if any). Each step records either
`{"value": ...}` (the result, described as JSON: arrays with their dtype, DataFrames as records
and columns, files with their name and text, images with their size and a pixel, streams as the
list of items iterated) or `{"raised": <class>, "bentoml_exception": bool, "error_code",
"message"}`. tests/integration/test_bentoml_client_against_nbserve.py asserts on the report.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import bentoml
import httpx
import numpy as np
import pandas as pd
from _bentoml_impl.client.task import AsyncTask, Task  # to poll a task submitted by hand
from bentoml.exceptions import BentoMLException
from PIL import Image
from pydantic import BaseModel

TASK_TIMEOUT = 30.0


class Item(BaseModel):
    name: str
    qty: int = 1


def describe(value: Any) -> Any:
    """A JSON view of a client's return value that keeps its Python type visible."""
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, pd.DataFrame):
        return {
            "DataFrame": value.to_dict(orient="records"),
            "columns": [str(c) for c in value.columns],
        }
    if isinstance(value, Path):
        return {"Path": value.name, "text": value.read_text()}
    if isinstance(value, Image.Image):
        return {"Image": list(value.size), "pixel": list(value.convert("RGB").getpixel((1, 0)))}
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if hasattr(value, "value") and type(value).__name__ == "ResultStatus":
        return {"ResultStatus": value.value}
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return {"repr": repr(value)[:200], "type": type(value).__name__}


def failure(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {
        "raised": type(exc).__name__,
        "bentoml_exception": isinstance(exc, BentoMLException),
        "message": str(exc)[:1000],
    }
    if isinstance(exc, BentoMLException):
        out["error_code"] = int(exc.error_code)
    return out


def outcome(call: Callable[[], Any]) -> dict[str, Any]:
    try:
        value = call()
        if isinstance(value, Iterator) and not isinstance(value, Path | str | bytes):
            return {"value": {"iterated": [describe(item) for item in value]}}
        return {"value": describe(value)}
    except Exception as exc:
        return failure(exc)


async def async_outcome(call: Callable[[], Awaitable[Any] | AsyncIterator[Any]]) -> dict[str, Any]:
    try:
        result = call()
        if isinstance(result, AsyncIterator):
            return {"value": {"iterated": [describe(item) async for item in result]}}
        assert inspect.isawaitable(result)
        value = await result
        if isinstance(value, AsyncIterator):
            return {"value": {"iterated": [describe(item) async for item in value]}}
        return {"value": describe(value)}
    except Exception as exc:
        return failure(exc)


def inputs(folder: Path) -> dict[str, Any]:
    note = folder / "note.txt"
    note.write_text("hello")
    other = folder / "other.bin"
    other.write_bytes(b"abc")
    png = folder / "red.png"
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), (255, 0, 0))
    image.save(png)
    return {"note": note, "other": other, "png": png}


def sync_calls(client: bentoml.SyncHTTPClient, files: dict[str, Any]) -> dict[str, Any]:
    image = Image.open(files["png"])  # BentoML's client uploads an image through its file
    return {
        "endpoints": {"value": sorted(client.endpoints)},
        "shout": outcome(lambda: client.shout(text="hi", times=2)),
        "shout_positional": outcome(lambda: client.shout("hi", 2)),
        "call": outcome(lambda: client.call("shout", text="ab", times=3)),
        "plain": outcome(lambda: client.plain("x y")),
        "scale": outcome(
            lambda: client.scale(np.array([[1, 2], [3, 4]], dtype=np.float64), factor=0.5)
        ),
        "frame": outcome(lambda: client.frame(pd.DataFrame({"price": [1.5, 2.0], "qty": [2, 3]}))),
        "frame_columns": outcome(
            lambda: client.frame_columns(pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
        ),
        "upper_file": outcome(lambda: client.upper_file(files["note"], suffix="?")),
        "sizes": outcome(lambda: client.sizes([files["note"], files["other"]])),
        "flip": outcome(lambda: client.flip(image)),
        "order": outcome(lambda: client.order(Item(name="tea", qty=3))),
        "order_dict": outcome(lambda: client.order({"name": "tea"}, price=1)),
        "order_root": outcome(lambda: client.order_root({"name": "b", "qty": 4})),
        "raw": outcome(lambda: client.raw("abc")),
        "tokens": outcome(lambda: client.tokens("a bb ccc")),
        "events": outcome(lambda: client.events(3)),
        "invalid_input": outcome(lambda: client.shout(text="a", times="many")),
        "fail_invalid": outcome(lambda: client.fail("invalid")),
        "fail_missing": outcome(lambda: client.fail("missing")),
        "fail_boom": outcome(lambda: client.fail("boom")),
        "task_direct": outcome(lambda: client.slow_double(4)),
        # BentoML's sync submit sends the request, then fails on `_opened_files` (§3.1).
        "task_submit_sync": outcome(lambda: client.slow_double.submit(3)),
    }


def sync_task(client: bentoml.SyncHTTPClient, task_id: str) -> dict[str, Any]:
    """Poll and fetch a task (submitted by the async client) with the sync client."""
    task = Task(task_id, client.endpoints["slow_double"], client)
    deadline = time.monotonic() + TASK_TIMEOUT
    while (status := task.get_status()).value not in ("completed", "failed"):
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return {"status": describe(status), "get": outcome(task.get)}


async def wait_done(task: AsyncTask) -> Any:
    deadline = time.monotonic() + TASK_TIMEOUT
    while (status := await task.get_status()).value not in ("completed", "failed"):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    return status


async def async_calls(url: str, files: dict[str, Any]) -> dict[str, Any]:
    async with bentoml.AsyncHTTPClient(url) as client:
        report: dict[str, Any] = {
            "shout": await async_outcome(lambda: client.shout("hi", times=2)),
            "scale": await async_outcome(lambda: client.scale(np.ones(2, dtype=np.float32))),
            "frame": await async_outcome(
                lambda: client.frame(pd.DataFrame({"price": [1.0], "qty": [4]}))
            ),
            "upper_file": await async_outcome(lambda: client.upper_file(files["note"])),
            "tokens": await async_outcome(lambda: client.tokens("x y")),
            "events": await async_outcome(lambda: client.events(2)),
            "fail_missing": await async_outcome(lambda: client.fail("missing")),
        }
        task: AsyncTask
        try:
            task = await client.slow_double.submit(21)
            report["task_submit"] = {"value": "AsyncTask"}
        except Exception as exc:
            report["task_submit"] = failure(exc)
            # With a path prefix BentoML's submit replaces the URL's path instead of joining
            # the route onto it, so it misses the prefix; submit by hand, poll with the client.
            endpoint = client.endpoints["slow_double"]
            async with httpx.AsyncClient() as http:
                response = await http.post(f"{url}{endpoint.route}/submit", json={"x": 21})
            response.raise_for_status()
            task = AsyncTask(response.json()["task_id"], endpoint, client)
        report["task_id"] = task.id
        report["task_status"] = describe(await wait_done(task))
        report["task_get"] = await async_outcome(task.get)
        report["task_cancel_finished"] = await async_outcome(task.cancel)
        retried = await task.retry()
        report["task_retry_new_id"] = retried.id != task.id
        report["task_retry_status"] = describe(await wait_done(retried))
        report["task_retry_get"] = await async_outcome(retried.get)
        report["task_unknown"] = await async_outcome(
            AsyncTask("0" * 32, client.endpoints["slow_double"], client).get_status
        )
        return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("report", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        files = inputs(Path(folder))
        report: dict[str, Any] = {"bentoml_version": bentoml.__version__}
        async_report = asyncio.run(async_calls(args.url, files))
        report["async"] = async_report
        with bentoml.SyncHTTPClient(args.url) as client:
            report["sync"] = sync_calls(client, files)
            report["sync_task"] = sync_task(client, async_report["task_id"])
    args.report.write_text(json.dumps(report, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
