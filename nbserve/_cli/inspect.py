"""`nbserve inspect ARCHIVE`: what a bento holds, read without extracting it.

```
$ nbserve inspect dist/iris-4luulzp6n3n4ss4l.bento
bento     iris:4luulzp6n3n4ss4l  (service:Iris, nbserve 0.1.0, Python 3.11.7)
apis      POST /classify  batchable  x: tensor
models    iris:xrnyf77w7d5rmkan  (160 B)
requires  jupyter-nbserve==0.1.0, numpy==2.4.6  (+ wheel jupyter_nbserve-0.1.0-py3-none-any.whl)
size      231.0 KiB in the archive, 252.3 KiB unpacked: src 0.6 KiB, env 228.2 KiB, models 0.5 KiB, ...
```
`--json` prints bento.yaml's data and the file sizes instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nbserve._cli.sizes import human_size

__all__ = ["describe", "register", "run"]

_MAX_BENTO_YAML = 16 << 20


def register(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "inspect",
        help="show a .bento archive's APIs, models, requirements and sizes",
        description="Show what a .bento archive holds (APIs, models, requirements, sizes) without extracting it.",
    )
    parser.add_argument(
        "archive", metavar="ARCHIVE", help="a .bento file or an extracted bento directory"
    )
    parser.add_argument(
        "--json", action="store_true", help="print bento.yaml and the file sizes as JSON"
    )
    parser.set_defaults(handler=run)
    return parser


def _read(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    import yaml

    if path.is_dir():
        sizes = {
            p.relative_to(path).as_posix(): p.stat().st_size
            for p in sorted(path.rglob("*"))
            if p.is_file()
        }
        text = (path / "bento.yaml").read_text(encoding="utf-8")
    else:
        from nbserve._bento.archive import open_tar

        sizes, found = {}, None
        with open_tar(path) as tar:  # reads the archive once, writes nothing
            for member in tar:
                if not member.isreg():
                    continue
                sizes[member.name] = member.size
                if member.name == "bento.yaml" and member.size <= _MAX_BENTO_YAML:
                    stream = tar.extractfile(member)
                    assert stream is not None
                    found = stream.read().decode("utf-8")
        if found is None:
            msg = f"nbserve inspect: {path} has no bento.yaml; is it a bento?"
            raise SystemExit(msg)
        text = found
    info = yaml.safe_load(text)
    if not isinstance(info, dict):
        msg = f"nbserve inspect: {path}'s bento.yaml is not a mapping"
        raise SystemExit(msg)
    return info, sizes


def _fields(schema: dict[str, Any]) -> str:
    props = schema.get("properties", {})
    return ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items()) or "(no input)"


def describe(path: Path) -> str:
    """The human-readable summary `nbserve inspect` prints."""
    info, sizes = _read(path)
    python = info.get("python", {})
    lines = [
        f"bento     {info.get('name')}:{info.get('version')}  ({info.get('service')}, nbserve {info.get('nbserve_version')}, Python {python.get('version', '?')})"
    ]
    routes = info.get("schema", {}).get("routes", [])
    for i, route in enumerate(routes):
        flags = "  batchable" if route.get("batchable") else ""
        flags += "  task" if route.get("is_task") else ""
        lines.append(
            f"{'apis' if i == 0 else '':<10}POST {route.get('route')}{flags}  {_fields(route.get('input', {}))}"
        )
    for i, model in enumerate(info.get("models", [])):
        name, _, version = str(model.get("tag")).partition(":")
        size = sum(v for k, v in sizes.items() if k.startswith(f"models/{name}/{version}/"))
        lines.append(
            f"{'models' if i == 0 else '':<10}{model.get('tag')}  ({model.get('module')}, {human_size(size)})"
        )
    wheels = python.get("wheels", [])
    extra = f"  (+ wheel {', '.join(wheels)})" if wheels else ""
    lines.append(f"requires  {', '.join(python.get('requirements', [])) or 'nothing'}{extra}")
    by_top: dict[str, int] = {}
    for name, size in sizes.items():
        top = name.split("/", 1)[0]
        by_top[top] = by_top.get(top, 0) + size
    parts = ", ".join(f"{k} {human_size(v)}" for k, v in sorted(by_top.items()))
    packed = f"{human_size(path.stat().st_size)} in the archive, " if path.is_file() else ""
    lines.append(f"size      {packed}{human_size(sum(sizes.values()))} unpacked: {parts}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path = Path(args.archive)
    if not path.exists():
        msg = f"nbserve inspect: no such file: {path}"
        raise SystemExit(msg)
    if args.json:
        info, sizes = _read(path)
        print(json.dumps({"bento": info, "files": sizes}, indent=2, default=str))
    else:
        print(describe(path))
    return 0
