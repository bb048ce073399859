"""`AsyncHTTPClient`: the asyncio twin of `SyncHTTPClient`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from nbserve._client.base import ClientBase, ReadinessPoll
from nbserve._client.decoding import decode_body, error_from_response
from nbserve._client.encoding import RequestBody, build_body
from nbserve._client.endpoint import Endpoint
from nbserve._client.streaming import StreamDecoder
from nbserve._client.tasks import AsyncTask

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncHTTPClient"]


class AsyncHTTPClient(ClientBase):
    """An asyncio client whose methods are the service's APIs, read from `/schema.json`.

    ```python
    async with AsyncHTTPClient("http://127.0.0.1:3000") as client:
        await client.shout(text="hi", times=2)
        async for token in client.generate(prompt="…"):   # no await for streams
            print(token, end="")

    client = await AsyncHTTPClient.from_url("http://127.0.0.1:3000")   # or set up explicitly
    ```

    The constructor does no I/O; `async with`, `from_url` or `await client.setup()` waits for
    `/readyz` and fetches the schema. Before that the API methods do not exist and `call` raises
    a `RuntimeError` that says so. Conversions and errors are those of `SyncHTTPClient`.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float | None = 30,
        server_ready_timeout: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            url, token=token, timeout=timeout, server_ready_timeout=server_ready_timeout
        )
        self._client = httpx.AsyncClient(**self._httpx_options(), transport=transport)
        self._set_up = False

    @classmethod
    async def from_url(
        cls,
        url: str,
        *,
        token: str | None = None,
        timeout: float | None = 30,
        server_ready_timeout: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Self:
        """A client that is set up already (readiness checked, schema fetched)."""
        client = cls(
            url,
            token=token,
            timeout=timeout,
            server_ready_timeout=server_ready_timeout,
            transport=transport,
        )
        try:
            return await client.setup()
        except BaseException:
            await client.close()
            raise

    async def setup(self) -> Self:
        """Wait for `/readyz` (unless `server_ready_timeout=0`), then fetch the schema."""
        if not self._set_up:
            if self.server_ready_timeout > 0:
                await self.wait_until_server_ready()
            response = None
            for url in self._schema_urls():
                response = await self._client.get(url)
                if response.status_code != 404:
                    break
            assert response is not None
            self._load_schema(response)
            self._set_up = True
        return self

    async def __aenter__(self) -> Self:
        try:
            return await self.setup()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool. Downloaded files stay until the process exits."""
        await self._client.aclose()

    aclose = close

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and not self.__dict__.get("_set_up", True):
            raise AttributeError(self._not_set_up(f"has no attribute {name!r} yet"))
        return super().__getattr__(name)

    def _not_set_up(self, what: str) -> str:
        return f"AsyncHTTPClient({self.url!r}) {what}: its APIs are read from the server first; use `async with AsyncHTTPClient(url) as client:`, `client = await AsyncHTTPClient.from_url(url)` or `await client.setup()`"

    async def is_ready(self, timeout: float | None = None) -> bool:
        """Whether `GET {url}/readyz` answers 200 now."""
        try:
            response = await self._client.get("/readyz", timeout=timeout or self.timeout)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def wait_until_server_ready(self, timeout: float | None = None) -> None:
        """Poll `/readyz` until it answers 200, sleeping 20 ms backing off to 250 ms.

        Raises `ServiceUnavailable` after `timeout` seconds (default `server_ready_timeout`).
        """
        poll = ReadinessPoll(self, timeout)
        while True:
            try:
                response = await self._client.get("/readyz", timeout=poll.request_timeout())
            except httpx.TransportError as exc:
                poll.failed(exc)
            else:
                if poll.answered(response):
                    return
            await asyncio.sleep(poll.pause())

    def _endpoint(self, name: str) -> Endpoint:
        if not self._set_up:
            raise RuntimeError(self._not_set_up(f"cannot call {name!r} yet"))
        return super()._endpoint(name)

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call API `name`: a coroutine to await, or an async iterator for a streaming API."""
        endpoint = self._endpoint(name)
        body = build_body(endpoint, args, kwargs)
        if endpoint.is_stream:
            return self._stream(endpoint, body)
        return self._call(endpoint, body)

    async def _call(self, endpoint: Endpoint, body: RequestBody) -> Any:
        response = await self._send("POST", endpoint.route, body)
        return decode_body(endpoint, response.content, response.headers)

    async def _send(
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
        response = await self._client.send(request, stream=stream)
        if response.is_error:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            raise error_from_response(response.status_code, content, response.headers)
        return response

    async def _stream(self, endpoint: Endpoint, body: RequestBody) -> AsyncIterator[Any]:
        headers = {"Accept": "text/event-stream"} if endpoint.sse else None
        response = await self._send("POST", endpoint.route, body, stream=True, headers=headers)
        try:
            decoder = StreamDecoder(endpoint, response.headers)
            async for chunk in response.aiter_bytes():
                for item in decoder.feed(chunk):
                    yield item
            for item in decoder.finish():
                yield item
        finally:
            await response.aclose()

    # Task APIs (`@task`): `await client.<api>.submit(...)` etc.
    async def _task_submit(self, endpoint: Endpoint, /, *args: Any, **kwargs: Any) -> AsyncTask:
        body = build_body(endpoint, args, kwargs)
        response = await self._send("POST", f"{endpoint.route}/submit", body)
        return AsyncTask(str(response.json()["task_id"]), endpoint, self)

    async def _task_get_status(self, endpoint: Endpoint, /, task_id: str) -> str:
        response = await self._send("GET", f"{endpoint.route}/status", params={"task_id": task_id})
        return str(response.json()["status"])

    async def _task_get(self, endpoint: Endpoint, /, task_id: str) -> Any:
        response = await self._send("GET", f"{endpoint.route}/get", params={"task_id": task_id})
        return decode_body(endpoint, response.content, response.headers)

    async def _task_cancel(self, endpoint: Endpoint, /, task_id: str) -> None:
        await self._send("PUT", f"{endpoint.route}/cancel", params={"task_id": task_id})

    async def _task_retry(self, endpoint: Endpoint, /, task_id: str) -> AsyncTask:
        response = await self._send("POST", f"{endpoint.route}/retry", params={"task_id": task_id})
        return AsyncTask(str(response.json()["task_id"]), endpoint, self)
