"""HTTP clients for nbserve and BentoML 1.4 services, driven by the server's `/schema.json`.

`SyncHTTPClient` and `AsyncHTTPClient` speak BentoML's client protocol (reference §3): they wait
for `{url}/readyz`, read `{url}/schema.json` and grow one method per API. Importing this package
imports httpx, so `nbserve` imports it lazily.

Layout: `endpoint` (schema → `Endpoint`, argument binding), `encoding` (request bodies),
`decoding` (responses and errors), `streaming` (SSE and raw-chunk items), `base` (what both
clients share), `sync` / `aio` (the clients), `tasks` (background task handles).
"""

from nbserve._client.aio import AsyncHTTPClient
from nbserve._client.sync import SyncHTTPClient
from nbserve._client.tasks import AsyncTask, Task

__all__ = ["AsyncHTTPClient", "AsyncTask", "SyncHTTPClient", "Task"]
