"""`SyncHTTPClient`: a blocking client for an nbserve or BentoML 1.4 service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from nbserve._client.base import ClientBase, ReadinessPoll
from nbserve._client.decoding import decode_body, error_from_response
from nbserve._client.encoding import RequestBody, build_body
from nbserve._client.endpoint import Endpoint
from nbserve._client.streaming import StreamDecoder
from nbserve._client.tasks import Task

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["SyncHTTPClient"]


class SyncHTTPClient(ClientBase):
    """A blocking client whose methods are the service's APIs, read from `/schema.json`.

    ```python
    with SyncHTTPClient("http://127.0.0.1:3000") as client:
        client.shout(text="hi", times=2)          # or client.call("shout", "hi", 2)
        for token in client.generate(prompt="…"):  # streaming APIs return an iterator
            print(token, end="")
    ```

    The constructor waits until `GET {url}/readyz` answers 200 (at most `server_ready_timeout`
    seconds, default `timeout`; 0 skips the wait), then fetches `{url}/schema.json`. Arguments
    and results are converted by the API's schema: numpy arrays, DataFrames, tensors, pydantic
    models and files (Path, bytes, file objects, PIL images) go in; numpy arrays, DataFrames,
    tensors, `Path`s and PIL images come out. HTTP errors raise `nbserve.exceptions` by status.

    `transport` replaces httpx's network transport (for example `httpx.MockTransport` in tests).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float | None = 30,
        server_ready_timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            url, token=token, timeout=timeout, server_ready_timeout=server_ready_timeout
        )
        self._client = httpx.Client(**self._httpx_options(), transport=transport)
        try:
            if self.server_ready_timeout > 0:
                self.wait_until_server_ready()
            self._fetch_schema()
        except BaseException:
            self._client.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool. Downloaded files stay until the process exits."""
        self._client.close()

    def is_ready(self, timeout: float | None = None) -> bool:
        """Whether `GET {url}/readyz` answers 200 now."""
        try:
            response = self._client.get("/readyz", timeout=timeout or self.timeout)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def wait_until_server_ready(self, timeout: float | None = None) -> None:
        """Poll `/readyz` until it answers 200, sleeping 20 ms backing off to 250 ms.

        Raises `ServiceUnavailable` after `timeout` seconds (default `server_ready_timeout`).
        """
        poll = ReadinessPoll(self, timeout)
        while True:
            try:
                response = self._client.get("/readyz", timeout=poll.request_timeout())
            except httpx.TransportError as exc:
                poll.failed(exc)
            else:
                if poll.answered(response):
                    return
            time.sleep(poll.pause())

    def _fetch_schema(self) -> None:
        for url in self._schema_urls():
            response = self._client.get(url)
            if response.status_code != 404:
                break
        self._load_schema(response)

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call API `name` with its arguments; a streaming API returns an iterator of items."""
        endpoint = self._endpoint(name)
        body = build_body(endpoint, args, kwargs)
        if endpoint.is_stream:
            return self._stream(endpoint, body)
        response = self._send("POST", endpoint.route, body)
        return decode_body(endpoint, response.content, response.headers)

    def _send(
        self,
        method: str,
        route: str,
        body: RequestBody | None = None,
        *,
        stream: bool = False,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        request = self._build_request(self._client, method, route, body, headers, params)
        response = self._client.send(request, stream=stream)
        if response.is_error:
            try:
                content = response.read()
            finally:
                response.close()
            raise error_from_response(response.status_code, content, response.headers)
        return response

    def _stream(self, endpoint: Endpoint, body: RequestBody) -> Iterator[Any]:
        headers = {"Accept": "text/event-stream"} if endpoint.sse else None
        response = self._send("POST", endpoint.route, body, stream=True, headers=headers)
        try:
            decoder = StreamDecoder(endpoint, response.headers)
            for chunk in response.iter_bytes():
                yield from decoder.feed(chunk)
            yield from decoder.finish()
        finally:
            response.close()

    # Task APIs (`@task`): `client.<api>.submit(...)` etc., as BentoML's client offers them.
    def _task_submit(self, endpoint: Endpoint, /, *args: Any, **kwargs: Any) -> Task:
        response = self._send(
            "POST", f"{endpoint.route}/submit", build_body(endpoint, args, kwargs)
        )
        return Task(str(response.json()["task_id"]), endpoint, self)

    def _task_get_status(self, endpoint: Endpoint, /, task_id: str) -> str:
        response = self._send("GET", f"{endpoint.route}/status", params={"task_id": task_id})
        return str(response.json()["status"])

    def _task_get(self, endpoint: Endpoint, /, task_id: str) -> Any:
        response = self._send("GET", f"{endpoint.route}/get", params={"task_id": task_id})
        return decode_body(endpoint, response.content, response.headers)

    def _task_cancel(self, endpoint: Endpoint, /, task_id: str) -> None:
        self._send("PUT", f"{endpoint.route}/cancel", params={"task_id": task_id})

    def _task_retry(self, endpoint: Endpoint, /, task_id: str) -> Task:
        response = self._send("POST", f"{endpoint.route}/retry", params={"task_id": task_id})
        return Task(str(response.json()["task_id"]), endpoint, self)
