"""The benchmark's models as a BentoML 1.4 service (run by serving.py from .venv-bentoml)."""

from __future__ import annotations

import bentoml
from serving_models import define_services

MLPService, FixedService = define_services(bentoml, workers=1)
