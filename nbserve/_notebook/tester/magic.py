"""The notebook-side glue of the tester: shown under `%%serve`, and `%serve loadtest`.

`magics.py` owns the magics and calls these, so the tester's options live next to the tester.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from nbserve._kernel import in_kernel

__all__ = ["add_loadtest_parser", "run_loadtest", "show_tester"]

_TESTERS: dict[str, Any] = {}  # service name → the tester shown under its %%serve cell


def show_tester(entry: Any) -> None:
    """The request tester under the status, in a kernel only: a terminal shell has no widgets
    (it would print the widget's text), and without anywidget there is nothing to show."""
    if not in_kernel():
        return
    try:
        from nbserve._notebook.tester import tester

        widget = tester(entry)
    except ImportError:  # the notebook extra is not installed: the status alone
        return
    # A re-run replaces the cell's outputs: the previous tester's view is gone, so close its
    # comm too rather than keep one live widget per run.
    previous = _TESTERS.pop(entry.name, None)
    if previous is not None:
        previous.close()
    _TESTERS[entry.name] = widget
    from IPython import display as ipy_display

    show: Any = ipy_display.display  # untyped in IPython
    show(widget)


def _positive(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            msg = f"invalid {what} {text!r}: use a number > 0"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def add_loadtest_parser(commands: Any) -> None:
    """`%serve loadtest`: added to the line magic's subcommands."""
    loadtest = commands.add_parser(
        "loadtest",
        help="send real HTTP load to one of NAME's routes and plot the latencies",
        description="Load-test a route from a separate process: a progress bar while it runs, then requests/s, p50/p95/p99, errors by status and plots. The bodies are the tester's example for the route unless --body is given.",
    )
    loadtest.add_argument("name", help="the service")
    loadtest.add_argument(
        "--route",
        default=None,
        help="the route, e.g. /classify (needed when the service has several)",
    )
    loadtest.add_argument(
        "--concurrency",
        type=_positive(int, "concurrency"),
        default=16,
        metavar="N",
        help="parallel clients (default: 16)",
    )
    loadtest.add_argument(
        "--duration",
        type=_positive(float, "duration"),
        default=10.0,
        metavar="SECONDS",
        help="how long to send (default: 10)",
    )
    loadtest.add_argument(
        "--requests",
        type=_positive(int, "request count"),
        default=None,
        metavar="N",
        help="stop after N requests",
    )
    loadtest.add_argument(
        "--body",
        default=None,
        metavar="JSON",
        help="the JSON body to send (a JSON list with --bodies)",
    )
    loadtest.add_argument(
        "--bodies", action="store_true", help="--body is a JSON list of bodies, sent in turn"
    )
    loadtest.add_argument(
        "--out",
        default=None,
        metavar="VAR",
        help="store the samples DataFrame (one row per request) in this variable",
    )


def run_loadtest(args: argparse.Namespace, service: Any, shell: Any) -> None:
    """`%serve loadtest NAME ...` for `service` (the registry entry of NAME)."""
    from nbserve._notebook.tester import load_test

    options: dict[str, Any] = {
        "concurrency": args.concurrency,
        "duration": args.duration,
        "requests": args.requests,
    }
    if args.body is not None:
        try:
            body = json.loads(args.body)
        except ValueError as exc:
            msg = f'--body is not valid JSON ({exc}); quote it, e.g. --body \'{{"text": "hi"}}\''
            raise UsageError(msg) from None
        if args.bodies and not isinstance(body, list):
            msg = '--bodies needs --body to be a JSON list of bodies, e.g. --body \'[{"text": "a"}, {"text": "b"}]\''
            raise UsageError(msg)
        options["bodies" if args.bodies else "body"] = body
    try:
        frame = load_test(service, args.route, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.out:
        shell.user_ns[args.out] = frame
