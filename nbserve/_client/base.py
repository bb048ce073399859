"""What the sync and async clients share: URL handling, headers, generated methods, messages.

Discovery follows BentoML's client (reference §3.1) with three fixes:
- readiness polls `{base}/readyz` with a sleep that backs off from 20 ms to 250 ms instead of a
  busy loop, and its error says what the server last answered;
- the base URL's path is a prefix: `/readyz` and `/schema.json` are fetched under it, and a
  route that already starts with the prefix (BentoML puts `path_prefix` into `route`) is not
  prefixed twice; BentoML serves `/schema.json` only at the root, so the root is tried on 404;
- `__getattr__` names the available APIs instead of a bare AttributeError.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson

from nbserve._client.encoding import RequestBody
from nbserve._client.endpoint import Endpoint, parse_schema, signature_for
from nbserve._version import __version__
from nbserve.exceptions import NbserveError, NotFound, ServiceUnavailable

__all__ = ["ClientBase", "ReadinessPoll", "answer", "backoff"]

TASK_METHODS = ("submit", "get", "get_status", "cancel", "retry")


def backoff(first: float = 0.02, factor: float = 1.5, cap: float = 0.25) -> Iterator[float]:
    """Sleep lengths between readiness polls: 20 ms, 30 ms, 45 ms, … up to 250 ms."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)


class ReadinessPoll:
    """The bookkeeping of one `wait_until_server_ready`; the client only does the requests.

    ```python
    poll = ReadinessPoll(self, timeout)
    while True:
        try:
            response = get("/readyz", timeout=poll.request_timeout())
        except httpx.TransportError as exc:
            poll.failed(exc)
        else:
            if poll.answered(response):
                return
        sleep(poll.pause())  # raises ServiceUnavailable once the deadline has passed
    ```
    """

    def __init__(self, client: ClientBase, timeout: float | None) -> None:
        self._client = client
        self._wait = client.server_ready_timeout if timeout is None else timeout
        self._deadline = time.monotonic() + self._wait
        self._delays = backoff()
        self._request_timeout = 0.0
        self.last = "none (no request finished)"

    def request_timeout(self) -> float:
        """The next poll's timeout: the client's, clipped to what is left of the wait."""
        remaining = self._deadline - time.monotonic()
        self._request_timeout = max(min(remaining, self._client.timeout or remaining), 0.001)
        return self._request_timeout

    def answered(self, response: httpx.Response) -> bool:
        """Whether the server is ready; if not, remember what it said."""
        if response.status_code == 200:
            return True
        self.last = answer(response)
        return False

    def failed(self, exc: httpx.TransportError) -> None:
        timeout = self._client.timeout
        clipped = timeout is None or self._request_timeout < timeout
        if isinstance(exc, httpx.TimeoutException) and clipped and self.last.startswith("HTTP"):
            return  # cut short by our own deadline: the server's real answer says more
        self.last = f"{type(exc).__name__}: {exc or 'no detail'}"

    def pause(self) -> float:
        """How long to sleep before the next poll; `ServiceUnavailable` once time is up."""
        delay = next(self._delays)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            msg = f"Server at {self._client.url} is not ready after {self._wait:g} s: last answer {self.last}. Check that it is running at this URL (with its path prefix, if any), or pass server_ready_timeout=<seconds> to wait longer (0 skips the check)"
            raise ServiceUnavailable(msg)
        return min(delay, remaining)


def answer(response: httpx.Response) -> str:
    """A short description of a response for error messages: status and the body's start."""
    text = response.text.strip()
    return f"HTTP {response.status_code} {text[:120]!r}" if text else f"HTTP {response.status_code}"


class ClientBase:
    """Configuration and discovered APIs; subclasses add the I/O."""

    url: str
    timeout: float | None
    server_ready_timeout: float
    endpoints: dict[str, Endpoint]

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float | None = 30,
        server_ready_timeout: float | None = None,
    ) -> None:
        msg = f"url={url!r} is not an http(s) URL; pass one like 'http://127.0.0.1:3000' (with a path prefix if the server has one: 'http://host:3000/v1')"
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError(msg) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(msg)
        self.url = str(parsed.copy_with(query=None, fragment=None)).rstrip("/")
        self._prefix = parsed.path.rstrip("/")
        self._origin = str(parsed.copy_with(path="/", query=None, fragment=None)).rstrip("/")
        self.timeout = timeout
        if server_ready_timeout is None:
            server_ready_timeout = timeout if timeout is not None else 30.0
        self.server_ready_timeout = server_ready_timeout
        self._headers = {"User-Agent": f"nbserve-client/{__version__}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self.endpoints = {}

    def _httpx_options(self) -> dict[str, Any]:
        """The `httpx.Client` / `httpx.AsyncClient` arguments both clients pass."""
        return {
            "base_url": self.url,
            "headers": self._headers,
            "timeout": self.timeout,
            "follow_redirects": True,
        }

    def __repr__(self) -> str:
        apis = ", ".join(self.endpoints) or "not set up"
        return f"{type(self).__name__}({self.url!r}, apis: {apis})"

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes that do not exist; declared `-> Any` so that type
        # checkers accept the generated API methods (`client.predict(...)`).
        if name.startswith("_"):
            raise AttributeError(name)
        endpoints = self.__dict__.get("endpoints") or {}
        msg = f"{type(self).__name__} for {self.__dict__.get('url')} has no API named {name!r}; its APIs are {', '.join(endpoints) or 'none'}"
        raise AttributeError(msg)

    def _endpoint(self, name: str) -> Endpoint:
        """The `Endpoint` for API `name`; `NotFound` lists the ones the server has."""
        try:
            return self.endpoints[name]
        except KeyError:
            msg = f"The service at {self.url} has no API named {name!r}; its APIs are {', '.join(self.endpoints) or 'none'}"
            raise NotFound(msg) from None

    def _path(self, route: str) -> str:
        """The request path for a route, relative to the base URL (httpx adds the prefix)."""
        prefix = self._prefix
        if prefix and (route == prefix or route.startswith(prefix + "/")):
            route = route[len(prefix) :] or "/"
        return route

    def _schema_urls(self) -> list[str]:
        urls = ["/schema.json"]
        if self._prefix:
            urls.append(self._origin + "/schema.json")
        return urls

    def _build_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        method: str,
        route: str,
        body: RequestBody | None,
        headers: dict[str, str] | None,
        params: dict[str, str] | None,
    ) -> httpx.Request:
        body = body or RequestBody()
        return client.build_request(
            method,
            self._path(route),
            content=body.content,
            data=body.data,
            files=body.files,
            headers={**body.headers, **(headers or {})},
            params=params,
        )

    def _load_schema(self, response: httpx.Response) -> None:
        where = str(response.request.url)
        if response.is_error:
            msg = f"Failed to fetch the service schema from {where}: {answer(response)}; is {self.url} an nbserve or BentoML 1.4 server?"
            raise NbserveError(msg, error_code=response.status_code)
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            msg = f"The service schema at {where} is not JSON: {response.text[:200]!r}"
            raise NbserveError(msg) from None
        self.endpoints = parse_schema(document, where)
        self._install_methods()

    def _install_methods(self) -> None:
        taken = set(dir(type(self))) | set(vars(self))
        for name, endpoint in self.endpoints.items():
            if name == "__call__":
                continue  # served by the class's own __call__
            attr = f"api_{name}" if name in taken else name
            setattr(self, attr, self._make_method(endpoint))

    def _make_method(self, endpoint: Endpoint) -> Callable[..., Any]:
        call = self.call

        def method(*args: Any, **kwargs: Any) -> Any:
            return call(endpoint.name, *args, **kwargs)

        method.__name__ = endpoint.name
        method.__qualname__ = f"{type(self).__name__}.{endpoint.name}"
        method.__doc__ = endpoint.doc
        method.__signature__ = signature_for(endpoint)  # type: ignore[attr-defined]
        if endpoint.is_task:
            for task_method in TASK_METHODS:
                impl = getattr(self, f"_task_{task_method}")
                setattr(method, task_method, functools.partial(impl, endpoint))
        return method

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if "__call__" not in self.endpoints:
            msg = f"The service at {self.url} has no API named '__call__', so its client is not callable; call one of its APIs: {', '.join(self.endpoints) or 'none'}"
            raise TypeError(msg)
        return self.call("__call__", *args, **kwargs)
