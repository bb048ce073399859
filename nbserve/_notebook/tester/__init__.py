"""Try a service from the notebook: the request tester, the live dashboard and load tests.

```python
nbserve.tester("Sentiment")            # also handle.tester(), and under every %%serve
nbserve.services()["Sentiment"].dashboard()
df = nbserve.load_test("Sentiment", route="/classify", concurrency=16, duration=10)
```
`widget.py` is the anywidget (its front end in `static/`), `bridge.py` the kernel-side HTTP
transport, `stats.py` the live numbers, `loadtest.py` / `loadgen.py` the load test,
`examples.py` the example bodies, `target.py` what they all point at, `plots.py` the
matplotlib plots, `magic.py` the tester under `%%serve` and `%serve loadtest`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from nbserve._notebook.tester.widget import RequestTester

__all__ = ["dashboard", "load_test", "tester"]


def _widget_class() -> type[RequestTester]:
    try:
        from nbserve._notebook.tester.widget import RequestTester
    except ModuleNotFoundError as exc:  # anywidget / ipywidgets: the notebook extra
        msg = f"the request tester needs {exc.name!r}: pip install 'jupyter-nbserve[notebook]'"
        raise ModuleNotFoundError(msg, name=exc.name) from None
    return RequestTester


def tester(service: Any) -> RequestTester:
    """A request tester for `service` (a name served with `%%serve`, `nbserve.services()[NAME]`
    or the handle `nbserve.serve()` returned): one tab per API, answers rendered by type."""
    return _widget_class()(service)


def dashboard(service: Any) -> RequestTester:
    """A live dashboard of `service`: requests, error rate, p50/p95/p99 per route, batch sizes,
    workers. It updates while shown and costs nothing while not."""
    return _widget_class()(service, view="dashboard")


def load_test(service: Any, route: str | None = None, **options: Any) -> pd.DataFrame:
    """Load-test one route of `service` over real HTTP from a separate process; see
    `nbserve._notebook.tester.loadtest.load_test` for the options."""
    from nbserve._notebook.tester import loadtest

    return loadtest.load_test(service, route, **options)
