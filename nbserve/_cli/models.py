"""`nbserve models list | get | delete | export | import`: the model store from a shell.

```
nbserve models list [NAME]              one line per entry: tag, module, size, created
nbserve models get iris:latest          the entry's model.yaml, verified
nbserve models delete iris:abc123 [-y]  one version, or every version of a name
nbserve models export iris:latest DIR   a reproducible .nbmodel file
nbserve models import iris.nbmodel      verified, then added to the store
```
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nbserve._cli.sizes import human_size

__all__ = ["register", "run"]


def register(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "models",
        help="list, show, delete, export or import model-store entries",
        description="Manage the model store ($NBSERVE_HOME/models).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="one line per stored model")
    listing.add_argument("name", nargs="?", help="only this name (or name:version)")
    get = actions.add_parser("get", help="show an entry's model.yaml (verified)")
    get.add_argument("tag", help="name, name:latest or name:version")
    delete = actions.add_parser("delete", help="delete a version, or every version of a name")
    delete.add_argument("tag", help="name:version, name:latest, or name (every version)")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    export = actions.add_parser("export", help="write an entry to a .nbmodel file")
    export.add_argument("tag", help="name, name:latest or name:version")
    export.add_argument("path", nargs="?", default=".", help="a file or a directory (default: .)")
    imported = actions.add_parser("import", help="add a .nbmodel file's entry to the store")
    imported.add_argument("path", help="a .nbmodel file")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from nbserve.exceptions import NbserveError

    try:
        return _run(args)
    except NbserveError as exc:
        msg = f"nbserve models {args.action}: {exc}"
        raise SystemExit(msg) from None


def _run(args: argparse.Namespace) -> int:
    import yaml

    from nbserve import models

    if args.action == "list":
        rows = [
            (
                str(m.tag),
                m.info.module,
                human_size(m.file_size),
                m.creation_time.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for m in models.list(args.name)
        ]
        if not rows:
            print(
                "no models stored"
                + (f" under {args.name!r}" if args.name else "")
                + "; save one with nbserve.models.save('name', obj)"
            )
            return 0
        header = ("TAG", "MODULE", "SIZE", "CREATED (UTC)")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    elif args.action == "get":
        print(yaml.safe_dump(models.get(args.tag).info.to_dict(), sort_keys=False).rstrip())
    elif args.action == "delete":
        if not args.yes:
            if not sys.stdin.isatty():
                msg = f"nbserve models delete: pass -y to delete {args.tag} without a terminal to confirm on"
                raise SystemExit(msg)
            if input(f"delete model {args.tag}? [y/N] ").strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        models.delete(args.tag)
        print(f"deleted {args.tag}")
    elif args.action == "export":
        print(models.export_model(args.tag, args.path))
    elif args.action == "import":
        print(models.import_model(args.path).tag)
    return 0
