"""`%%serve` (serve the service a cell defines) and `%serve` (list, stop, logs, status, rollback).

Both magics parse their options with argparse through IPython's `magic_arguments`, so a bad
option is a one-line `UsageError` with argparse's message (no traceback), and `%%serve?` /
`%serve?` print help generated from the same parsers. The cell form runs the cell like a plain
cell (`cell.run_cell`), picks the service, and hands it to the kernel-wide registry, which
starts it or swaps it into the running server; the status is displayed once per run under the
service's display id, and later state changes re-render it in place.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from IPython.core import magic, magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics

from nbserve._notebook import display
from nbserve._notebook.cell import CellServiceError, choose_service, run_cell
from nbserve._notebook.failures import for_the_user
from nbserve._notebook.live import ServeOptions
from nbserve._notebook.registry import REGISTRY, RollbackError, UnknownServiceError
from nbserve._notebook.tester import magic as tester_magic

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["ServeMagics", "line_parser"]

# IPython's decorators and parser are untyped (or typed too loosely for mypy strict); they are
# used through these typed wrappers only.
F = TypeVar("F", bound=Callable[..., Any])
_ipy_args: Any = magic_arguments
_ipy_magic: Any = magic
MagicArgumentParser: Any = _ipy_args.MagicArgumentParser


def _arguments(name: str) -> Callable[[F], F]:
    deco: Callable[[F], F] = _ipy_args.magic_arguments(name)
    return deco


def _argument(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    deco: Callable[[F], F] = _ipy_args.argument(*args, **kwargs)
    return deco


def _magic(kind: str, name: str) -> Callable[[F], F]:
    deco: Callable[[F], F] = getattr(_ipy_magic, f"{kind}_magic")(name)
    return deco


def _parse_argstring(func: Callable[..., Any], line: str) -> argparse.Namespace:
    args: argparse.Namespace = _ipy_args.parse_argstring(func, line)
    return args


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        msg = f"invalid port {text!r}: use 0 (a free port) to 65535"
        raise argparse.ArgumentTypeError(msg)
    return port


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        msg = f"invalid worker count {text!r}: use a whole number >= 1, or leave --workers out to run inline"
        raise argparse.ArgumentTypeError(msg)
    return workers


def _lines(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        msg = f"invalid line count {text!r}: use a whole number >= 0, e.g. -n 50"
        raise argparse.ArgumentTypeError(msg)
    return n


def line_parser() -> Any:
    """The parser of the line magic: `%serve COMMAND ...`."""
    parser = MagicArgumentParser(  # the help formatter adds the "%"
        prog="serve", description="Manage the services served from this kernel."
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=MagicArgumentParser
    )
    commands.add_parser(
        "list", help="one status line per service", description="One status line per service."
    )
    stop = commands.add_parser(
        "stop",
        help="stop NAME, or every service with --all",
        description="Stop a service: finish in-flight requests, run on_shutdown, free the port.",
    )
    stop.add_argument("name", nargs="?", help="the service to stop")
    stop.add_argument("--all", action="store_true", help="stop every service of this kernel")
    logs = commands.add_parser(
        "logs",
        help="print the last lines of NAME's log",
        description="Print the last lines of a service's log ring buffer.",
    )
    logs.add_argument("name", help="the service")
    logs.add_argument(
        "-n", type=_lines, default=50, metavar="LINES", help="how many lines (default: 50)"
    )
    status = commands.add_parser(
        "status",
        help="show NAME's status, routes and latency",
        description="Show a service's status; also refreshes the status shown under the cell that served it.",
    )
    status.add_argument("name", help="the service")
    rollback = commands.add_parser(
        "rollback",
        help="serve NAME's previous version again",
        description="Swap the previous version of a service's cell back in, on the same port.",
    )
    rollback.add_argument("name", help="the service")
    _add_export_parser(commands)
    _add_containerize_parser(commands)
    tester_magic.add_loadtest_parser(commands)
    return parser


# --- %serve export (nbserve._bento owns the export; this only parses and reports) ------------
def _add_export_parser(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="write NAME as a reproducible .bento archive",
        description="Write a service as a .bento archive (its %%serve cell, the helpers and imports it uses from other cells, pinned requirements, its models): `nbserve serve` runs it anywhere.",
    )
    export.add_argument("name", help="the service")
    export.add_argument(
        "-o",
        "--output",
        default="dist",
        metavar="DIR",
        help="the directory to write <name>-<version>.bento into (default: dist)",
    )
    export.add_argument(
        "--requirements",
        metavar="FILE",
        default=None,
        help="a requirements file whose lines override or extend the pinned requirements",
    )


def _export(args: argparse.Namespace) -> None:
    from nbserve._notebook.export import export
    from nbserve.exceptions import NbserveError

    try:
        path = export(REGISTRY.get(args.name).service, args.output, requirements=args.requirements)
    except NbserveError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # an unwritable -o directory, a missing --requirements file
        msg = f"cannot export {args.name!r}: {exc.strerror or exc}: {exc.filename or ''}; check the path and its permissions"
        raise UsageError(msg) from None
    print(f"exported {args.name!r} to {path}")


def _add_containerize_parser(commands: Any) -> None:
    image = commands.add_parser(
        "containerize",
        help="export NAME and build its container image",
        description="Export a service (as %serve export does) and build its image with `nbserve containerize`.",
    )
    image.add_argument("name", help="the service")
    image.add_argument("-t", "--tag", help="the image's name:tag (default: <name>:<version>)")
    image.add_argument("--base-image", metavar="IMAGE", help="the image to build on")
    image.add_argument(
        "-o",
        "--output",
        default="dist",
        metavar="DIR",
        help="where the .bento goes (default: dist)",
    )
    image.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="write the build context and print the build command; build nothing",
    )


def _containerize(args: argparse.Namespace) -> None:
    from nbserve._cli.containerize import containerize
    from nbserve._notebook.export import export
    from nbserve.exceptions import NbserveError

    try:
        path = export(REGISTRY.get(args.name).service, args.output)
        print(f"exported {args.name!r} to {path}", flush=True)
        options = argparse.Namespace(
            bento=str(path),
            tag=args.tag,
            base_image=args.base_image,
            engine=None,
            print_only=args.print_only,
            output=args.output,
            kubernetes=False,
        )
        containerize(options)
    except NbserveError as exc:
        raise UsageError(str(exc)) from None


def _line_help() -> str:
    parser = line_parser()
    parts = [parser.format_help()]
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            parts += [sub.format_help() for sub in action.choices.values()]
    return "\n".join(parts)


@_ipy_magic.magics_class
class ServeMagics(Magics):
    """`%%serve` and `%serve`; registered by `%load_ext nbserve` or `import nbserve` in IPython."""

    @_arguments("%serve")
    @_argument(
        "--name",
        help="the service's name in this kernel: picks the service when the cell defines several, renames the only one otherwise (default: the service's own name)",
    )
    @_argument(
        "--port",
        type=_port,
        default=0,
        help="the port to listen on; 0 (the default) picks a free one. A re-run keeps the running port",
    )
    @_argument(
        "--host",
        default="127.0.0.1",
        help="the interface to bind (default: 127.0.0.1, this machine only)",
    )
    @_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="serve from N worker processes instead of inline in the kernel",
    )
    @_argument(
        "--dependencies",
        choices=("auto", "workers", "inline"),
        default="auto",
        help="workers: depended services that declare workers or resources get their own worker pools, as outside a notebook; inline: every dependency runs in the kernel; auto (the default): inline in a notebook unless $NBSERVE_DEPENDENCIES says otherwise",
    )
    @_argument("--no-display", action="store_true", help="do not show the status output")
    @_argument(
        "--no-tester",
        action="store_true",
        help="do not show the request tester under the status (nbserve.tester(NAME) shows it anywhere)",
    )
    @_argument(
        "--token",
        choices=("auto", "none"),
        default="none",
        help="auto: clients must send a random bearer token (nbserve.services()[NAME].token); none (the default): no token",
    )
    @_magic("cell", "serve")
    def serve_cell(self, line: str, cell: str) -> None:
        """Define a service in this cell and serve it; re-running the cell swaps in the new code.

        The cell runs in the notebook's namespace like any cell, then the service it defines
        (one class decorated with @nbserve.service, or the one named by --name) is served on
        its own thread. Re-running the cell serves the new version on the same port with no
        failed request; `%serve rollback NAME` goes back. Example::

            %%serve --port 3000
            import nbserve

            @nbserve.service
            class Echo:
                @nbserve.api
                def shout(self, text: str) -> str:
                    return text.upper()
        """
        __tracebackhide__ = True
        args = _parse_argstring(self.serve_cell, line)
        found = run_cell(self._shell, cell)
        try:
            service = choose_service(found, args.name)
        except CellServiceError as exc:
            raise UsageError(str(exc)) from None
        service.source = cell
        options = ServeOptions(
            host=args.host,
            port=args.port,
            workers=args.workers,
            token=args.token,
            dependencies=args.dependencies,
        )
        name = args.name or service.name
        progress = None if args.no_display else display.ProgressDisplay(name)  # workers only
        try:
            entry = REGISTRY.serve(
                service, name=name, source=cell, options=options, on_progress=progress
            )
        except OSError as exc:
            msg = f"cannot serve {name!r} on {args.host}:{args.port}: {exc.strerror or exc}; pick another --port, or --port 0 for a free one"
            raise UsageError(msg) from None
        except Exception as exc:  # __init__ / on_startup failed: the user's frames, what serves now
            raise for_the_user(exc, name, REGISTRY)  # noqa: B904  # the same exception, trimmed
        finally:
            if progress is not None:
                progress.close()
        status = entry.status()
        if len(entry.versions) > 1:  # a swap: refresh this service's other outputs (%serve status)
            display.update(status, entry.display_id)
        if not args.no_display:
            display.show(status, entry.display_id)
            if not args.no_tester:
                tester_magic.show_tester(entry)

    @_magic("line", "serve")
    def serve_line(self, line: str) -> None:
        __tracebackhide__ = True
        if not line.strip():
            line = "list"
        args = line_parser().parse_argstring(line)
        try:
            self._run_command(args)
        except (UnknownServiceError, RollbackError) as exc:
            raise UsageError(str(exc)) from None

    def _run_command(self, args: argparse.Namespace) -> None:
        if args.command == "list":
            display.show(display.ServiceList([s.status() for s in REGISTRY.services().values()]))
        elif args.command == "stop":
            if args.all == (args.name is not None):
                msg = "use %serve stop NAME or %serve stop --all; running: " + (
                    ", ".join(REGISTRY.services()) or "none"
                )
                raise UsageError(msg)
            entries = REGISTRY.stop_all() if args.all else [REGISTRY.stop(args.name)]
            for entry in entries:
                entry.refresh_display()
                print(f"stopped nbserve service {entry.name!r}")
            if not entries:
                print("no nbserve services to stop")
        elif args.command == "logs":
            lines = REGISTRY.get(args.name).logs(args.n)
            print("\n".join(lines) if lines else f"(no log lines for {args.name!r} yet)")
        elif args.command == "status":
            entry = REGISTRY.get(args.name)
            status = entry.status()
            display.update(status, entry.display_id)
            display.show(status, entry.display_id)
        elif args.command == "rollback":
            entry = REGISTRY.rollback(args.name)
            entry.refresh_display()
            print(f"rolled {entry.name!r} back to version {entry.versions[-1].number}")
        elif args.command == "export":
            _export(args)
        elif args.command == "containerize":
            _containerize(args)
        elif args.command == "loadtest":
            tester_magic.run_loadtest(args, REGISTRY.get(args.name), self._shell)

    @property
    def _shell(self) -> InteractiveShell:
        return cast("InteractiveShell", self.shell)


# `%serve?` shows the line commands and the cell options, all generated from the parsers.
ServeMagics.serve_line.__doc__ = (
    _line_help()
    + "\nCell form (%%serve? for details):\n\n"
    + (ServeMagics.serve_cell.__doc__ or "")
)
