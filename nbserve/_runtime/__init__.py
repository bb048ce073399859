"""How a service runs: the HTTP server, its deployments, executors and traffic control.

The server modules import Tornado; `nbserve` reaches them only inside functions (`serve`),
so `import nbserve` stays light. Layout: `server` (Server, serve), `handle` (ServiceHandle),
`deployment` (one started version of a service), `executor` (where the user's code runs),
`routing` (request → handler), `handlers` (the API route), `system` (probes, metrics, schema,
docs), `traffic` (429/504, per-route stats), `errors` (JSON errors, 404/413), `logs`
(per-service log buffer, print capture), `auth` (bearer token).
"""


# Nothing is imported here: worker processes import `nbserve._runtime.workers` and must not pay
# for Tornado and Prometheus (~0.3 s per worker start). Import from `nbserve._runtime.server`.
