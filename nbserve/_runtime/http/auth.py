"""Bearer-token authorization for `serve(..., token=...)`.

With a token, every route but the probes (`/livez`, `/healthz`, `/readyz`) needs
`Authorization: Bearer <token>`; BentoML's client sends exactly that header when given a token.
"""

from __future__ import annotations

import hmac

__all__ = ["authorized"]


def authorized(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header value carries `token` (compared in constant time)."""
    if header is None:
        return False
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())
