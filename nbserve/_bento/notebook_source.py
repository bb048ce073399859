"""Notebook cells as plain Python: what the exporter reads in place of IPython syntax.

A cell from a kernel's history is IPython syntax (`%%serve`, `%time f()`, `!pip list`) or, when
it comes from `In`, IPython's translation of it (`get_ipython().run_cell_magic('serve', ...)`).
A saved notebook holds the former. The exporter wants the Python that ran, so this module turns
either form into plain Python that parses on its own:

- a cell magic whose body is Python (`%%serve`, `%%time`, `%%capture`, ...) becomes its body;
  any other cell magic (`%%bash`, `%%html`, `%%writefile`) is not Python and is dropped;
- line magics and shell escapes (`%matplotlib inline`, `!pip install x`, `files = !ls`) are
  removed, or become `pass` where a block would otherwise be left empty.

Line numbers are kept (removed lines become blank), so a definition's position in the cell is
the position the user sees.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PYTHON_CELL_MAGICS", "NotebookCells", "python_source", "read_notebook"]

# Cell magics that run their body as Python in the user's namespace.
PYTHON_CELL_MAGICS = frozenset({"serve", "time", "timeit", "capture", "prun", "python", "debug"})

# `%magic`, `!cmd`, `x = %magic`, `a, b = !cmd` at the start of a line; `obj?` help requests.
_MAGIC_LINE = re.compile(r"^(\s*)(?:[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*\s*=\s*)?[%!]")
_HELP_LINE = re.compile(r"^\s*[\w.]+\?\??\s*$")
# `get_ipython().<method>(...)` statements IPython writes for line magics and shell escapes.
_IPYTHON_CALLS = frozenset({"run_line_magic", "system", "getoutput", "run_cell_magic", "magic"})


def _cell_magic(source: str) -> tuple[str, str, str] | None:
    """`(name, arguments, body)` when the cell starts with `%%name arguments`."""
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if not line.lstrip().startswith("%%"):
            return None
        name, _, args = line.lstrip()[2:].partition(" ")
        # Blank lines in place of the header keep the body's line numbers.
        return name, args.strip(), "\n" * (i + 1) + "\n".join(lines[i + 1 :])
    return None


def _ipython_call(node: ast.AST) -> str | None:
    """The method name when `node` is `get_ipython().<method>(...)`."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
    ):
        return node.func.attr
    return None


def _translated_cell_magic(tree: ast.Module) -> tuple[str, str, str] | None:
    """`In`'s form of a cell magic: one `get_ipython().run_cell_magic(name, args, body)` call."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if (
        _ipython_call(call) != "run_cell_magic"
        or not isinstance(call, ast.Call)
        or len(call.args) != 3
    ):
        return None
    parts = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]


def _blank(lines: list[str], start: int, end: int) -> None:
    for i in range(start - 1, end):
        lines[i] = ""


def _strip_translated(source: str, tree: ast.Module) -> str:
    """Blank top-level `get_ipython().run_line_magic(...)`-style statements."""
    lines = source.split("\n")
    for stmt in tree.body:
        value = stmt.value if isinstance(stmt, ast.Expr | ast.Assign) else None
        if (
            value is not None
            and _ipython_call(value) in _IPYTHON_CALLS
            and stmt.end_lineno is not None
        ):
            _blank(lines, stmt.lineno, stmt.end_lineno)
    return "\n".join(lines)


def _strip_magic_lines(source: str) -> str:
    out = []
    for line in source.split("\n"):
        match = _MAGIC_LINE.match(line)
        if match or _HELP_LINE.match(line):
            indent = match.group(1) if match else ""
            # An indented magic may be the only statement of its block: keep the block valid.
            out.append(f"{indent}pass" if indent else "")
        else:
            out.append(line)
    return "\n".join(out)


def python_source(cell: str) -> str | None:
    """The plain Python of one cell, or None when the cell is not Python (`%%bash`, ...).

    Raises `SyntaxError` when what is left is still not valid Python.
    """
    magic = _cell_magic(cell)
    if magic is not None:
        name, _, body = magic
        return python_source(body) if name in PYTHON_CELL_MAGICS else None
    try:
        tree = ast.parse(cell)
    except SyntaxError:
        stripped = _strip_magic_lines(cell)
        ast.parse(stripped)  # still not Python: let the caller decide
        return stripped
    translated = _translated_cell_magic(tree)
    if translated is not None:
        name, _, body = translated
        return python_source(body) if name in PYTHON_CELL_MAGICS else None
    return _strip_translated(cell, tree)


@dataclass(frozen=True)
class NotebookCells:
    """The code cells of a saved notebook, in order, as the user wrote them."""

    path: Path
    sources: tuple[str, ...]


def read_notebook(path: str | os.PathLike[str]) -> NotebookCells:
    """Read the code cells of an `.ipynb` (nbformat 4; older notebooks are upgraded)."""
    path = Path(path)
    try:
        import nbformat
    except ImportError:  # a bare environment: a v4 notebook is plain JSON
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("nbformat", 0) < 4:
            msg = f"{path} is an nbformat {data.get('nbformat')} notebook; install nbformat (pip install nbformat) to read it, or save it again with a current Jupyter"
            raise ValueError(msg) from None
        cells: Sequence[dict[str, object]] = data.get("cells", [])
    else:
        cells = nbformat.read(str(path), as_version=4).cells  # type: ignore[no-untyped-call]
    sources = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        sources.append("".join(source) if isinstance(source, list) else str(source))
    return NotebookCells(path=path, sources=tuple(sources))
