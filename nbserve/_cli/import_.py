"""`nbserve import ARCHIVE`: extract a `.bento` safely into the bento cache and print where.

Refuses absolute paths, `..`, links, devices and oversized members, and content that does not
match its version; extracting an archive already in the cache does nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "import",
        help="extract a .bento archive into the bento cache",
        description="Extract a .bento archive safely into $NBSERVE_HOME/bentos/<name>/<version>/ and print that directory (e.g. to `docker build` it).",
    )
    parser.add_argument("archive", metavar="ARCHIVE", help="a .bento file")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from nbserve._bento.archive import extract
    from nbserve.exceptions import NbserveError

    try:
        print(extract(args.archive))
    except NbserveError as exc:
        msg = f"nbserve import: {exc}"
        raise SystemExit(msg) from None
    except FileNotFoundError:
        msg = f"nbserve import: no such file: {args.archive}; pass a .bento archive"
        raise SystemExit(msg) from None
    return 0
