"""`nbserve build TARGET`: a saved notebook or a service.py → a reproducible `.bento` archive.

```
nbserve build analysis.ipynb --service Iris -o dist/     # the %%serve cell + what it uses
nbserve build service.py:Iris -o dist/                    # a file is taken as it is
```
The notebook is read, not run: the cells before the service's cell are taken as if they ran
top to bottom, which gives the same archive as `%serve export` from a kernel that did so.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "build",
        help="build a .bento archive from a notebook or a service.py",
        description="Build a reproducible .bento archive (source, pinned requirements, models, Dockerfile, Kubernetes manifest) from a saved notebook or a service.py.",
        epilog="examples:\n  nbserve build analysis.ipynb --service Iris -o dist/\n  nbserve build service.py:Iris",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target", metavar="TARGET", help="NOTEBOOK.ipynb or FILE.py, optionally :SERVICE"
    )
    parser.add_argument(
        "--service", metavar="NAME", help="the service to build (class name or @service(name=...))"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        default="dist",
        help="where to write <name>-<version>.bento (default: dist)",
    )
    parser.add_argument(
        "--requirements",
        metavar="FILE",
        help="a requirements file whose lines override or extend the pinned requirements",
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from nbserve._bento.sources import build_file, build_notebook
    from nbserve.exceptions import NbserveError

    file, sep, named = str(args.target).rpartition(":")
    if not sep:
        file, named = str(args.target), ""
    service = args.service or named
    path = Path(file)
    if not service:
        msg = f"nbserve build: which service in {path}? pass --service NAME (or {path}:NAME)"
        raise SystemExit(msg)
    if not path.is_file():
        msg = f"nbserve build: no such file: {path}"
        raise SystemExit(msg)
    build = build_notebook if path.suffix == ".ipynb" else build_file
    try:
        archive = build(path, service, args.output, requirements=args.requirements)
    except NbserveError as exc:  # a message for the user, not a traceback
        msg = f"nbserve build: {exc}"
        raise SystemExit(msg) from None
    except OSError as exc:  # an unreadable input or an unwritable output directory
        msg = f"nbserve build: {exc.strerror or exc}: {exc.filename or ''}; check the path and its permissions"
        raise SystemExit(msg) from None
    print(archive)
    return 0
