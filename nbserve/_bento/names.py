"""Names in Python source: which globals a piece of code reads, and which modules it imports.

`free_names` is the exporter's question "what does this cell need from elsewhere?". Python's
own `symtable` answers it with real scoping, so parameters, locals, comprehension variables and
class attributes are not mistaken for globals. Two corrections: names in annotations count even
under `from __future__ import annotations` (symtable then skips them, but pydantic resolves
them in the module's globals when the service is decorated), and a local variable's annotation
never does (PEP 526: it is not evaluated, so it may name anything).
"""

from __future__ import annotations

import ast
import symtable
from collections.abc import Iterable

__all__ = ["free_names", "imported_modules"]

_MODULE_DUNDERS = frozenset(
    {"__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__", "__builtins__"}
)


def _walk_tables(table: symtable.SymbolTable) -> Iterable[symtable.SymbolTable]:
    yield table
    for child in table.get_children():
        yield from _walk_tables(child)


def free_names(source: str) -> tuple[set[str], set[str]]:
    """`(free, bound)`: globals the code reads without binding, and the ones it binds."""
    tree = ast.parse(source)
    for node in _local_annotations(tree):
        node.annotation = ast.Constant(None)  # never evaluated, so it reads no global
    top = symtable.symtable(ast.unparse(tree), "<capture>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_local()}
    used: set[str] = set()
    for table in _walk_tables(top):
        for sym in table.get_symbols():
            if table is not top and sym.is_global() and sym.is_assigned():
                bound.add(sym.get_name())  # `global X; X = ...` inside a function
            elif sym.is_referenced() and (table is top or sym.is_global()):
                used.add(sym.get_name())
    return (used | _annotation_names(source)) - bound - _MODULE_DUNDERS, bound


def _local_annotations(tree: ast.AST) -> list[ast.AnnAssign]:
    """`x: T = ...` inside functions: PEP 526 never evaluates these, so `T` may be anything."""
    return [
        n
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for stmt in f.body
        for n in ast.walk(stmt)
        if isinstance(n, ast.AnnAssign)
    ]


def _annotation_names(source: str) -> set[str]:
    """Names in annotations, string ones included. Under `from __future__ import annotations`
    symtable does not see them, yet pydantic resolves them in the module's globals."""
    found: set[str] = set()
    pending: list[ast.AST] = []
    tree = ast.parse(source)
    local = {id(n) for n in _local_annotations(tree)}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.arg | ast.AnnAssign)
            and node.annotation is not None
            and id(node) not in local
        ):
            pending.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            pending.append(node.returns)
    while pending:
        for node in ast.walk(pending.pop()):
            if isinstance(node, ast.Name):
                found.add(node.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                try:
                    pending.append(ast.parse(node.value, mode="eval"))
                except SyntaxError:
                    continue  # a Literal["..."] value, not a forward reference
    return found


def imported_modules(source: str) -> tuple[str, ...]:
    """Top-level names of the absolute imports anywhere in `source` (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    found.discard("__future__")
    return tuple(sorted(found))
