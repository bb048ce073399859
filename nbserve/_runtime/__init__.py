"""How a service runs: the HTTP server, its deployments, and where the user's code executes.

The server modules import Tornado; `nbserve` reaches them only inside functions (`serve`), so
`import nbserve` stays light. Layout:

- `server` (Server, the listening sockets and the hot swap), `handle` (ServiceHandle, `serve()`),
  `deployment` (one started version of a service: the seam between the two layers below),
  `logs` (per-service log buffer, print capture), `metrics` (Prometheus), `loops`, `sockets`;
- `http/`: the HTTP layer (Tornado's application and routing, the API, task, system and admin
  handlers, streams, uploads, connection hygiene, JSON errors, the bearer token, ASGI);
- `execution/`: where and how the user's method runs (one invocation path for the inline
  executor and worker processes, batching, traffic limits, placement, tasks, composition).
"""
