"""Source capture: the `%%serve` cell plus everything it needs, as one standalone `service.py`.

A notebook service is a cell that leans on earlier cells: a helper function, a constant, an
import. The exporter writes a module that runs on its own in a fresh interpreter:

1. find the free names of the service cell(s) (read but never bound there; `symtable` does the
   scoping, so locals, parameters and comprehension variables are not mistaken for globals);
2. resolve each against the cells that ran, the last binding winning as in the kernel:
   an import → that import, in the form the user wrote (`import numpy as np`); a function or
   class defined in a cell → its source, whose own free names are resolved in turn; a literal
   constant → its assignment; otherwise, when a kernel namespace is given, from the value: a
   module or an importable function/class → an import, a literal-representable value → an
   assignment;
3. anything left (a trained estimator, an open connection, a name never defined) cannot be
   written as source; every such global is reported at once, by name and type, with the fix.

The result is deterministic: the same cells give the same text, byte for byte. Capture from a
saved notebook (no namespace) and from a kernel that ran it top to bottom give the same text
whenever the names resolve from the cells alone, which is what makes `nbserve build
notebook.ipynb` and `%serve export` produce the same archive.
"""

from __future__ import annotations

import ast
import builtins
import heapq
import importlib
import math
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbserve._bento.names import free_names, imported_modules
from nbserve._bento.notebook_source import python_source
from nbserve.exceptions import NbserveError

__all__ = ["CaptureError", "CapturedSource", "Uncaptured", "capture"]

_UNDEFINED = "define or import it in a cell and run that cell (a name only a `*` import or an `exec` binds cannot be traced)"
_FIX = "save it to the model store with nbserve.models.save('{name}', {name}) and load it in __init__, or create it in __init__, or move it into a module"


@dataclass(frozen=True)
class Uncaptured:
    """A global the service uses that cannot be written as source."""

    name: str
    kind: str
    """What it is: a type (`sklearn.linear_model.LogisticRegression`) or where it came from."""
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}): {self.fix or _FIX.format(name=self.name)}"


class CaptureError(NbserveError):
    """The service's source cannot be captured; `uncaptured` lists the globals at fault, if any."""

    def __init__(self, message: str, uncaptured: Sequence[Uncaptured] = ()) -> None:
        super().__init__(message)
        self.uncaptured = tuple(uncaptured)

    @classmethod
    def for_globals(cls, service: str, uncaptured: Sequence[Uncaptured]) -> CaptureError:
        lines = "\n".join(f"  - {u}" for u in uncaptured)
        return cls(
            f"cannot export {service}: it uses global(s) that cannot be written as source:\n{lines}",
            uncaptured,
        )


@dataclass(frozen=True)
class CapturedSource:
    """The standalone `service.py` and what it imports."""

    text: str
    modules: tuple[str, ...]
    """Top-level modules the text imports (sorted), for the requirements."""


@dataclass
class _Binding:
    kind: str  # "def" | "import" | "const" | "computed"
    texts: list[str]
    position: tuple[int, int]  # (cell, statement): the kernel's execution order
    statement: str = ""  # for "computed": the first line, to say where the value came from


@dataclass
class _Resolution:
    imports: set[str] = field(default_factory=set)
    consts: dict[str, tuple[tuple[int, int], str]] = field(default_factory=dict)
    defs: dict[str, tuple[tuple[int, int], str]] = field(default_factory=dict)
    def_deps: dict[str, set[str]] = field(default_factory=dict)
    uncaptured: dict[str, Uncaptured] = field(default_factory=dict)


# ---- what the cells bind --------------------------------------------------------------------
def _segment(lines: list[str], node: ast.stmt) -> str:
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno, *(d.lineno for d in decorators)])
    return "\n".join(lines[start - 1 : node.end_lineno]).rstrip()


def _import_texts(node: ast.Import | ast.ImportFrom) -> Iterable[tuple[str, str]]:
    for alias in node.names:
        if isinstance(node, ast.Import):
            bound = alias.asname or alias.name.split(".")[0]
            text = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
        elif alias.name == "*":
            continue  # names unknown statically; the namespace resolves them, if given
        else:
            bound = alias.asname or alias.name
            module = "." * node.level + (node.module or "")
            text = f"from {module} import {alias.name}" + (
                f" as {alias.asname}" if alias.asname else ""
            )
        yield bound, text


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _stored_names(node: ast.AST) -> set[str]:
    return {
        n.id
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del)
    }


def _index(history: Sequence[str]) -> dict[str, _Binding]:
    """The last top-level binding of every name across the cells, in execution order."""
    bindings: dict[str, _Binding] = {}
    for cell_no, cell in enumerate(history, start=1):
        try:
            source = python_source(cell)
        except SyntaxError:
            continue  # the cell failed in the kernel too; it defined nothing
        if source is None:
            continue
        lines = source.split("\n")
        for stmt_no, stmt in enumerate(ast.parse(source).body):
            pos = (cell_no, stmt_no)
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bindings[stmt.name] = _Binding("def", [_segment(lines, stmt)], pos)
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                for bound, text in _import_texts(stmt):
                    prev = bindings.get(bound)
                    # `import a.b` then `import a.c` both bind `a`; the module needs both.
                    merge = (
                        prev is not None
                        and prev.kind == "import"
                        and text.startswith(f"import {bound}.")
                    )
                    texts = [*prev.texts, text] if merge and prev is not None else [text]
                    bindings[bound] = _Binding("import", texts, pos)
            elif (
                isinstance(stmt, ast.Assign | ast.AnnAssign)
                and stmt.value is not None
                and all(
                    isinstance(t, ast.Name)
                    for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
                )
                and (_is_literal(stmt.value) or isinstance(stmt.value, ast.Lambda))
            ):
                kind = "const" if _is_literal(stmt.value) else "def"
                value = ast.get_source_segment(source, stmt.value) or ast.unparse(stmt.value)
                for name in sorted(_stored_names(stmt)):
                    bindings[name] = _Binding(kind, [f"{name} = {value}"], pos)
            else:
                first = _segment(lines, stmt).split("\n")[0].strip()
                for name in sorted(_stored_names(stmt)):
                    if isinstance(stmt, ast.Delete):
                        bindings.pop(name, None)
                    else:
                        bindings[name] = _Binding("computed", [], pos, statement=first)
    return bindings


# ---- values from a live namespace ----------------------------------------------------------
def _literal(value: Any, depth: int = 0) -> str | None:
    """Source that evaluates to `value`, or None. Sets are sorted so the text is stable."""
    if depth > 20:
        return None
    if value is None or isinstance(value, bool | int | str | bytes):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"float({str(value)!r})"
    if isinstance(value, list | tuple | set | frozenset):
        items = [_literal(v, depth + 1) for v in value]
        if any(i is None for i in items):
            return None
        parts = [i for i in items if i is not None]
        if isinstance(value, list):
            return "[" + ", ".join(parts) + "]"
        if isinstance(value, tuple):
            return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        body = ", ".join(sorted(parts))
        if isinstance(value, frozenset):
            return f"frozenset({{{body}}})" if parts else "frozenset()"
        return f"{{{body}}}" if parts else "set()"
    if isinstance(value, dict):
        pairs = [(_literal(k, depth + 1), _literal(v, depth + 1)) for k, v in value.items()]
        if any(k is None or v is None for k, v in pairs):
            return None
        return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    return None


def _from_value(name: str, value: Any) -> tuple[str, str] | None:
    """`("import" | "const", text)` for a value that can be written as source."""
    if isinstance(value, types.ModuleType):
        mod = value.__name__
        if mod == name:
            return "import", f"import {mod}"
        return "import", f"import {mod} as {name}"
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if (
        isinstance(module, str)
        and isinstance(qualname, str)
        and module != "__main__"
        and "." not in qualname
    ):
        try:
            found = getattr(importlib.import_module(module), qualname, None)
        except Exception:  # any failure to import just means "not importable"
            found = None
        if found is value:
            return "import", f"from {module} import {qualname}" + (
                f" as {name}" if name != qualname else ""
            )
    literal = _literal(value)
    if literal is not None:
        return "const", f"{name} = {literal}"
    return None


def _type_name(value: Any) -> str:
    cls = type(value)
    return (
        cls.__qualname__
        if cls.__module__ in {"builtins", "__main__"}
        else f"{cls.__module__}.{cls.__qualname__}"
    )


# ---- resolution --------------------------------------------------------------------------------
def _resolve(
    names: Iterable[str],
    bindings: Mapping[str, _Binding],
    namespace: Mapping[str, Any] | None,
    skip: set[str],
    out: _Resolution,
    user: str | None = None,
) -> None:
    for name in sorted(names):
        if user is not None and name in bindings and bindings[name].kind == "def":
            out.def_deps.setdefault(user, set()).add(name)
        if name in skip or name in out.defs or name in out.consts or name in out.uncaptured:
            continue
        skip.add(name)
        binding = bindings.get(name)
        if binding is not None and binding.kind == "import":
            out.imports.update(binding.texts)
        elif binding is not None and binding.kind == "const":
            out.consts[name] = (binding.position, binding.texts[0])
        elif binding is not None and binding.kind == "def":
            text = binding.texts[0]
            out.defs[name] = (binding.position, text)
            free, _ = free_names(text)
            _resolve(free, bindings, namespace, skip, out, user=name)
        elif namespace is not None and name in namespace:
            found = _from_value(name, namespace[name])
            if found is None:
                where = (
                    f", from `{binding.statement}` in cell {binding.position[0]}" if binding else ""
                )
                out.uncaptured[name] = Uncaptured(name, _type_name(namespace[name]) + where)
            elif found[0] == "import":
                out.imports.add(found[1])
            else:
                out.consts[name] = ((0, 0), found[1])
        elif hasattr(builtins, name):
            continue
        elif binding is not None:
            kind = f"computed by `{binding.statement}` in cell {binding.position[0]}"
            out.uncaptured[name] = Uncaptured(name, kind)
        else:
            out.uncaptured[name] = Uncaptured(name, "not defined in any cell that ran", _UNDEFINED)


def _def_order(res: _Resolution) -> list[str]:
    """Helpers in dependency order; ties and cycles (mutual recursion) by execution order."""
    pending = {
        name: {d for d in res.def_deps.get(name, ()) if d in res.defs and d != name}
        for name in res.defs
    }
    heap = [(res.defs[n][0], n) for n, deps in pending.items() if not deps]
    heapq.heapify(heap)
    order: list[str] = []
    while pending:
        if not heap:  # a cycle: release the earliest definition
            name = min(pending, key=lambda n: (res.defs[n][0], n))
            heap.append((res.defs[name][0], name))
        _, name = heapq.heappop(heap)
        if name not in pending:
            continue
        del pending[name]
        order.append(name)
        for other, deps in pending.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(heap, (res.defs[other][0], other))
    return order


def _import_key(text: str) -> tuple[int, str]:
    if text.startswith("from __future__"):
        return 0, text
    return (1 if text.startswith("import ") else 2), text


def _service_body(service_cells: Sequence[str], service: str) -> tuple[str, list[str]]:
    """The service cells as Python, with `from __future__` imports lifted out (they go first)."""
    bodies: list[str] = []
    future: list[str] = []
    for cell in service_cells:
        try:
            source = python_source(cell)
        except SyntaxError as exc:
            msg = f"cannot export {service}: its cell is not valid Python after removing magics (line {exc.lineno}: {exc.msg}); fix the cell and run it again"
            raise CaptureError(msg) from exc
        if source is None:
            continue
        lines = source.split("\n")
        for stmt in ast.parse(source).body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
                future.extend(text for _, text in _import_texts(stmt))
                for i in range(stmt.lineno - 1, stmt.end_lineno or stmt.lineno):
                    lines[i] = ""
        bodies.append("\n".join(lines).strip("\n"))
    return "\n\n\n".join(b for b in bodies if b), future


def capture(
    service_cells: Sequence[str],
    history: Sequence[str] = (),
    namespace: Mapping[str, Any] | None = None,
    *,
    service: str = "the service",
    header: str = "",
) -> CapturedSource:
    """Write the service cell(s) and what they need from `history` as one module.

    `service_cells`: the `%%serve` cell(s), magics allowed. `history`: every cell that ran, in
    execution order (the kernel's `In`, or a notebook's code cells). `namespace`: the kernel's
    `user_ns`, used only for names the cells alone do not explain. `header`: a comment block put
    at the top. Raises `CaptureError` listing every global that cannot be written as source.
    """
    body, future = _service_body(service_cells, service)
    free, bound = free_names(body)
    res = _Resolution()
    _resolve(free, _index(history), namespace, set(bound), res)
    if res.uncaptured:
        raise CaptureError.for_globals(service, [res.uncaptured[n] for n in sorted(res.uncaptured)])

    imports = sorted({*future, *res.imports}, key=_import_key)
    consts = [text for _, text in sorted(res.consts.values())]
    defs = [res.defs[name][1] for name in _def_order(res)]
    blocks = [header.strip("\n"), "\n".join(imports), "\n".join(consts), *defs, body]
    text = "\n\n\n".join(b for b in blocks if b) + "\n"
    return CapturedSource(text=text, modules=imported_modules(text))
