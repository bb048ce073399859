"""`nbserve ARGS...` with the `bentoml` modules aliased to nbserve's, so that a BentoML service
file (`import bentoml`, `from bentoml.exceptions import ...`, `from bentoml.validators import
...`) runs unchanged: `python nbserve_as_bentoml.py serve echo_service.py:Echo --port 0`.

Used by tests/integration/compat_servers.py; the aliasing stays inside this process.
"""

from __future__ import annotations

import sys

import nbserve
import nbserve.exceptions
import nbserve.images
import nbserve.models
import nbserve.validators
from nbserve._cli.main import main

sys.modules["bentoml"] = nbserve
sys.modules["bentoml.exceptions"] = nbserve.exceptions
sys.modules["bentoml.images"] = nbserve.images
sys.modules["bentoml.models"] = nbserve.models
sys.modules["bentoml.validators"] = nbserve.validators

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
