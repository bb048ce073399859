"""The benchmark's models as a BentoML 1.4 service (run by serving.py from .venv-bentoml)."""

from __future__ import annotations

import bentoml
import numpy as np
from serving_models import fixed, mlp


@bentoml.service(workers=1, traffic={"timeout": 60})
class MLPService:
    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return mlp(x)

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict_batched(self, x: np.ndarray) -> np.ndarray:
        return mlp(x)


@bentoml.service(workers=1, traffic={"timeout": 60})
class FixedService:
    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return fixed(x)

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict_batched(self, x: np.ndarray) -> np.ndarray:
        return fixed(x)
