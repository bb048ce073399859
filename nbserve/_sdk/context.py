"""`Context`: what an API sees of the HTTP request and can set on the response.

An API receives it by declaring a parameter named `ctx` or `context`. The object is plain
data, not a Tornado handler, so it can cross into a worker process and back: the runtime
copies the request in and applies `ctx.response` to the reply afterwards.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Literal

__all__ = ["Context", "Cookie", "Headers", "RequestInfo", "ResponseContext"]


class Headers(MutableMapping[str, str]):
    """Response headers as BentoML's `ctx.response.headers` (starlette's `MutableHeaders`) has them.

    Names are case-insensitive and a name may repeat (`append`), which a plain dict cannot say:
    `headers["X"] = v` replaces every `X`, `append("X", v)` adds one more, `getlist("X")`
    reads them all, and `items()` yields every pair in the order they were set.
    """

    def __init__(self, initial: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: list[tuple[str, str]] = []
        pairs = initial.items() if isinstance(initial, Mapping) else initial
        for name, value in pairs:
            self.append(name, value)

    @staticmethod
    def _check(name: object, value: object) -> tuple[str, str]:
        if not isinstance(name, str) or not isinstance(value, str):
            msg = f"response header {name!r}: {value!r} must be a str name and a str value, e.g. headers['X-Model'] = str(version)"
            raise TypeError(msg)
        if any(c in name + value for c in "\r\n"):
            msg = f"response header {name!r} contains a line break; send one header per line"
            raise ValueError(msg)
        return name, value

    def append(self, name: str, value: str) -> None:
        """Add a value, keeping the ones already set under that name."""
        self._pairs.append(self._check(name, value))

    def getlist(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._pairs if n.lower() == key]

    def __getitem__(self, name: str) -> str:
        values = self.getlist(name)
        if not values:
            raise KeyError(name)
        return values[0]

    def __setitem__(self, name: str, value: str) -> None:
        self._check(name, value)
        key = name.lower()
        self._pairs = [(n, v) for n, v in self._pairs if n.lower() != key]
        self._pairs.append((name, value))

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        kept = [(n, v) for n, v in self._pairs if n.lower() != key]
        if len(kept) == len(self._pairs):
            raise KeyError(name)
        self._pairs = kept

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, str] = {}
        for n, _ in self._pairs:
            seen.setdefault(n.lower(), n)
        return iter(seen.values())

    def __len__(self) -> int:
        return len({n.lower() for n, _ in self._pairs})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self._pairs)

    def multi_items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair, repeats included, in the order they were set."""
        return list(self._pairs)

    def update(self, other: Any = (), /, **kwargs: str) -> None:
        """Replace the names `other` sets (all their values, when `other` is `Headers`)."""
        if isinstance(other, Headers):
            names = {n.lower() for n, _ in other._pairs}
            self._pairs = [(n, v) for n, v in self._pairs if n.lower() not in names]
            self._pairs.extend(other._pairs)
        else:
            super().update(other, **kwargs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted((n.lower(), v) for n, v in self._pairs) == sorted(
                (n.lower(), v) for n, v in other._pairs
            )
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


@dataclass
class RequestInfo:
    """The incoming request as an API sees it (`ctx.request`)."""

    method: str = "POST"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    """Header names lower-cased; `metadata` is the BentoML alias."""
    query: dict[str, list[str]] = field(default_factory=dict)
    client: str | None = None

    @property
    def metadata(self) -> dict[str, str]:
        return self.headers

    @property
    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        jar.load(self.headers.get("cookie", ""))
        return {k: m.value for k, m in jar.items()}

    @property
    def query_params(self) -> dict[str, str]:
        """Starlette-style single-valued view of the query string."""
        return {k: v[-1] for k, v in self.query.items() if v}


@dataclass
class Cookie:
    key: str
    value: str
    max_age: int | None = None
    expires: int | None = None
    path: str = "/"
    domain: str | None = None
    secure: bool = False
    httponly: bool = False
    samesite: Literal["lax", "strict", "none"] = "lax"


@dataclass
class ResponseContext:
    """What the API sets on its reply (`ctx.response`)."""

    status_code: int = 200
    headers: Headers = field(default_factory=Headers)
    cookies: list[Cookie] = field(default_factory=list)

    def __setattr__(self, name: str, value: Any) -> None:
        # `ctx.response.headers = {...}` (BentoML allows assigning a mapping) stays a Headers.
        if name in ("headers", "metadata") and not isinstance(value, Headers):
            value = Headers(value)
        super().__setattr__("headers" if name == "metadata" else name, value)

    @property
    def metadata(self) -> Headers:
        return self.headers

    def set_cookie(
        self,
        key: str,
        value: str = "",
        max_age: int | None = None,
        expires: int | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] = "lax",
    ) -> None:
        self.cookies.append(
            Cookie(key, value, max_age, expires, path, domain, secure, httponly, samesite)
        )


@dataclass
class Context:
    """Per-request context: `request`, `response`, `state` (per process) and `temp_dir`."""

    request: RequestInfo = field(default_factory=RequestInfo)
    response: ResponseContext = field(default_factory=ResponseContext)
    state: dict[str, Any] = field(default_factory=dict)
    temp_dir: Path = field(default_factory=Path)
    request_id: str = ""


# The context of the request being served, for code that was not handed `ctx` (helpers).
current_context: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "nbserve_context", default=None
)
