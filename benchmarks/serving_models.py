"""The two benchmark workloads and the servers under test (imported by serving.py, and by the
BentoML service file from the BentoML virtual environment, so: numpy only at module level).

- `mlp`: an int8-quantised MLP, 64 float32 in → 3 hidden layers of 512 (ReLU) → 10 out. The
  weights are dequantised on every call, as CPU inference of a quantised model does, which is
  the model's fixed cost per call (about 0.4 ms at batch 1 on the project's 2-core machine);
  each row then costs a few µs more. Fixed cost plus a small cost per row is the shape that
  makes batching pay off.
- `fixed`: a call costs 5 ms whatever its batch size (`time.sleep`): an accelerator-bound model.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

import numpy as np

__all__ = ["BODY", "fixed", "mlp"]

_rng = np.random.default_rng(0)
_DIMS = (64, 512, 512, 512, 10)
_LAYERS = [
    (_rng.integers(-127, 128, (a, b), dtype=np.int8), np.float32(1.0 / (127 * np.sqrt(a))))
    for a, b in itertools.pairwise(_DIMS)
]
ROW = [round(float(v), 4) for v in _rng.standard_normal(64)]
BODY = {"x": [ROW]}
"""One request: a batch of one row."""


def mlp(x: np.ndarray) -> np.ndarray:
    """(n, 64) float32 → (n, 10) float32 logits."""
    h = np.asarray(x, dtype=np.float32)
    last = len(_LAYERS) - 1
    for i, (q, scale) in enumerate(_LAYERS):
        w = q.astype(np.float32)
        w *= scale
        h = h @ w
        if i < last:
            np.maximum(h, 0, out=h)
    return h


def fixed(x: np.ndarray) -> np.ndarray:
    """5 ms per call whatever the batch; returns the first feature of each row."""
    time.sleep(0.005)
    return np.asarray(x, dtype=np.float32)[:, :1]


MODELS = {"mlp": mlp, "fixed": fixed}


# --- servers (imported only in the server processes that need them) -----------------------------
def tornado_app(workload: str) -> Any:
    """A plain Tornado application: the floor of HTTP cost for the same work."""
    import orjson
    import tornado.web

    model = MODELS[workload]

    class Predict(tornado.web.RequestHandler):
        def post(self) -> None:
            x = np.asarray(orjson.loads(self.request.body)["x"], dtype=np.float32)
            self.set_header("Content-Type", "application/json")
            self.write(orjson.dumps(model(x), option=orjson.OPT_SERIALIZE_NUMPY))

    return tornado.web.Application([("/predict", Predict)])


def nbserve_service(workload: str) -> Any:
    """The same model as an nbserve service: `/predict` unbatched, `/predict_batched` batched."""
    return {"mlp": MLPService, "fixed": FixedService}[workload]


def define_services(sdk: Any, **options: Any) -> tuple[Any, Any]:
    """`(MLPService, FixedService)` made with `sdk`, nbserve or bentoml: their decorators take the
    same arguments, so both servers serve the very same classes. `options` go to `@sdk.service`.
    """
    return _service(sdk, "MLPService", mlp, options), _service(sdk, "FixedService", fixed, options)


def _service(sdk: Any, name: str, model: Any, options: dict[str, Any]) -> Any:
    class Service:
        @sdk.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            return model(x)

        @sdk.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
        def predict_batched(self, x: np.ndarray) -> np.ndarray:
            return model(x)

    # Assigned at module level under this name: worker processes import the class by it.
    Service.__name__ = Service.__qualname__ = name
    return sdk.service(traffic={"timeout": 60}, **options)(Service)


with contextlib.suppress(ImportError):  # the BentoML environment has no nbserve
    import nbserve

    MLPService, FixedService = define_services(nbserve)
