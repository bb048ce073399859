"""Source capture: the %%serve cell plus the helpers, constants and imports it uses."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nbserve._bento.capture import CaptureError, capture
from nbserve._bento.names import free_names, imported_modules
from nbserve._bento.notebook_source import python_source, read_notebook

SERVICE = """\
%%serve --port 3000
import nbserve

@nbserve.service
class Scaler:
    @nbserve.api
    def scale(self, x: list[float]) -> list[float]:
        return [round(v, DIGITS) for v in scale(np.asarray(x)).tolist()]
"""

HISTORY = [
    "import numpy as np\nimport os.path\n%matplotlib inline\n!echo hi",
    "DIGITS = 3\nUNUSED = 1\nfrom math import sqrt as root",
    "def scale(x):\n    return x * 2  # first version",
    "def _norm(x):\n    return root(x) / LABELS[0]\n\nLABELS = (1.0, 2.0)\n\n@register\ndef scale(x):\n    '''the second version wins'''\n    return x * _norm(4.0)",
    "def register(f):\n    return f",
    SERVICE,
]


def test_free_names_know_scopes() -> None:
    source = "import a\nX = 1\ndef f(p, q=D):\n    loc = p + G\n    return [i for i in loc if i > H]\nclass K(B):\n    attr = C\n    def m(self):\n        return super().m() + K.attr + __name__\n"
    free, bound = free_names(source)
    assert free == {"D", "G", "H", "B", "C", "super"}
    assert bound == {"a", "X", "f", "K"}


def test_a_service_with_helpers_from_other_cells_becomes_one_module() -> None:
    text = capture([SERVICE], HISTORY, service="Scaler").text
    assert text == (
        "import numpy as np\n"
        "from math import sqrt as root\n\n\n"
        "DIGITS = 3\n"
        "LABELS = (1.0, 2.0)\n\n\n"
        "def _norm(x):\n    return root(x) / LABELS[0]\n\n\n"
        "def register(f):\n    return f\n\n\n"
        "@register\ndef scale(x):\n    '''the second version wins'''\n    return x * _norm(4.0)\n\n\n"
        + SERVICE.split("\n", 1)[1]
    )
    for left_out in ("%", "UNUSED", "os.path"):
        assert left_out not in text


def test_the_captured_module_runs_on_its_own_in_a_fresh_interpreter(tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text(capture([SERVICE], HISTORY).text)
    code = "import service; print(service.Scaler().scale([1.0, 2.0]))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[2.0, 4.0]"


def test_capture_is_deterministic() -> None:
    # Sets order by string hash, which differs between interpreters: compare across seeds.
    code = "import json, sys; from nbserve._bento.capture import capture; service, history = json.load(sys.stdin); print(capture([service], history).text, end='')"
    texts = {
        subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps([SERVICE, HISTORY]),
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert texts == {capture([SERVICE], HISTORY).text}


def test_ipython_translated_cells_read_like_raw_ones() -> None:
    translated = [
        "import numpy as np\nget_ipython().run_line_magic('matplotlib', 'inline')",
        "get_ipython().run_cell_magic('serve', '--port 3000', 'x = np.zeros(2)\\n')",
    ]
    assert capture(translated[1:], translated).text == "import numpy as np\n\n\nx = np.zeros(2)\n"


def test_uncapturable_globals_are_all_reported_with_the_fix() -> None:
    namespace = {"clf": object(), "conn": sqlite3.connect(":memory:"), "np": np}
    cells = ["import numpy as np", "clf = object()\nconn = sqlite3.connect(':memory:')"]
    service = "x = (clf, conn, np, missing)"
    with pytest.raises(CaptureError) as info:
        capture([service], cells, namespace, service="Iris")
    namespace["conn"].close()
    names = [u.name for u in info.value.uncaptured]
    assert names == ["clf", "conn", "missing"]
    message = str(info.value)
    assert "cannot export Iris" in message
    assert (
        "clf (object, from `clf = object()` in cell 2): save it to the model store with nbserve.models.save('clf', clf)"
        in message
    )
    assert "conn (sqlite3.Connection" in message
    assert "missing (not defined in any cell that ran): define or import it" in message


def test_the_namespace_explains_what_the_cells_cannot() -> None:
    namespace = {
        "sqrt": math.sqrt,
        "arr": np,
        "TABLE": {"a": {3, 1, 2}, "b": [float("inf")]},
        "N": 150,
    }
    cells = ["from math import *\nimport numpy\narr = numpy\nN = len(range(150))"]
    text = capture(["y = sqrt(N) + arr.pi + len(TABLE)"], cells, namespace).text
    assert text == (
        "import numpy as arr\nfrom math import sqrt\n\n\n"
        "N = 150\nTABLE = {'a': {1, 2, 3}, 'b': [float('inf')]}\n\n\n"
        "y = sqrt(N) + arr.pi + len(TABLE)\n"
    )


def test_lambdas_dotted_imports_and_future_imports() -> None:
    cells = ["import os.path\nimport os.environ_probe_nonexistent\nfix = lambda s: s.strip()"]
    service = "from __future__ import annotations\nz = fix(os.path.sep)"
    text = capture([service], cells).text
    assert text.startswith(
        "from __future__ import annotations\nimport os.environ_probe_nonexistent\nimport os.path\n"
    )
    assert "fix = lambda s: s.strip()" in text


def test_mutual_recursion_keeps_execution_order() -> None:
    cells = [
        "def even(n):\n    return n == 0 or odd(n - 1)",
        "def odd(n):\n    return n != 0 and even(n - 1)",
    ]
    text = capture(["r = even(4)"], cells).text
    assert text.index("def even") < text.index("def odd") < text.index("r = even")


def test_magic_lines_and_other_cell_magics() -> None:
    assert python_source("%%bash\necho hi") is None
    assert python_source("%%time\nx = 1") == "\nx = 1"
    assert python_source("files = !ls\nif True:\n    %time f()\nobj?") == "\nif True:\n    pass\n"
    with pytest.raises(SyntaxError):
        python_source("def broken(:\n")


def test_a_service_cell_that_is_not_python_is_an_error() -> None:
    with pytest.raises(CaptureError, match="not valid Python"):
        capture(["class X(:\n    pass"], [])


def test_imported_modules_include_function_level_imports() -> None:
    assert imported_modules(
        "import a.b\nfrom c.d import e\nfrom . import f\ndef g():\n    import h\n"
    ) == ("a", "c", "h")


def test_read_notebook_takes_code_cells_in_order(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# hi"),
        nbformat.v4.new_code_cell("a = 1"),
        nbformat.v4.new_code_cell("%%serve\nb = a"),
    ]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    assert read_notebook(tmp_path / "nb.ipynb").sources == ("a = 1", "%%serve\nb = a")


def test_annotations_count_even_when_postponed() -> None:
    cells = [
        "from pydantic import BaseModel\n\nclass Features(BaseModel):\n    x: float",
        "class Prediction(BaseModel):\n    y: float",
    ]
    service = (
        "from __future__ import annotations\n\n"
        "def predict(f: Features, local_only: 'Prediction') -> list[Prediction]:\n"
        "    tmp: NotAGlobal = f.x\n    return [Prediction(y=tmp)]\n"
    )
    text = capture([service], cells).text
    assert text.startswith("from __future__ import annotations\nfrom pydantic import BaseModel\n")
    assert "class Features(BaseModel):" in text
    assert "class Prediction(BaseModel):" in text
