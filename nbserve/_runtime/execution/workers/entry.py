"""A worker process's main: `python -m nbserve._runtime.execution.workers.entry READ_FD WRITE_FD PARENT_PID`.

The server starts this module in a fresh interpreter (see `pool.py` for why not
`multiprocessing`), sends an `init` message with the service class, and then `call`s. The worker:
1. builds the instance (`__init__`, then the `on_startup` hooks) on its main thread, and answers
   `ready` or `init_failed` (with the traceback);
2. runs sync APIs in a pool of `threads` threads and async ones on its own event loop thread,
   calling them through `invoke.py` exactly as the inline executor does; each call is answered
   by exactly one `result`, `error` or (streams, after `item`s) `end`;
3. sends a stream's items only as far as the server's credit allows (`transport.WINDOW` ahead of
   what the server has handed to its client; `credit` messages grant more), so a slow HTTP
   reader slows the generator instead of filling the server's memory;
4. on `cancel`, abandons the call: one still queued for a thread is withdrawn, an async one is
   cancelled, a stream stops before its next item; a sync call already running cannot be
   interrupted and runs to its end. The answer says which (`ErrorMsg.abandoned`);
5. on `stop`, lets running calls finish, runs `on_shutdown`, answers `stopped` and exits.

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
from collections.abc import Callable
from typing import Any

from nbserve._runtime.execution.invoke import (
    END,
    Signature,
    SyncSteps,
    call_async,
    call_sync,
    captured,
)
from nbserve._runtime.execution.workers.flow import StreamWindow
from nbserve._runtime.execution.workers.transport import (
    WINDOW,
    Abandoned,
    CallMsg,
    EndMsg,
    ErrorMsg,
    InitFailedMsg,
    InitMsg,
    ItemMsg,
    ReadyMsg,
    ResultMsg,
    StoppedMsg,
    ToServer,
    read_message,
    write_message,
)
from nbserve._sdk.context import Context, ResponseContext, current_context

__all__ = ["Worker", "main"]

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
        self.calls: dict[str, tuple[Signature, Callable[..., Any]]] = {}
        """Per API (and probe) name: how it is called and the instance's bound method."""
        self.shutdown_hooks: list[str] = []
        self.state: dict[str, Any] = {}
        """`ctx.state` for every request this process serves."""
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.running: dict[int, _Running] = {}
        """Calls not yet answered (guarded by `idle`)."""
        self.idle = threading.Condition()

    # --- plumbing ------------------------------------------------------------------------------
    def send(self, message: ToServer) -> None:
        with contextlib.suppress(BrokenPipeError):  # the server is gone: the main thread sees EOF
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
        from nbserve._runtime.execution.workers.shipping import unpack_service
        from nbserve._sdk.current import set_current_service

        for entry in reversed(init["sys_path"]):  # the server's path, for classes sent by name
            if entry not in sys.path:
                sys.path.insert(0, entry)
        self.shutdown_hooks = init["shutdown"]
        self.send({"kind": "loading"})  # start progress for the notebook (pool._start_progress)
        try:
            inner = unpack_service(init["service"])
            self.instance = self.run_maybe_async(inner)
            set_current_service(self.instance)  # nbserve.get_current_service() in this worker
            for name in init["startup"]:
                self.run_maybe_async(getattr(self.instance, name))
            self.calls = {
                name: (sig, getattr(self.instance, sig.attr)) for name, sig in init["apis"].items()
            }
        except BaseException as exc:
            self.send(
                InitFailedMsg(
                    kind="init_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(),
                )
            )
            return False
        self.pool = concurrent.futures.ThreadPoolExecutor(
            init["threads"], thread_name_prefix="nbserve-api"
        )
        # With one thread per worker, sync calls run one after another anyway, so the reading
        # thread runs them itself and saves a thread hand-off per call; the next call waits in
        # the pipe meanwhile (a cancel for it is then read too late to withdraw it: it runs,
        # and its answer is dropped). Not when an async API or a stream would wait behind it,
        # nor read its stream credit.
        self.inline = init["threads"] == 1 and not any(
            sig.is_async or sig.is_stream
            for name, (sig, _) in self.calls.items()
            if not name.startswith("__")
        )
        # The model and everything __init__ loaded live as long as the process: keep them out of
        # the collector's full passes, which otherwise rescan them every few seconds under load
        # (30 ms pauses with a small numpy model here, measured; more with a torch model).
        gc.freeze()
        self.send(ReadyMsg(kind="ready", pid=os.getpid()))
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
        self.send(StoppedMsg(kind="stopped"))

    # --- calls ---------------------------------------------------------------------------------
    def call(self, msg: CallMsg) -> None:
        sig, fn = self.calls[msg["api"]]
        call_id = msg["id"]
        running = _Running(StreamWindow(WINDOW) if sig.is_stream else None)
        if self.inline and not sig.is_async:
            self.call_sync(msg, sig, fn, running)
            return
        with self.idle:
            self.running[call_id] = running
        if sig.is_async:
            self.event_loop().call_soon_threadsafe(self.start_task, msg, sig, fn, running)
            return
        assert self.pool is not None
        self.attach(call_id, running, self.pool.submit(self.call_sync, msg, sig, fn, running))

    def start_task(
        self, msg: CallMsg, sig: Signature, fn: Callable[..., Any], running: _Running
    ) -> None:
        """On the worker's loop: run an async API as a task the server can cancel."""
        task = asyncio.get_running_loop().create_task(self.call_async(msg, sig, fn, running))
        self.attach(msg["id"], running, task)

    def attach(
        self,
        call_id: int,
        running: _Running,
        handle: concurrent.futures.Future[None] | asyncio.Task[None],
    ) -> None:
        """Record where a call runs, so a `cancel` can reach it; one that came first applies now."""
        with self.idle:
            running.handle = handle
            cancelled = running.cancelled
        if cancelled:
            handle.cancel()
        handle.add_done_callback(lambda h: self.finished(call_id, h.cancelled()))

    def finished(self, call_id: int, withdrawn: bool) -> None:
        if withdrawn:  # cancelled before its code ran: it still owes the server an answer
            self.send_error(call_id, asyncio.CancelledError("withdrawn"), "withdrawn")
        with self.idle:
            self.running.pop(call_id, None)
            self.idle.notify_all()

    def cancel(self, call_id: int) -> None:
        """The server gave up on the call: withdraw it, cancel it, or stop its stream."""
        with self.idle:
            running = self.running.get(call_id)
            if running is None:
                return  # already answered
            running.cancelled = True
            handle = running.handle
        if running.window is not None:
            running.window.close()  # a sync generator waiting for credit stops there
        if isinstance(handle, asyncio.Task):
            self.event_loop().call_soon_threadsafe(handle.cancel)
        elif handle is not None:
            handle.cancel()  # withdraws a sync call still queued for a thread; a running one finishes

    def credit(self, call_id: int, count: int) -> None:
        with self.idle:
            running = self.running.get(call_id)
        if running is not None and running.window is not None:
            running.window.grant(count)

    def bind(
        self, msg: CallMsg, sig: Signature
    ) -> tuple[Context | None, tuple[Any, ...], dict[str, Any]]:
        """The call's context (with this process's `state`), positional and keyword arguments."""
        ctx = msg["ctx"]
        if ctx is not None:
            ctx.state = self.state
        args, kwargs = sig.bind(msg["kwargs"], ctx)
        return ctx, args, kwargs

    def call_sync(
        self, msg: CallMsg, sig: Signature, fn: Callable[..., Any], running: _Running
    ) -> None:
        call_id = msg["id"]
        try:
            ctx, args, kwargs = self.bind(msg, sig)
            if not sig.is_stream:
                value = call_sync(fn, args, kwargs, ctx)
                self.send_result(call_id, value, _response(ctx, sig))
                return
            assert running.window is not None
            steps = SyncSteps(call_sync(fn, args, kwargs, ctx), ctx)
            response = _response(ctx, sig)  # with the first item: it leads the HTTP reply
            try:
                while running.window.take():  # False once the server cancelled the stream
                    item = steps.step()
                    if item is END:
                        break
                    self.send(ItemMsg(kind="item", id=call_id, value=item, response=response))
                    response = None
            finally:
                steps.close()
            if running.cancelled:
                self.send_error(call_id, asyncio.CancelledError("stream abandoned"), "cancelled")
            else:
                self.send(EndMsg(kind="end", id=call_id, response=_response(ctx, sig)))
        except BaseException as exc:
            self.send_error(call_id, exc, "cancelled" if running.cancelled else None)

    async def call_async(
        self, msg: CallMsg, sig: Signature, fn: Callable[..., Any], running: _Running
    ) -> None:
        call_id = msg["id"]
        try:
            ctx, args, kwargs = self.bind(msg, sig)
            if not sig.is_stream:
                value = await call_async(fn, args, kwargs, ctx)
                self.send_result(call_id, value, _response(ctx, sig))
                return
            assert running.window is not None
            current_context.set(ctx)  # the task's own context copy: the generator runs in it
            response = _response(ctx, sig)  # with the first item: it leads the HTTP reply
            items = fn(*args, **kwargs)
            try:
                while True:
                    if not await running.window.take_async():  # the server cancelled it
                        raise asyncio.CancelledError
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        break
                    self.send(ItemMsg(kind="item", id=call_id, value=item, response=response))
                    response = None
            finally:
                await items.aclose()
            self.send(EndMsg(kind="end", id=call_id, response=_response(ctx, sig)))
        except BaseException as exc:  # CancelledError too: the server waits for an answer
            self.send_error(call_id, exc, "cancelled" if running.cancelled else None)

    def send_result(self, call_id: int, value: Any, response: Any) -> None:
        try:
            self.send(ResultMsg(kind="result", id=call_id, value=value, response=response))
        except Exception as exc:
            msg = f"the API returned a {type(value).__name__}, which cannot be sent from the worker process ({exc}); return plain data, arrays or dataclasses"
            self.send_error(call_id, TypeError(msg))

    def send_error(
        self, call_id: int, exc: BaseException, abandoned: Abandoned | None = None
    ) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        message = f"{type(exc).__name__}: {exc}"
        error: BaseException | None = captured(exc)
        try:
            self.send(ErrorMsg(kind="error", id=call_id, error=error, message=message, traceback=tb, abandoned=abandoned))  # fmt: skip
        except Exception:  # the exception itself does not pickle; its text does
            error = None
            self.send(ErrorMsg(kind="error", id=call_id, error=error, message=message, traceback=tb, abandoned=abandoned))  # fmt: skip

    # --- main loop -----------------------------------------------------------------------------
    def serve(self) -> int:
        """Run until told to stop (exit status 0), or the server goes away (1), or init fails (3)."""
        init = read_message(self.reader)
        if init is None:
            return 1
        if init["kind"] != "init" or not self.start(init):
            return 3
        while True:
            msg = read_message(self.reader)
            if msg is None:  # the server closed the pipe or died
                return 1
            if msg["kind"] == "call":
                self.call(msg)
            elif msg["kind"] == "credit":
                self.credit(msg["id"], msg["count"])
            elif msg["kind"] == "cancel":
                self.cancel(msg["id"])
            elif msg["kind"] == "stop":
                self.stop(msg["timeout"])
                return 0


class _Running:
    """A call the worker has not answered yet."""

    __slots__ = ("cancelled", "handle", "window")

    def __init__(self, window: StreamWindow | None) -> None:
        self.handle: concurrent.futures.Future[None] | asyncio.Task[None] | None = None
        """The pool future or loop task running it; None while it is being scheduled."""
        self.cancelled = False
        """The server sent `cancel`: its answer will be dropped."""
        self.window = window
        """For streams: the items it may still send before the server grants more."""


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _response(ctx: Context | None, sig: Signature) -> ResponseContext | None:
    return ctx.response if ctx is not None and sig.ctx_param is not None else None


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
