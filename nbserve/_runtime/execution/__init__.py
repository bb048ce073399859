"""The execution layer: where and how a user's method runs.

`invoke` is the one path that calls user code, used by the inline executor (`executor`) and by
worker processes (`workers/`); `batching/` merges requests, `traffic` enforces
`max_concurrency` and `timeout`, `placement` and `cpus` size workers, `task_store` runs `@task`
APIs, `composition` and `command` run depended and `cmd=` services.

Nothing is imported here: worker processes import `nbserve._runtime.execution.workers` and must
not pay for Tornado and Prometheus (~0.3 s per worker start).
"""
