"""`cmd=[...]` / `__command__` services: the command is the service's worker; nbserve proxies HTTP.

As BentoML's proxy mode (`_bentoml_impl/server/proxy.py`): when the deployment starts, the
command (from the instance's `__command__()`, else `@service(cmd=[...])`, with `$VAR`/`${VAR}`
expanded from the environment) is started once, and the deployment becomes ready only when
`GET http://127.0.0.1:<proxy_port><livez>` answers 2xx (`http={"proxy_port": N}`, default
8000; `endpoints={"livez": "/path"}`, default `/health`, or `<path_prefix>/livez`, as BentoML's) while the command runs; if the
command exits first, the start fails with its exit code. Every request nbserve does not route
itself (its APIs, `/readyz`, `/livez`, `/metrics`, `/schema.json`, ...) is forwarded to the
command's port with its method, path, query, headers and body, and the answer streams back.
nbserve's own `/livez` and `/readyz` answer 503 once the command has exited. The command is
sent SIGTERM at stop, SIGKILL 30 s later. Its output goes to the service log.

A command service always runs its instance in the server process (the command is the worker);
request bodies are read whole (up to the server's body limit) before being forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING, Any

import httpx
import tornado.iostream
import tornado.web

from nbserve._runtime.http.errors import BaseHandler

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
        "content-length",
    }
)
STOP_GRACE_S = 30.0


def has_command(service: Service[Any]) -> bool:
    """Whether `service` runs a command (BentoML's `has_custom_command`)."""
    return hasattr(service.inner, "__command__") or service.config.raw.get("cmd") is not None


class CommandProcess:
    """The command of one deployment: started, health-checked, proxied to, stopped."""

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
        self._pump: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

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
        """Start the command and wait until its health endpoint answers (or it exits)."""
        cmd = self.command(instance)
        self.logger.info("%s: running %s", self.service.name, " ".join(cmd))
        self.process = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._pump = asyncio.create_task(self._log_output(self.process))
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=None)
        pause = 0.02
        while True:
            if not self.alive:
                await self._pump
                msg = f"{self.service.name}: the command {cmd!r} exited with code {self.process.returncode} before {self.base_url}{self.health_path} answered; see handle.logs() for its output"
                await self.stop()
                raise RuntimeError(msg)
            try:
                response = await self.client.get(self.health_path, timeout=5.0)
            except httpx.TransportError:
                pass
            else:
                if response.status_code == 404:
                    msg = f"{self.service.name}: the command's health endpoint {self.base_url}{self.health_path} answers 404; give the right path with @service(endpoints={{'livez': '/health'}})"
                    await self.stop()
                    raise RuntimeError(msg)
                if response.is_success:
                    return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def _log_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            self.logger.info("[command] %s", line.decode(errors="replace").rstrip())

    async def stop(self) -> None:
        process, self.process = self.process, None
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
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if process is not None:
            self.process = process  # keep its exit code for the probes


class CommandProxyHandler(BaseHandler):
    """Forward a request to the command's port and stream its answer back."""

    ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, deployment: Deployment, command: CommandProcess) -> None:
        self.deployment = deployment
        self.command = command

    async def _forward(self) -> None:
        client = self.command.client
        if client is None or not self.command.alive:
            self.reply_error(
                503,
                f"{self.deployment.service.name}: its command is not running; see handle.logs()",
            )
            return
        request = self.request
        headers = {k: v for k, v in request.headers.get_all() if k.lower() not in _HOP_BY_HOP}
        if self.server.token is not None:
            headers.pop("Authorization", None)  # nbserve's token is not the command's business
        upstream = client.build_request(
            request.method or "GET",
            request.path,
            params=request.query,
            headers=headers,
            content=request.body or None,
        )
        try:
            response = await client.send(upstream, stream=True)
        except httpx.TransportError as exc:
            self.reply_error(503, f"Upstream command at {self.command.base_url} unavailable: {exc}")
            return
        try:
            self.set_status(response.status_code, response.reason_phrase or None)
            self.clear_header("Content-Type")
            for name, value in response.headers.multi_items():
                if name.lower() not in _HOP_BY_HOP:
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

    get = head = post = put = patch = delete = options = _forward
