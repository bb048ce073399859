"""`cmd=[...]` / `__command__` services: the command is the service's worker; nbserve proxies HTTP.

As BentoML's proxy mode (`_bentoml_impl/server/proxy.py`): when the deployment starts, the
command (from the instance's `__command__()`, else `@service(cmd=[...])`, with `$VAR`/`${VAR}`
expanded from the environment) is started, and the deployment becomes ready only when
`GET http://127.0.0.1:<proxy_port><livez>` answers 2xx (`http={"proxy_port": N}`, default
8000; `endpoints={"livez": "/path"}`, default `/health`, or `<path_prefix>/livez`, as
BentoML's) while the command runs; if the command exits first, the start fails with its exit
code. Every request nbserve does not route itself (its APIs, `/readyz`, `/livez`, `/metrics`,
`/schema.json`, ...) is forwarded to the command's port with its method, path, query, headers
and body; the body streams to the command as it arrives (counted against the server's
`max_body_size`: a JSON 413 past it) and the answer streams back. The command's output goes to
the service log.

Where nbserve differs from BentoML 1.4.39 (README, "Coming from BentoML"):

- The command is restarted when it exits while serving (BentoML leaves the proxy answering 503
  until the server restarts): the exit and its code go to the service log, requests get a JSON
  503 saying why and `/readyz` is 503 while it is down, and it is started again after a backoff
  (0.1 s, doubling, at most 10 s, as the worker pool's) and is ready again once its health
  endpoint answers. After `MAX_RESTART_FAILURES` runs in a row that exit (or answer 404) before
  becoming ready, nbserve gives up: the 503s and `/livez` then say so and why.
- One command, whatever `workers`: BentoML runs N proxy workers (default `min(16, cpus / 2)`)
  and starts the command in worker 1 only; nbserve's proxy is one async process, so N proxies
  would add nothing. `replicate_process=True` (a copy of the command per worker, all on one
  port: only commands that bind with SO_REUSEPORT survive that on one machine) is logged as
  ignored; give the command its own workers instead.

A command service always runs its instance in the server process (the command is the worker).
The command is sent SIGTERM at stop, SIGKILL 30 s later, and is not restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import tornado.iostream
import tornado.web

from nbserve._runtime.http.errors import DRAIN_LIMIT, BaseHandler, reply_too_large

if TYPE_CHECKING:
    import logging

    from nbserve._runtime.deployment import Deployment
    from nbserve._sdk.service import Service

__all__ = ["CommandProcess", "CommandProxyHandler", "has_command"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_NOT_RETURNED = _HOP_BY_HOP | {"content-length"}  # Tornado frames the streamed answer itself
STOP_GRACE_S = 30.0
_BACKOFF_S, _MAX_BACKOFF_S = 0.1, 10.0
"""Restart backoff, as the worker pool's: 0.1 s, doubling, at most 10 s."""
MAX_RESTART_FAILURES = 5
"""Consecutive restarts that exit (or answer 404) before becoming ready, then nbserve gives up."""


def has_command(service: Service[Any]) -> bool:
    """Whether `service` runs a command (BentoML's `has_custom_command`)."""
    return hasattr(service.inner, "__command__") or service.config.raw.get("cmd") is not None


class CommandProcess:
    """The command of one deployment: started, health-checked, restarted, proxied to, stopped."""

    def __init__(self, service: Service[Any], logger: logging.Logger) -> None:
        raw = service.config.raw
        self.service = service
        self.logger = logger
        self.port = int((raw.get("http") or {}).get("proxy_port", 8000))
        # BentoML's default: /health, or <path_prefix>/livez when the service has a prefix.
        prefix = service.config.path_prefix
        default_health = f"{prefix}/livez" if prefix else "/health"
        self.health_path = str((raw.get("endpoints") or {}).get("livez", default_health))
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None
        self.client: httpx.AsyncClient | None = None
        self.ready = False
        """True while the command runs and has answered its health endpoint since it started."""
        self.gave_up: str | None = None
        """Why the command is down for good (restarts exhausted); None while it runs or restarts."""
        self._cmd: list[str] = []
        self._pump: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._crash_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def down_reason(self) -> str:
        """Why requests get a 503 now (only meaningful while not `ready`)."""
        if self.gave_up is not None:
            return self.gave_up
        if self._crash_code is not None:  # kept through the restart's own start-up
            return f"the command exited with code {self._crash_code}; restarting it"
        return "the command is starting; its health endpoint has not answered yet"

    def command(self, instance: Any) -> list[str]:
        getter = getattr(instance, "__command__", None)
        if getter is not None:
            if not callable(getter):
                msg = f"{self.service.name}.__command__ must be a method returning the command as a list of strings, got {getter!r}"
                raise TypeError(msg)
            cmd = getter()
        else:
            cmd = self.service.config.raw.get("cmd")
        if isinstance(cmd, str) or not cmd or not all(isinstance(p, str) for p in cmd):
            msg = f"{self.service.name}: the command must be a non-empty list of strings, e.g. cmd=['python', '-m', 'http.server', '8000'], got {cmd!r}"
            raise TypeError(msg)
        return [os.path.expandvars(part) for part in cmd]

    async def start(self, instance: Any) -> None:
        """Start the command and wait until its health endpoint answers (or it exits).

        Once it is ready, a watcher restarts it whenever it exits, until `stop()`.
        """
        self._cmd = self.command(instance)
        self._stopping = False
        self.gave_up = None
        if self.service.config.raw.get("replicate_process"):
            # BentoML starts one copy per worker, all on the one proxy_port: on one machine only
            # a command that binds with SO_REUSEPORT survives that. nbserve runs one copy.
            self.logger.warning(
                "%s: replicate_process=True is ignored: nbserve runs one copy of the command; give the command its own workers (e.g. --workers N) for more throughput",
                self.service.name,
            )
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=None)
        try:
            await self._launch()
        except BaseException:
            await self.stop()
            raise
        self._watcher = asyncio.create_task(self._watch())

    async def _launch(self) -> None:
        """One run of the command, up to its first healthy answer; raises if it exits first."""
        cmd = self._cmd
        self.logger.info("%s: running %s", self.service.name, " ".join(cmd))
        process = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self.process = process
        self._pump = asyncio.create_task(self._log_output(process))
        assert self.client is not None
        pause = 0.02
        while True:
            if process.returncode is not None:
                await self._pump
                msg = f"{self.service.name}: the command {cmd!r} exited with code {process.returncode} before {self.base_url}{self.health_path} answered; see handle.logs() for its output"
                raise RuntimeError(msg)
            try:
                response = await self.client.get(self.health_path, timeout=5.0)
            except httpx.TransportError:
                pass
            else:
                if response.status_code == 404:
                    msg = f"{self.service.name}: the command's health endpoint {self.base_url}{self.health_path} answers 404; give the right path with @service(endpoints={{'livez': '/health'}})"
                    raise RuntimeError(msg)
                # Healthy only if it is this run that answers (not a stray one on the port).
                if response.is_success and process.returncode is None:
                    self.ready = True
                    return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _stopping_now(self) -> bool:
        # A method, not the attribute: `stop()` sets it while the watcher awaits.
        return self._stopping

    async def _watch(self) -> None:
        """Restart the command whenever it exits, as the worker pool restarts a worker."""
        failures = 0
        while not self._stopping_now():
            process = self.process
            assert process is not None
            code = await process.wait()
            self.ready = False
            self._crash_code = code
            if self._stopping_now():
                return
            with contextlib.suppress(Exception):
                if self._pump is not None:
                    await self._pump
            self.logger.warning(
                "%s: the command exited with code %s while serving; restarting it",
                self.service.name,
                code,
            )
            while not self._stopping_now():
                delay = min(_BACKOFF_S * 2**failures, _MAX_BACKOFF_S)
                await asyncio.sleep(delay)
                if self._stopping_now():
                    return
                try:
                    await self._launch()
                except Exception as exc:
                    failures += 1
                    if failures >= MAX_RESTART_FAILURES:
                        self.gave_up = f"{exc} (gave up after {failures} restarts that did not become ready; fix the command and start the service again)"
                        self.logger.error("%s: %s", self.service.name, self.gave_up)
                        return
                    self.logger.warning("%s; restarting it again", exc)
                    await self._terminate()
                    continue
                self._crash_code = None
                failures = 0  # ready again: a later crash starts its backoff from the beginning
                self.logger.info("%s: the command is ready again", self.service.name)
                break

    async def _log_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            self.logger.info("[command] %s", line.decode(errors="replace").rstrip())

    async def _terminate(self) -> None:
        """SIGTERM the current run, SIGKILL after the grace period; its exit code stays readable."""
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await self._pump
            self._pump = None

    async def stop(self) -> None:
        self._stopping = True  # first: the watcher must not take this exit for a crash
        self.ready = False
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await self._terminate()
        if self.client is not None:
            await self.client.aclose()
            self.client = None


@tornado.web.stream_request_body
class CommandProxyHandler(BaseHandler):
    """Forward a request to the command's port as it arrives and stream its answer back.

    The body goes upstream chunk by chunk through a small queue: while the command reads slower
    than the client sends, `data_received` waits, so Tornado stops reading the socket and memory
    stays flat. Bodies are counted against the server's `max_body_size` (a JSON 413 past it).
    """

    ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, deployment: Deployment, command: CommandProcess) -> None:
        self.deployment = deployment
        self.command = command
        self._body: asyncio.Queue[bytes | None] | None = None
        self._upstream: asyncio.Task[httpx.Response] | None = None
        self._received = 0
        self._too_large = False
        self._taken = False  # `_forward` owns the upstream answer (and closes it)

    def prepare(self) -> None:
        super().prepare()
        if self._finished:
            return
        connection = self.request.connection
        if connection is not None:  # the limit is ours to answer (413), not Tornado's to reset
            connection.set_max_body_size(DRAIN_LIMIT)  # type: ignore[attr-defined]
        client = self.command.client
        if client is None or not self.command.ready:
            return  # answered 503 once the body is in (answering now would reset the client)
        request = self.request
        headers = [(k, v) for k, v in request.headers.get_all() if k.lower() not in _HOP_BY_HOP]
        if self.server.token is not None:  # nbserve's token is not the command's business
            headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
        content: AsyncIterator[bytes] | None = None
        if (
            request.headers.get("Content-Length", "0") != "0"
            or "Transfer-Encoding" in request.headers
        ):
            # Content-Length passes through (httpx then sends no chunked encoding), so commands
            # that only read sized bodies (http.server) still get them.
            self._body = asyncio.Queue(maxsize=8)
            content = _drain(self._body)
        upstream = client.build_request(
            request.method or "GET",
            request.path,
            params=request.query,
            headers=headers,
            content=content,
        )
        self._upstream = asyncio.create_task(client.send(upstream, stream=True))
        self._upstream.add_done_callback(_retrieve)  # a failure nobody awaits is not an error

    async def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._too_large or self._received > self.server.max_body_size:
            if not self._too_large:  # the rest is read and dropped; the answer is a 413
                self._too_large = True
                self._abandon()
            return
        if self._body is None or self._upstream is None:
            return
        await self._send_upstream(chunk)

    async def _send_upstream(self, chunk: bytes | None) -> None:
        assert self._body is not None
        assert self._upstream is not None
        put = asyncio.ensure_future(self._body.put(chunk))
        # The command may answer (or fail) without reading the whole body: stop waiting then.
        await asyncio.wait({put, self._upstream}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()

    def _abandon(self) -> None:
        if self._upstream is not None and not self._taken:
            self._upstream.cancel()  # nothing if it has its answer already: that is closed then
            self._upstream.add_done_callback(_close_response)

    async def _forward(self) -> None:
        if self._too_large:
            reply_too_large(self, self.server.max_body_size)
            return
        if self._upstream is None:
            self.reply_error(
                503,
                f"{self.deployment.service.name} is unavailable: {self.command.down_reason}; see handle.logs()",
            )
            return
        if self._body is not None:
            await self._send_upstream(None)  # the end of the body
        self._taken = True
        try:
            response = await self._upstream
        except asyncio.CancelledError:
            return  # `_abandon`: the client went away while its body was going upstream
        except httpx.TransportError as exc:
            self.reply_error(503, f"Upstream command at {self.command.base_url} unavailable: {exc}")
            return
        try:
            self.set_status(response.status_code, response.reason_phrase or None)
            self.clear_header("Content-Type")
            for name, value in response.headers.multi_items():
                if name.lower() not in _NOT_RETURNED:
                    self.add_header(name, value)
            async for chunk in response.aiter_raw():
                self.write(chunk)
                await self.flush()
        except tornado.iostream.StreamClosedError:
            pass  # the client went away; closing the upstream answer stops the transfer
        finally:
            await response.aclose()
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._abandon()  # the client went away mid-body: stop the upstream request too

    get = head = post = put = patch = delete = options = _forward


async def _drain(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while (chunk := await queue.get()) is not None:
        yield chunk


def _retrieve(task: asyncio.Task[httpx.Response]) -> None:
    if not task.cancelled():
        task.exception()


def _close_response(task: asyncio.Task[httpx.Response]) -> None:
    """An abandoned upstream request that got its answer anyway: close it, free its connection."""
    if task.cancelled() or task.exception() is not None:
        return
    closing = asyncio.ensure_future(task.result().aclose())
    _closing.add(closing)  # held until done: the loop keeps only weak references to tasks
    closing.add_done_callback(_closing.discard)


_closing: set[asyncio.Future[None]] = set()
