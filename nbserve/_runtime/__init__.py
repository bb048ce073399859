"""How a service runs: the HTTP server, its deployments, executors and traffic control.

Importing this package imports Tornado; `nbserve` reaches it only inside functions (`serve`),
so `import nbserve` stays light. Layout: `server` (Server, serve), `handle` (ServiceHandle),
`deployment` (one started version of a service), `executor` (where the user's code runs),
`routing` (request → handler), `handlers` (the API route), `system` (probes, metrics, schema,
docs), `traffic` (429/504, per-route stats), `errors` (JSON errors, 404/413), `logs`
(per-service log buffer, print capture), `auth` (bearer token).
"""

from nbserve._runtime.server import Server, ServiceHandle, serve

__all__ = ["Server", "ServiceHandle", "serve"]
