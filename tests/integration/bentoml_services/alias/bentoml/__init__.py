"""`import bentoml` as nbserve, for the worker processes of services served by
`nbserve_as_bentoml.py` (they import the service file themselves, in a fresh interpreter, so
that script's in-process aliasing does not reach them). compat_servers.start_nbserve puts this
folder on the PYTHONPATH of the nbserve server; its workers inherit it."""

import sys

import nbserve
import nbserve.exceptions
import nbserve.images
import nbserve.models
import nbserve.validators

sys.modules["bentoml"] = nbserve
sys.modules["bentoml.exceptions"] = nbserve.exceptions
sys.modules["bentoml.images"] = nbserve.images
sys.modules["bentoml.models"] = nbserve.models
sys.modules["bentoml.validators"] = nbserve.validators
