"""`nbserve` entry point: the argument parser, built from a registry of command modules.

Adding a command: write `nbserve/_cli/<name>.py` with `register(subparsers)` and `run(args)`
(see `serve.py`) and list its module in `COMMANDS`, in the order `--help` shows them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nbserve._version import __version__

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: tuple[str, ...] = (
    "nbserve._cli.serve",
    "nbserve._cli.build",
    "nbserve._cli.inspect",
    "nbserve._cli.import_",
    "nbserve._cli.containerize",
    "nbserve._cli.models",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbserve",
        description="Serve, build and deploy model services written with nbserve (BentoML-compatible).",
    )
    parser.add_argument("--version", action="version", version=f"nbserve {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
