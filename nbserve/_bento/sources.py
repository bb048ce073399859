"""Where a bento's source comes from: a kernel, a saved notebook or a `service.py`.

Three ways in, one archive (`builder.build_bento`): `export_service` (a kernel: `%serve
export`, `nbserve.export`; the `%%serve` cell plus what it uses from the cells that ran),
`build_notebook` (a saved `.ipynb`: `nbserve build`; the cells read as if run top to bottom) and
`build_file` / `build_source` (a module's text, as it is).
"""

from __future__ import annotations

import ast
import os
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nbserve._bento.builder import BuildError, build_bento
from nbserve._bento.capture import CapturedSource, capture
from nbserve._bento.names import imported_modules
from nbserve._bento.notebook_source import python_source, read_notebook
from nbserve._sdk.service import Service

__all__ = ["build_file", "build_notebook", "build_source", "export_service", "load_source"]

HEADER = """\
# service.py: written by nbserve from a notebook. The %%serve cell(s) of the service come last;
# above them, the imports, constants and helper definitions they use from other cells."""


def _service_variable(
    service: Service[Any], source: str, namespace: Mapping[str, Any] | None
) -> str:
    """The module-level name `service.py` binds the service to (`service: service:<that>`)."""
    tree = ast.parse(source)
    bound = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    bound += [
        t.id
        for n in tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    ]
    if namespace is not None:
        for name in reversed(bound):
            if namespace.get(name) is service:
                return name
    return (
        service.inner.__name__
        if service.inner.__name__ in bound
        else (bound[-1] if bound else service.name)
    )


def export_service(
    service: Service[Any],
    out_dir: str | os.PathLike[str],
    *,
    cells: Sequence[str],
    namespace: Mapping[str, Any] | None = None,
    requirements: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """Export a service defined in a kernel: `cells` is the kernel's input history (raw, e.g.
    `shell.history_manager.input_hist_raw`, or `In`), `namespace` its `user_ns`."""
    service_cells = (
        [service.source] if service.source is not None else _defining_cells(service, cells)
    )
    captured = capture(service_cells, cells, namespace, service=service.name, header=HEADER)
    try:
        compile(captured.text, "service.py", "exec")
    except SyntaxError as exc:  # a capture bug, not the user's: say so
        msg = f"the captured source of {service.name} does not compile (line {exc.lineno}: {exc.msg}); please report this with the notebook"
        raise BuildError(msg) from exc
    variable = _service_variable(service, captured.text, namespace)
    return build_bento(
        service,
        captured,
        out_dir,
        variable=variable,
        requirements_file=requirements,
        progress=progress,
    )


def _defines(source: str, name: str) -> bool:
    """Whether a cell binds a service called `name` (class name or `@service(name=...)`)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            if node.name == name:
                return True
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and any(
                    k.arg == "name" and isinstance(k.value, ast.Constant) and k.value.value == name
                    for k in deco.keywords
                ):
                    return True
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return True
    return False


def _cell_index(cells: Sequence[str], name: str) -> int | None:
    found = None
    for i, cell in enumerate(cells):
        try:
            source = python_source(cell)
        except SyntaxError:
            continue
        if source is not None and _defines(source, name):
            found = i
    return found


def _defining_cells(service: Service[Any], cells: Sequence[str]) -> list[str]:
    """The last cell that defines the service, for one served without %%serve."""
    for name in (service.name, service.inner.__name__):
        index = _cell_index(cells, name)
        if index is not None:
            return [cells[index]]
    msg = f"cannot find the cell that defines {service.name} in this kernel's history; run the cell that defines it (or serve it with %%serve) and export again"
    raise BuildError(msg)


def load_source(
    text: str, service: str, *, filename: str = "service.py"
) -> tuple[str, Service[Any]]:
    """Run `text` as a fresh module named `service`; return the variable and the Service."""
    module = types.ModuleType("service")
    module.__file__ = filename
    previous = sys.modules.get("service")
    sys.modules["service"] = module
    try:
        # Building runs the service's module once, as BentoML's build imports service.py.
        exec(compile(text, filename, "exec"), module.__dict__)
    finally:
        if previous is None:
            sys.modules.pop("service", None)
        else:
            sys.modules["service"] = previous
    found = {k: v for k, v in vars(module).items() if isinstance(v, Service)}
    for variable, svc in found.items():
        if service in (variable, svc.name):
            return variable, svc
    msg = f"{filename} defines no service called {service!r}; it defines: {', '.join(found) or 'none'}"
    raise BuildError(msg)


def build_notebook(
    path: str | os.PathLike[str],
    service: str,
    out_dir: str | os.PathLike[str],
    *,
    requirements: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """`nbserve build notebook.ipynb --service NAME`: capture from the saved cells, no kernel.

    The cells before the service's cell are read as if they ran top to bottom; the captured
    module is then run once here to get the service (its schema and configuration).
    """
    cells = read_notebook(path).sources
    index = _cell_index(cells, service)
    if index is None:
        msg = f"no code cell of {path} defines a service called {service!r}; pass the class name or @service(name=...) of the service"
        raise BuildError(msg)
    captured = capture([cells[index]], cells[: index + 1], None, service=service, header=HEADER)
    variable, svc = load_source(captured.text, service)
    return build_bento(
        svc,
        captured,
        out_dir,
        variable=variable,
        requirements_file=requirements,
        progress=progress,
    )


def build_source(
    service: Service[Any],
    text: str,
    variable: str,
    out_dir: str | os.PathLike[str],
    *,
    requirements: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """A module's whole text as the bento's `service.py`, `variable` naming the service in it."""
    captured = CapturedSource(text=text, modules=imported_modules(text))
    return build_bento(
        service,
        captured,
        out_dir,
        variable=variable,
        requirements_file=requirements,
        progress=progress,
    )


def build_file(
    path: str | os.PathLike[str],
    service: str,
    out_dir: str | os.PathLike[str],
    *,
    requirements: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """`nbserve build service.py --service NAME`: the file is the source, as it is."""
    text = Path(path).read_text(encoding="utf-8")
    variable, svc = load_source(text, service, filename=str(path))
    return build_source(svc, text, variable, out_dir, requirements=requirements, progress=progress)
