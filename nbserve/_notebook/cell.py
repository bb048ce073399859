"""Run a `%%serve` cell the way IPython runs a cell, and find the service it defines.

The body is transformed (`%magics`, `!shell` lines) and compiled under a name registered in
`linecache` (`shell.compile.cache`), so a traceback from the cell, or later from a request
handler running the cell's code, shows the cell's own lines. It runs in the notebook's
namespace, so the class is defined there exactly as a plain cell would define it.

Which service the cell defines: every name the cell binds at top level (class, import,
assignment) whose value is a `Service`, plus any other name whose `Service` value changed
identity while the cell ran (a `globals()[...] =` or an `exec`). Re-running
`from mod import Svc` rebinds the same object; the AST pass still finds it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbserve._sdk.service import Service

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["CellServiceError", "FoundService", "choose_service", "run_cell"]


class CellServiceError(ValueError):
    """The cell defines no service, several without `--name`, or none matching `--name`."""


@dataclass(frozen=True)
class FoundService:
    """A `Service` the cell bound, under the variable name it was bound to."""

    variable: str
    service: Service[Any]


def _bound_names(tree: ast.AST) -> list[str]:
    """Names the module's top-level statements bind, in source order (no nested scopes)."""
    names: list[str] = []
    body = tree.body if isinstance(tree, ast.Module) else []
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.extend((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.extend(_target_names(target))
    return list(dict.fromkeys(names))


def _target_names(target: ast.expr) -> list[str]:
    """`a`, `a, (b, *c)` bind names; `a.x = ...` and `a[0] = ...` bind none."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _services_in(namespace: dict[str, Any]) -> dict[str, Service[Any]]:
    return {k: v for k, v in namespace.items() if isinstance(v, Service)}


def run_cell(shell: InteractiveShell, cell: str) -> list[FoundService]:
    """Execute `cell` in `shell.user_ns` like a normal cell; return the services it bound.

    Exceptions from the cell propagate unchanged; their tracebacks point at the cell's lines.
    """
    __tracebackhide__ = True  # IPython's traceback skips this frame and shows the cell's
    ip: Any = shell  # IPython's shell API is only partly typed
    code = ip.transform_cell(cell)
    filename = ip.compile.cache(code, ip.execution_count, raw_code=cell)
    tree = ip.compile.ast_parse(code, filename=filename)
    before = {k: id(v) for k, v in _services_in(ip.user_ns).items()}
    # The shell's compiler, not `compile`: it applies and remembers the session's __future__ flags.
    exec(ip.compile(tree, filename, "exec"), ip.user_global_ns, ip.user_ns)
    after = _services_in(ip.user_ns)
    names = [n for n in _bound_names(tree) if n in after]
    names += [n for n, svc in after.items() if n not in names and before.get(n) != id(svc)]
    found: list[FoundService] = []
    for name in names:
        if all(f.service is not after[name] for f in found):  # `B = A` is one service, not two
            found.append(FoundService(name, after[name]))
    return found


def choose_service(found: list[FoundService], name: str | None) -> Service[Any]:
    """The one service to serve: the one matching `name` (service or variable name), or the only one."""
    listing = ", ".join(f"{f.variable} (service {f.service.name!r})" for f in found)
    if name is not None:
        matches = [f for f in found if name in (f.service.name, f.variable)]
        if len(matches) == 1:
            return matches[0].service
        if not matches and len(found) == 1:
            return found[0].service  # --name renames the only service the cell defines
        if not matches:
            msg = f"--name {name!r} matches none of the services this cell defines: {listing or 'none'}; pass one of their names"
            raise CellServiceError(msg)
    if not found:
        msg = "this %%serve cell defines no service; decorate a class with @nbserve.service in the cell, e.g. `@nbserve.service\\nclass Echo: ...`"
        raise CellServiceError(msg)
    if len(found) > 1:
        msg = f"this %%serve cell defines {len(found)} services: {listing}; choose one with --name, e.g. %%serve --name {found[0].service.name}"
        raise CellServiceError(msg)
    return found[0].service
