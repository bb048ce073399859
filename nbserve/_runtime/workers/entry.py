"""A worker process's main: `python -m nbserve._runtime.workers.entry READ_FD WRITE_FD PARENT_PID`.

The server starts this module in a fresh interpreter (see `pool.py` for why not
`multiprocessing`), sends an `init` message with the service class, and then `call`s. The worker:
1. builds the instance (`__init__`, then the `on_startup` hooks) on its main thread, and answers
   `ready` or `init_failed` (with the traceback);
2. runs sync APIs in a pool of `threads` threads and async ones on its own event loop thread,
   each call answered by exactly one `result`, `error` or (streams, after `item`s) `end`;
3. on `stop`, lets running calls finish, runs `on_shutdown`, answers `stopped` and exits.

It never outlives the server: the server's end of the command pipe closes when the server
process dies (EOF here), `PR_SET_PDEATHSIG` makes Linux send SIGKILL then, and a watchdog
notices a changed parent pid elsewhere. SIGINT is ignored: Jupyter's "interrupt kernel" and a
terminal's Ctrl-C signal the whole process group, and stopping workers is the server's call,
after it has drained them. stdout and stderr are a pipe the server turns into log lines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import faulthandler
import gc
import inspect
import io
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from nbserve._runtime.workers.transport import (
    ApiInfo,
    CallMsg,
    InitMsg,
    read_message,
    write_message,
)

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl (unusual libc): the watchdog still works
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="nbserve-parent-watch", daemon=True).start()


class Worker:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.reader = io.BufferedReader(io.FileIO(rfd, "r"), 1 << 16)
        self.wfd = wfd
        self.inline = False
        """Run sync calls on the reading thread (see `start`)."""
        self.lock = threading.Lock()
        self.instance: Any = None
        self.apis: dict[str, ApiInfo] = {}
        self.state: dict[str, Any] = {}
        """`ctx.state` for every request this process serves."""
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.running: dict[int, concurrent.futures.Future[Any] | asyncio.Task[None] | None] = {}
        """Calls not yet answered: a pool future, a loop task, or None while being scheduled."""
        self.cancelled: set[int] = set()
        self.idle = threading.Condition()

    # --- plumbing ------------------------------------------------------------------------------
    def send(self, message: Any) -> None:
        with contextlib.suppress(
            BrokenPipeError
        ):  # the server is gone; the main thread sees EOF and exits
            write_message(self.wfd, message, self.lock)

    def event_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="nbserve-worker-loop", daemon=True
            ).start()
            self.loop = loop
        return self.loop

    def run_maybe_async(self, fn: Any) -> Any:
        """Call `fn()` here; if it is (or returns) a coroutine, run that on the worker's loop."""
        result = fn()
        if inspect.isawaitable(result):
            return asyncio.run_coroutine_threadsafe(_awaited(result), self.event_loop()).result()
        return result

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self, init: InitMsg) -> bool:
        from nbserve._runtime.workers.shipping import unpack_service
        from nbserve._sdk.current import set_current_service

        for entry in reversed(
            init["sys_path"]
        ):  # the server's import path, for classes sent by name
            if entry not in sys.path:
                sys.path.insert(0, entry)
        self.apis = init["apis"]
        self.shutdown_hooks = init["shutdown"]
        self.send({"kind": "loading"})  # start progress for the notebook (pool._start_progress)
        try:
            inner = unpack_service(init["service"])
            self.instance = self.run_maybe_async(inner)
            set_current_service(self.instance)  # nbserve.get_current_service() in this worker
            for name in init["startup"]:
                self.run_maybe_async(getattr(self.instance, name))
        except BaseException as exc:
            self.send(
                {
                    "kind": "init_failed",
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                }
            )
            return False
        self.pool = concurrent.futures.ThreadPoolExecutor(
            init["threads"], thread_name_prefix="nbserve-api"
        )
        # With one thread per worker, sync calls run one after another anyway, so the reading
        # thread runs them itself and saves a thread hand-off per call; the next call waits in
        # the pipe meanwhile (a cancel for it is then read too late to withdraw it: it runs,
        # and its answer is dropped). Not when an async API or a stream would wait behind it.
        self.inline = init["threads"] == 1 and not any(
            info["is_async"] or info["is_stream"]
            for name, info in self.apis.items()
            if not name.startswith("__")
        )
        # The model and everything __init__ loaded live as long as the process: keep them out of
        # the collector's full passes, which otherwise rescan them every few seconds under load
        # (30 ms pauses with a small numpy model here, measured; more with a torch model).
        gc.freeze()
        self.send({"kind": "ready", "pid": os.getpid()})
        return True

    def stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.idle:
            while self.running and time.monotonic() < deadline:
                self.idle.wait(deadline - time.monotonic())
        for name in self.shutdown_hooks:
            try:
                self.run_maybe_async(getattr(self.instance, name))
            except Exception:
                logging.getLogger("nbserve.worker").exception("on_shutdown hook %s failed", name)
        self.send({"kind": "stopped"})

    # --- calls ---------------------------------------------------------------------------------
    def call(self, msg: CallMsg) -> None:
        info = self.apis[msg["api"]]
        call_id = msg["id"]
        if self.inline and not info["is_async"]:
            self.call_sync(msg, info)
            return
        with self.idle:
            self.running[call_id] = None
        if info["is_async"]:
            self.event_loop().call_soon_threadsafe(self.start_task, msg, info)
            return
        assert self.pool is not None
        future = self.pool.submit(self.call_sync, msg, info)
        with self.idle:
            if call_id in self.running:
                self.running[call_id] = future
        future.add_done_callback(lambda f: self.finished(call_id, f.cancelled()))

    def start_task(self, msg: CallMsg, info: ApiInfo) -> None:
        """On the worker's loop: run an async API as a task the server can cancel."""
        call_id = msg["id"]
        task = asyncio.get_running_loop().create_task(self.call_async(msg, info))
        with self.idle:
            self.running[call_id] = task
            if call_id in self.cancelled:
                task.cancel()
        task.add_done_callback(lambda t: self.finished(call_id, t.cancelled()))

    def finished(self, call_id: int, cancelled: bool) -> None:
        if cancelled:  # withdrawn before its code ran: it still owes the server an answer
            self.send_error(call_id, asyncio.CancelledError("cancelled before it started"))
        with self.idle:
            self.running.pop(call_id, None)
            self.cancelled.discard(call_id)
            self.idle.notify_all()

    def cancel(self, call_id: int) -> None:
        with self.idle:
            if call_id not in self.running:
                return  # already answered
            self.cancelled.add(call_id)
            handle = self.running[call_id]
        if isinstance(handle, asyncio.Task):
            self.event_loop().call_soon_threadsafe(handle.cancel)
        elif handle is not None:
            handle.cancel()  # withdraws a sync call still queued for a thread; a running one finishes

    def bind(self, msg: CallMsg, info: ApiInfo) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """The call's context (with this process's `state`), positional and keyword arguments.

        Positionals travel as `__args__`: a root input (positional-only, `ProcessExecutor.call`)
        and the server's `__metrics__(text)`."""
        ctx = msg["ctx"]
        if ctx is not None:
            ctx.state = self.state
        kwargs = msg["kwargs"]
        if info["ctx_param"] is not None:
            kwargs[info["ctx_param"]] = ctx
        return ctx, kwargs.pop("__args__", ()), kwargs

    def call_sync(self, msg: CallMsg, info: ApiInfo) -> None:
        from nbserve._sdk.context import current_context

        call_id = msg["id"]
        ctx, args, kwargs = self.bind(msg, info)
        token = current_context.set(ctx)
        try:
            fn = getattr(self.instance, info["attr"])
            if info["is_stream"]:
                generator = fn(*args, **kwargs)
                response = _response(ctx, info)  # with the first item: it leads the HTTP reply
                try:
                    for item in generator:
                        if call_id in self.cancelled:
                            break
                        self.send(
                            {"kind": "item", "id": call_id, "value": item, "response": response}
                        )
                        response = None
                finally:
                    generator.close()
                self.send({"kind": "end", "id": call_id, "response": _response(ctx, info)})
            else:
                value = fn(*args, **kwargs)
                self.send_result(call_id, value, _response(ctx, info))
        except BaseException as exc:
            self.send_error(call_id, exc)
        finally:
            current_context.reset(token)

    async def call_async(self, msg: CallMsg, info: ApiInfo) -> None:
        from nbserve._sdk.context import current_context

        call_id = msg["id"]
        ctx, args, kwargs = self.bind(msg, info)
        current_context.set(ctx)  # the task's own context copy
        try:
            fn = getattr(self.instance, info["attr"])
            if info["is_stream"]:
                response = _response(ctx, info)  # with the first item: it leads the HTTP reply
                async for item in fn(*args, **kwargs):
                    self.send({"kind": "item", "id": call_id, "value": item, "response": response})
                    response = None
                self.send({"kind": "end", "id": call_id, "response": _response(ctx, info)})
            else:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):  # hooks may be plain functions, run here on the loop
                    value = await value
                self.send_result(call_id, value, _response(ctx, info))
        except BaseException as exc:  # CancelledError too: the server waits for an answer
            self.send_error(call_id, exc)

    def send_result(self, call_id: int, value: Any, response: Any) -> None:
        try:
            self.send({"kind": "result", "id": call_id, "value": value, "response": response})
        except Exception as exc:
            msg = f"the API returned a {type(value).__name__}, which cannot be sent from the worker process ({exc}); return plain data, arrays or dataclasses"
            self.send_error(call_id, TypeError(msg))

    def send_error(self, call_id: int, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        message = f"{type(exc).__name__}: {exc}"
        try:
            self.send(
                {"kind": "error", "id": call_id, "error": exc, "message": message, "traceback": tb}
            )
        except Exception:  # the exception itself does not pickle; its text does
            self.send(
                {"kind": "error", "id": call_id, "error": None, "message": message, "traceback": tb}
            )

    # --- main loop -----------------------------------------------------------------------------
    def serve(self) -> int:
        """Run until told to stop (exit status 0), or the server goes away (1), or init fails (3)."""
        init = read_message(self.reader)
        if init is None:
            return 1
        if not self.start(init):
            return 3
        while True:
            msg = read_message(self.reader)
            if msg is None:  # the server closed the pipe or died
                return 1
            kind = msg["kind"]
            if kind == "call":
                self.call(msg)
            elif kind == "cancel":
                self.cancel(msg["id"])
            elif kind == "stop":
                self.stop(msg["timeout"])
                return 0


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _response(ctx: Any, info: ApiInfo) -> Any:
    return ctx.response if ctx is not None and info["ctx_param"] is not None else None


def main(argv: list[str]) -> None:
    rfd, wfd, parent = int(argv[1]), int(argv[2]), int(argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    faulthandler.enable()  # a segfault's Python stack goes to the log before the exit code does
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    status = 1
    try:
        status = Worker(rfd, wfd).serve()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # running API threads cannot be joined; nothing else needs tearing down


if __name__ == "__main__":
    main(sys.argv)
