"""nbserve's errors, one tree, BentoML's names kept where BentoML users catch them.

```
NbserveError (alias BentoMLException)       error_code: the HTTP status a client sees
 ├── InvalidArgument (BadInput)              400: a request or argument is wrong
 ├── NotFound                                404
 ├── UnprocessableEntity                     422
 ├── UnsupportedMediaType                    415
 ├── TooManyRequests                         429: over traffic.max_concurrency
 ├── ServiceUnavailable                      503: no live worker, batch queue full
 ├── RequestTimeout                          504: over traffic.timeout
 ├── ServiceDefinitionError (also TypeError) a declaration is wrong, raised at decoration
 └── WorkerError                             a worker process failed
```
The message (`str(exc)`) is what the client sees for 4xx; for 5xx the server logs it and the
client gets a generic message and the request id.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadInput",
    "BentoMLException",
    "InvalidArgument",
    "NbserveError",
    "NotFound",
    "RequestTimeout",
    "ServiceDefinitionError",
    "ServiceUnavailable",
    "TooManyRequests",
    "UnprocessableEntity",
    "UnsupportedMediaType",
    "WorkerError",
]


class NbserveError(Exception):
    """Base of every nbserve error. `error_code` is the HTTP status it maps to."""

    error_code: int = 500

    def __init__(self, message: str = "", *, error_code: int | None = None, detail: Any = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        if error_code is not None:
            self.error_code = error_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, error_code={self.error_code})"


BentoMLException = NbserveError


class InvalidArgument(NbserveError):
    """A request body or argument is wrong; the message names the field and the fix."""

    error_code = 400


BadInput = InvalidArgument


class NotFound(NbserveError):
    error_code = 404


class UnprocessableEntity(NbserveError):
    error_code = 422


class UnsupportedMediaType(NbserveError):
    error_code = 415


class TooManyRequests(NbserveError):
    error_code = 429


class ServiceUnavailable(NbserveError):
    error_code = 503


class RequestTimeout(NbserveError):
    error_code = 504


class ServiceDefinitionError(NbserveError, TypeError):
    """A `@service` / `@api` declaration is wrong. Raised when the class is decorated."""


class WorkerError(NbserveError):
    """A worker process failed to start or died; the message gives the exit reason."""

    error_code = 503
