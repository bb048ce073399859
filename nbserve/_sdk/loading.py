"""`nbserve.load(target, working_dir=...)`: a service from its import target, as BentoML's.

`target` is what `nbserve serve` takes: `service.py:Name`, `package.module:Name`, or a bento
(archive or directory). `working_dir` is where the target's module and its siblings are found,
as `bentoml.load(..., working_dir=...)`; it goes first on `sys.path` for this process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbserve.exceptions import InvalidArgument

if TYPE_CHECKING:
    from nbserve._sdk.service import Service

__all__ = ["load"]


def load(bento_identifier: str | os.PathLike[str], working_dir: str | None = None) -> Service[Any]:
    from nbserve._cli.serve import TargetError, _split, load_target

    target = os.fspath(bento_identifier)
    if working_dir is not None:
        root = Path(working_dir).resolve()
        if not root.is_dir():
            msg = f"load(working_dir={working_dir!r}): no such directory"
            raise InvalidArgument(msg)
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        reference, attribute = _split(target)
        if (reference.endswith((".py", ".bento")) or "/" in reference) and not Path(
            reference
        ).is_absolute():
            target = str(root / reference) + (f":{attribute}" if attribute else "")
    try:
        return load_target(target)
    except TargetError as exc:
        msg = f"load({os.fspath(bento_identifier)!r}): {exc}"
        raise InvalidArgument(msg) from None
