"""`nbserve serve TARGET`: serve a service from a shell until Ctrl-C or SIGTERM.

```
nbserve serve service.py:Echo --port 3000     a file and the service in it
nbserve serve my_package.service:Echo          a module (imported from the current directory)
nbserve serve service.py                       the file's only service
nbserve serve iris-<version>.bento             a bento archive or its directory
```
The server runs on the main thread. Once the service has started, ONE line goes to stderr:
`nbserve: serving Echo at http://127.0.0.1:3000 (routes: /shout)`, naming the address actually
bound (`http://0.0.0.0:3000` with `--host 0.0.0.0`) and, with `--port 0`, the port picked. Logs
are one line per event (`serve_logs.py`): text or `--log-format json`, on stderr or, with
`NBSERVE_LOGS=stdout` as in the image, stdout (warnings and errors; `-v` adds lifecycle lines,
`-vv` an access line per request). SIGINT / SIGTERM stop it gracefully: the port closes at once,
in-flight requests finish (up to `--timeout-graceful`, by default the service's
`traffic.timeout`, the longest a request may run anyway), `on_shutdown` runs, and the exit status
is 0; a service that fails to start exits with 1.

Math libraries (OpenMP, MKL, OpenBLAS) size their thread pools from the host's cores; in a
container with a CPU limit that oversubscribes the quota, so their thread counts default to the
CPUs this process may use (`nbserve._runtime.execution.cpus`), unless already set.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from nbserve._cli.serve_logs import LogSetup, configure

if TYPE_CHECKING:
    from nbserve._sdk.service import Service

__all__ = ["TargetError", "load_target", "register", "run"]

_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


class TargetError(Exception):
    """TARGET does not name a service; the message says what was found and what to pass."""


def register(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="serve a service over HTTP",
        description="Serve a service over HTTP until Ctrl-C or SIGTERM.",
        epilog="examples:\n  nbserve serve service.py:Echo --port 3000\n  nbserve serve my_package.service:Echo\n  nbserve serve iris.bento",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        metavar="TARGET",
        help="FILE.py[:SERVICE], MODULE[:SERVICE] or a .bento; SERVICE may be left out when there is only one",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to bind (default: $NBSERVE_HOST, else $BENTOML_HOST, else 127.0.0.1; 0.0.0.0 for all interfaces)",
    )
    parser.add_argument(
        "-p",
        "--port",
        type=int,
        default=_default_port(),
        help="port to bind, 0 for any free one (default: 3000, or $PORT / $BENTOML_PORT)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: the service's `workers` option, else run in this process)",
    )
    parser.add_argument(
        "--timeout-graceful",
        type=float,
        default=None,
        metavar="SECONDS",
        help="on stop, how long in-flight requests may take to finish (default: the service's traffic.timeout)",
    )
    parser.add_argument(
        "--max-body-size",
        type=int,
        default=100 * 2**20,
        metavar="BYTES",
        help="larger request bodies get a 413 (default: 104857600, 100 MiB)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="open connections allowed; more get a 503 (default: from the file-descriptor limit)",
    )
    for flag, default, what in (
        ("--idle-timeout", 75.0, "a keep-alive connection may wait for its next request"),
        ("--header-timeout", 30.0, "a request's headers may take to arrive"),
        ("--body-timeout", 30.0, "a body may go below 1 KiB/s, or a client leave a reply unread"),
    ):
        parser.add_argument(
            flag,
            type=float,
            default=default,
            metavar="SECONDS",
            help=f"seconds {what} before the connection is closed (default: {default:g})",
        )
    parser.add_argument(
        "--token",
        default=os.environ.get("NBSERVE_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' (default: $NBSERVE_TOKEN, else none)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="a 500's body names the exception's type and message (never the traceback); off by default, so clients learn nothing about the code",
    )
    parser.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a value the service reads with nbserve.use_arguments() (repeat for more)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("NBSERVE_LOG_FORMAT") or "text",
        help="one line per event, as text or JSON (default: $NBSERVE_LOG_FORMAT, else text)",
    )
    parser.add_argument(
        "--logs",
        choices=("stderr", "stdout"),
        default=os.environ.get("NBSERVE_LOGS") or "stderr",
        help="where logs go (default: $NBSERVE_LOGS, else stderr; the image sets stdout)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: lifecycle logs, -vv: one access line per request",
    )
    parser.set_defaults(handler=run)
    return parser


def _default_port() -> int:
    for name in ("PORT", "BENTOML_PORT"):
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 3000


def run(args: argparse.Namespace) -> int:
    logs = configure(args.verbose, args.log_format, args.logs)
    _size_math_threads()
    if args.host is None:
        args.host = _host_from_env(logs)
    from nbserve._sdk.arguments import parse_arguments, set_arguments
    from nbserve._sdk.importing import mark_serving
    from nbserve.exceptions import InvalidArgument

    mark_serving()  # `with nbserve.importing():` must not skip what this service needs
    try:
        if args.arg:  # before the import: the service module reads them at import time
            set_arguments(parse_arguments(args.arg))
        service = load_target(args.target)
    except (TargetError, InvalidArgument) as exc:
        print(f"nbserve serve: error: {exc}", file=sys.stderr)
        return 2
    graceful = (
        args.timeout_graceful if args.timeout_graceful is not None else service.config.timeout
    )

    from nbserve._runtime.http.connections import ConnectionLimits
    from nbserve._runtime.server import Server

    workers = args.workers if args.workers is not None else service.config.worker_count
    try:
        server = Server(
            service,
            host=args.host,
            port=args.port,
            workers=workers,
            token=args.token,
            max_body_size=args.max_body_size,
            debug=args.debug,
            limits=ConnectionLimits(
                idle_timeout=args.idle_timeout,
                header_timeout=args.header_timeout,
                body_timeout=args.body_timeout,
                max_connections=args.max_connections,
            ),
        )
    except (OSError, ValueError) as exc:
        logs.event(
            "error",
            f"nbserve serve: error: cannot serve on {args.host}:{args.port}: {exc}",
            event="bind_failed",
        )
        return 1
    failed: list[BaseException] = []

    def started(error: BaseException | None) -> None:
        if error is None:
            routes = ", ".join(server.routes) or "none"
            logs.event(
                "info",
                f"nbserve: serving {service.name} at {address} (routes: {routes})",
                event="serving",
                service=service.name,
                address=address,
                routes=server.routes,
            )
            return
        failed.append(error)
        logs.event(
            "error",
            f"nbserve serve: error: {service.name} failed to start: {type(error).__name__}: {error}",
            event="start_failed",
            service=service.name,
        )
        server.request_stop(graceful)

    address = _bound_url(server.host, server.port, server.deployment.prefix)
    server.run(
        stop_signals=(signal.SIGINT, signal.SIGTERM),
        graceful_timeout=graceful,
        on_started=started,
    )
    return 1 if failed else 0


def _host_from_env(logs: LogSetup) -> str:
    """$NBSERVE_HOST (the image sets it), else $BENTOML_HOST (BentoML's), else 127.0.0.1; said at
    start-up when the environment chose, since binding every interface must never be silent."""
    for name in ("NBSERVE_HOST", "BENTOML_HOST"):
        host = os.environ.get(name)
        if host:
            scope = "every interface" if host in ("0.0.0.0", "::") else "that address"
            logs.event(
                "warning",
                f"nbserve: binding {host} ({scope}) because {name}={host!r} is set in the environment; pass --host 127.0.0.1 to stay local",
                event="host_from_environment",
                host=host,
            )
            return host
    return "127.0.0.1"


def _bound_url(host: str, port: int, prefix: str) -> str:
    """The address the socket is bound to, as given (`0.0.0.0` stays `0.0.0.0`)."""
    shown = f"[{host}]" if ":" in host else host or "0.0.0.0"
    return f"http://{shown}:{port}{prefix}"


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _size_math_threads() -> None:
    """Before the service imports numpy/torch: their pools sized to the CPU limit, not the host."""
    from nbserve._runtime.execution.cpus import available_cpus

    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return  # the user chose
    cpus = str(available_cpus())
    for name in THREAD_VARIABLES:
        os.environ[name] = cpus


# --- finding the service --------------------------------------------------------------------------
def load_target(target: str) -> Service[Any]:
    """The service TARGET names: `file.py[:Name]`, `module[:Name]`, or a bento."""
    from nbserve._bento.loader import is_bento, load_bento_service

    if is_bento(target):
        return load_bento_service(target)
    reference, attribute = _split(target)
    if reference.endswith(".py") or os.sep in reference or "/" in reference:
        module = _import_file(Path(reference))
    else:
        module = _import_module(reference)
    return _pick(module, attribute, reference)


def _split(target: str) -> tuple[str, str]:
    start = 2 if _DRIVE.match(target) else 0  # C:\path\service.py:Echo
    reference, sep, attribute = target[start:].rpartition(":")
    if not sep:
        return target, ""
    return target[:start] + reference, attribute


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        msg = f"no such file: {path}; pass path/to/service.py:ClassName or module:ClassName"
        raise TargetError(msg)
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)  # the file's sibling modules import as they do when run there
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot import {path} as Python source"
        raise TargetError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # importable by name: worker processes and pickling find it
    spec.loader.exec_module(module)
    return module


def _import_module(name: str) -> ModuleType:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name and not name.startswith(f"{exc.name}."):
            raise  # the module exists; something it imports does not
        msg = f"no module named {name!r} (looked in the current directory and sys.path); pass path/to/file.py:ClassName or an importable module:ClassName"
        raise TargetError(msg) from None


def _pick(module: ModuleType, attribute: str, reference: str) -> Service[Any]:
    from nbserve._sdk.service import Service

    if attribute:
        value: Any = module
        for part in attribute.split("."):
            value = getattr(value, part, None)
            if value is None:
                found = _services(module)
                hint = (
                    f"; it defines {', '.join(found)}"
                    if found
                    else "; it defines no @nbserve.service class"
                )
                msg = f"{reference} has no {attribute!r}{hint}"
                raise TargetError(msg)
        if not isinstance(value, Service):
            msg = (
                f"{reference}:{attribute} is {value!r}, not a class decorated with @nbserve.service"
            )
            raise TargetError(msg)
        return value
    found = _services(module)
    if len(found) == 1:
        service: Service[Any] = getattr(module, found[0])
        return service
    if not found:
        msg = f"{reference} defines no @nbserve.service class; decorate one, or name it as {reference}:ClassName"
        raise TargetError(msg)
    msg = f"{reference} defines several services ({', '.join(found)}); pick one, e.g. {reference}:{found[0]}"
    raise TargetError(msg)


def _services(module: ModuleType) -> list[str]:
    """Names of the services defined in `module` (not those it merely imports)."""
    from nbserve._sdk.service import Service

    names = []
    for name, value in vars(module).items():
        if (
            isinstance(value, Service)
            and getattr(value.inner, "__module__", None) == module.__name__
        ):
            names.append(name)
    return names
