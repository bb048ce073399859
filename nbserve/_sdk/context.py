"""`Context`: what an API sees of the HTTP request and can set on the response.

An API receives it by declaring a parameter named `ctx` or `context`. The object is plain
data, not a Tornado handler, so it can cross into a worker process and back: the runtime
copies the request in and applies `ctx.response` to the reply afterwards.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Literal

__all__ = ["Context", "Cookie", "RequestInfo", "ResponseContext"]


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
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[Cookie] = field(default_factory=list)

    @property
    def metadata(self) -> dict[str, str]:
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
