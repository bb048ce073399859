"""Handles for submitted background tasks (`@task` APIs, reference §2.8).

`client.<api>.submit(...)` returns a `Task` (`AsyncTask` from the async client); its status is
one of `pending`, `in_progress`, `completed`, `failed`, `canceled`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbserve._client.aio import AsyncHTTPClient
    from nbserve._client.endpoint import Endpoint
    from nbserve._client.sync import SyncHTTPClient

__all__ = ["AsyncTask", "Task"]


class Task:
    """A task submitted through `SyncHTTPClient`."""

    def __init__(self, id: str, endpoint: Endpoint, client: SyncHTTPClient) -> None:
        self.id = id
        self.endpoint = endpoint
        self._client = client

    def __repr__(self) -> str:
        return f"Task({self.endpoint.name!r}, id={self.id!r})"

    def get_status(self) -> str:
        """`pending`, `in_progress`, `completed`, `failed` or `canceled`."""
        return self._client._task_get_status(self.endpoint, self.id)

    def get(self) -> Any:
        """The result, decoded like a direct call's; `InvalidArgument` while it still runs."""
        return self._client._task_get(self.endpoint, self.id)

    def cancel(self) -> None:
        self._client._task_cancel(self.endpoint, self.id)

    def retry(self) -> Task:
        """Submit the same request again; returns the new task."""
        return self._client._task_retry(self.endpoint, self.id)


class AsyncTask:
    """A task submitted through `AsyncHTTPClient`; its methods are coroutines."""

    def __init__(self, id: str, endpoint: Endpoint, client: AsyncHTTPClient) -> None:
        self.id = id
        self.endpoint = endpoint
        self._client = client

    def __repr__(self) -> str:
        return f"AsyncTask({self.endpoint.name!r}, id={self.id!r})"

    async def get_status(self) -> str:
        """`pending`, `in_progress`, `completed`, `failed` or `canceled`."""
        return await self._client._task_get_status(self.endpoint, self.id)

    async def get(self) -> Any:
        """The result, decoded like a direct call's; `InvalidArgument` while it still runs."""
        return await self._client._task_get(self.endpoint, self.id)

    async def cancel(self) -> None:
        await self._client._task_cancel(self.endpoint, self.id)

    async def retry(self) -> AsyncTask:
        """Submit the same request again; returns the new task."""
        return await self._client._task_retry(self.endpoint, self.id)
