"""Test helpers for services built with nbserve (public: nbserve's own tests use them too).

```python
from nbserve.testing import running_service

def test_shout():
    with running_service(Echo) as handle:          # 127.0.0.1, a free port, started
        assert handle.client().shout(text="hi") == "HI "
```
The server is real (Tornado on its own thread, real sockets), so a test exercises exactly what
a client would; it is stopped, and its port freed, when the block exits, even on failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbserve._runtime.server import ServiceHandle
    from nbserve._sdk.service import Service

__all__ = ["running_service"]


@contextlib.contextmanager
def running_service(
    service_or_cls: Service[Any] | type,
    *,
    ready_timeout: float = 30.0,
    stop_timeout: float = 10.0,
    **options: Any,
) -> Iterator[ServiceHandle]:
    """Serve a service on `127.0.0.1`, a free port, and yield its handle once it has started.

    `options` are `nbserve.serve()`'s (`token`, `max_body_size`, `workers`, ...). A service
    whose `__init__` or `on_startup` fails raises that error here.
    """
    from nbserve._runtime.handle import serve

    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", 0)
    handle = serve(service_or_cls, **options)
    try:
        handle.wait_ready(ready_timeout)
        yield handle
    finally:
        handle.stop(stop_timeout)
