"""A real JupyterLab driven by Debian's Chromium through Playwright: the harness of the UI tests.

Shared by every browser test of a JupyterLab feature (the request-tester widget, the Services
panel of the lab extension). Nothing here knows about nbserve; it starts a Jupyter server the
way a user does and clicks the page the way a user does.

API
---
`JupyterLab(root_dir, *, args=(), config=None, env=None, startup_timeout=90)`
    A context manager that runs `jupyter lab --no-browser` on 127.0.0.1 (a free port, read back
    from the server's own `jpserver-<pid>.json`), with a random token and `root_dir` as its
    root. Config, data, runtime, settings and workspace directories are private temp folders,
    so no user state leaks in and nothing is left behind; labextensions and kernelspecs
    installed in the environment (`sys.prefix`) are found as usual.
    - `args`: extra command-line arguments, e.g. `["--ServerApp.jpserver_extensions={'x': True}"]`.
    - `config`: a `jupyter_server_config.json`-shaped dict written to the private config dir,
      e.g. `{"ServerApp": {"jpserver_extensions": {"nbserve._jupyter": True}}}`.
    - `env`: extra environment variables for the server and its kernels.
    Attributes: `url` (`http://127.0.0.1:PORT/`, base_url included), `token`, `root_dir`,
    `log` (the server's stdout+stderr so far, for failure messages).
    Methods: `lab_url(path="")` (a `/lab/tree/<path>` URL with the token, workspace reset),
    `api(path)` (GET a `/api/...` JSON document with the token).

`launch_chromium(playwright)` → `Browser`: Debian's `chromium` with the flags this machine needs
    (no sandbox as root, no GPU, no background networking or component updates); nothing is
    downloaded.

`LabPage(page, lab)`: page helpers that work across JupyterLab 4.x.
    - `open(path)`: open a notebook (or any file) and wait for its kernel to be idle.
    - `execute(command_id, args)`: run a JupyterLab command by id (`window.jupyterapp`, the
      lab runs with `expose_app_in_browser`), e.g. `execute("notebook:restart-kernel")`.
    - `run_all()`: run every cell, then `wait_until_executed()`.
    - `run_all_above(index)`: run every cell above cell `index` (e.g. all but a final
      cleanup cell), then wait for those cells.
    - `select_cell(index)`: make a cell the active one (every cell type counted).
    - `menu("Run", "Run All Cells")`: click through the menu bar, as a user would.
    - `wait_until_executed(timeout, upto=None)`: every code cell (above `upto`) has run
      (`[n]:` prompts, kernel idle).
    - `cell_output(index)`: the Locator of code-cell `index`'s outputs (one element each).
    - `wait_for_output(text_or_selector, timeout)`: wait for text (or a CSS selector) to appear
      in any output area; returns its Locator.
    - `command(label)`: run a command by its label through the command palette.
    - `screenshot(path, locator=None)`: a PNG of the page (or of one element).
    - `errors`: uncaught page errors and console errors seen so far.

Fixtures (tests/ui/conftest.py): `chromium` (a browser per session), `lab_factory` (start a lab
with your own args/config), `lab_page` (a fresh page whose screenshot and server log are saved
under `$NBSERVE_UI_ARTIFACTS` (default `ui-artifacts/` at the repository root) when the test
fails).

Example::

    def test_my_panel(lab_factory, lab_page_for):
        lab = lab_factory(root_dir=tmp_path, config={"ServerApp": {...}})
        page = lab_page_for(lab)
        page.open("demo.ipynb")
        page.run_all()
        page.wait_for_output("running")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Playwright

__all__ = ["CHROMIUM", "JupyterLab", "LabPage", "launch_chromium"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI and these machines run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright: Playwright, *, headless: bool = True) -> Browser:
    """Debian's Chromium under Playwright (browsers cannot be downloaded here)."""
    if CHROMIUM is None:
        msg = "no chromium executable on PATH: apt-get install -y chromium"
        raise RuntimeError(msg)
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=headless, args=CHROMIUM_ARGS
    )


class JupyterLab:
    """`jupyter lab --no-browser` on a free loopback port with a token (see the module doc)."""

    def __init__(
        self,
        root_dir: Path,
        *,
        args: list[str] | tuple[str, ...] = (),
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 90,
    ) -> None:
        self.root_dir = Path(root_dir)
        self.token = secrets.token_hex(16)
        self.args = list(args)
        self.config = config or {}
        self.extra_env = env or {}
        self.startup_timeout = startup_timeout
        self.url = ""
        self._home = Path(tempfile.mkdtemp(prefix="nbserve-lab-"))
        self._log_path = self._home / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> JupyterLab:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _environ(self) -> dict[str, str]:
        dirs = {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "JUPYTERLAB_SETTINGS_DIR": "settings",
            "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
            "IPYTHONDIR": "ipython",
        }
        env = dict(os.environ)
        for var, sub in dirs.items():
            (self._home / sub).mkdir(exist_ok=True)
            env[var] = str(self._home / sub)
        # The browser, not a proxy, reaches the server; a hub prefix would mislead kernels.
        for var in ("JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_API_TOKEN", "JUPYTER_TOKEN"):
            env.pop(var, None)
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # debugpy's frozen-modules note on stderr
        env.update(self.extra_env)
        return env

    def _user_settings(self) -> None:
        """No news or update pop-ups over the page (they would cover what a test clicks), and
        every cell of a notebook in the DOM (no windowing), so cells can be found by index."""
        settings = self._home / "settings" / "@jupyterlab"
        files = {
            "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
            "notebook-extension/tracker": {"windowingMode": "none"},
        }
        for name, values in files.items():
            path = settings / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    def start(self) -> None:
        self._user_settings()
        if self.config:
            (self._home / "config").mkdir(exist_ok=True)
            (self._home / "config" / "jupyter_server_config.json").write_text(
                json.dumps(self.config)
            )
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ip=127.0.0.1", "--port=0", "--port-retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.disable_check_xsrf=False",
            # No calls home: this machine has no network beyond the package registries.
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=",
            "--LabApp.extension_manager=readonly",
            # window.jupyterapp: commands run by id, not by clicking menus (deterministic)
            "--LabApp.expose_app_in_browser=True",
            *(["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
            *self.args,
        ]  # fmt: skip
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.root_dir,
                env=self._environ(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its kernels go with it when it is killed
            )
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        """The server writes `jpserver-<pid>.json` (with the port it bound) once it listens."""
        assert self._proc is not None
        info = self._home / "runtime" / f"jpserver-{self._proc.pid}.json"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                msg = f"jupyter lab exited with {self._proc.returncode}:\n{self.log[-4000:]}"
                raise RuntimeError(msg)
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(info.read_text())
                url = str(data["url"])
                url = url if url.endswith("/") else url + "/"
                with contextlib.suppress(OSError):
                    self.api("api/status", base=url)
                    return url
            time.sleep(0.2)
        msg = f"jupyter lab did not start within {self.startup_timeout:.0f} s:\n{self.log[-4000:]}"
        raise TimeoutError(msg)

    def stop(self) -> None:
        """Shut the server down (kernels included) and remove its private folders."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # jupyter_server shuts its kernels down on SIGTERM
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc is not None:
            # Kernels live in the server's session; any left over go now.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self._home, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------
    @property
    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def lab_url(self, path: str = "") -> str:
        """The JupyterLab page for `path` (relative to the root dir), token included."""
        tree = f"lab/tree/{path}" if path else "lab"
        return f"{self.url}{tree}?reset&token={self.token}"

    def api(self, path: str, *, base: str | None = None) -> Any:
        """GET `{url}{path}` with the token; the decoded JSON."""
        request = urllib.request.Request(
            (base or self.url) + path.lstrip("/"),
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


class LabPage:
    """Helpers over a Playwright `Page` showing a `JupyterLab` (see the module doc)."""

    def __init__(self, page: Page, lab: JupyterLab) -> None:
        self.page = page
        self.lab = lab
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )

    def open(self, path: str, *, timeout: float = 90) -> None:
        """Open `path` in JupyterLab; for a notebook, wait until its kernel is idle."""
        self.page.goto(self.lab.lab_url(path), timeout=timeout * 1000)
        self.page.wait_for_selector("#jp-main-dock-panel", timeout=timeout * 1000)
        if path.endswith(".ipynb"):
            self.page.wait_for_selector(
                ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell",
                timeout=timeout * 1000,
            )
            self._settle_kernel(timeout)

    def _settle_kernel(self, timeout: float) -> None:
        """Accept JupyterLab's "Select Kernel" dialog if it asks (it may, even when the
        notebook names its kernel), until the kernel is idle and no dialog is up."""
        dialog = self.page.locator(".jp-Dialog")
        idle = self.page.locator(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"
        )
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if dialog.count() and dialog.first.is_visible():
                quiet_since = None
                accept = dialog.first.locator(".jp-Dialog-button.jp-mod-accept")
                if "Select Kernel" in dialog.first.inner_text() and accept.count():
                    accept.first.click()
            elif idle.count():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.5:  # the dialog can come a moment later
                    return
            self.page.wait_for_timeout(200)
        msg = f"the notebook's kernel was not idle within {timeout:.0f} s"
        raise TimeoutError(msg)

    def wait_for_kernel_idle(self, timeout: float = 90) -> None:
        """The notebook's toolbar shows the kernel idle (it started and is not busy)."""
        self.page.wait_for_selector(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']",
            timeout=timeout * 1000,
        )

    def menu(self, *labels: str) -> None:
        """Click through the menu bar: `menu("Run", "Run All Cells")`."""
        first, *rest = labels
        self.page.locator(
            ".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(first)}$")
        ).click()
        for label in rest:
            self.page.locator(
                ".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$")
            ).first.click()

    def command(self, label: str) -> None:
        """Run a command through the palette (Ctrl+Shift+C), by its exact label."""
        self.page.keyboard.press("Control+Shift+C")
        box = self.page.locator(".lm-CommandPalette-input")
        box.fill(label)
        self.page.locator(
            ".lm-CommandPalette-itemLabel", has_text=re.compile(f"^{re.escape(label)}$")
        ).first.click()

    def execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Run a JupyterLab command by id (`notebook:run-all-cells`) through `window.jupyterapp`
        (the lab runs with `expose_app_in_browser`): no menu to click, so no flaky click."""
        return self.page.evaluate(
            "([id, args]) => window.jupyterapp.commands.execute(id, args)", [command, args or {}]
        )

    def run_all(self, *, timeout: float = 180) -> None:
        """Run every cell, then wait until every code cell has run."""
        self.execute("notebook:run-all-cells")
        self.wait_until_executed(timeout=timeout)

    def select_cell(self, index: int) -> None:
        """Make the `index`-th cell (0-based, every cell type counted) the active one."""
        self.page.evaluate(
            "(i) => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = i; }", index
        )

    def run_all_above(self, index: int, *, timeout: float = 180) -> None:
        """Run every cell above cell `index` (e.g. all but a final cleanup cell), then wait
        until each code cell among them has run."""
        self.select_cell(index)
        self.execute("notebook:run-all-above")
        self.wait_until_executed(timeout=timeout, upto=index)

    def _notebook(self) -> Locator:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first

    def wait_until_executed(self, *, timeout: float = 180, upto: int | None = None) -> None:
        """Every code cell (above cell `upto`, if given) shows an execution count (`[n]:`), none
        is queued or running (`[*]:`), and the kernel is idle again."""
        script = """([root, upto]) => {
            const cells = [...root.querySelectorAll('.jp-Cell')].slice(0, upto ?? undefined);
            const prompts = cells.filter(c => c.classList.contains('jp-CodeCell'))
                .map(c => c.querySelector('.jp-InputPrompt'));
            // A queued or running cell shows [*] (all queued ones at once): none may be left,
            // since a stored count ([3]:) looks like a finished cell.
            const queued = [...root.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                .some(p => p.textContent.includes('[*]'));
            return !queued && prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }"""
        deadline = time.monotonic() + timeout
        handle = self._notebook().element_handle()
        while not self.page.evaluate(script, [handle, upto]):
            if time.monotonic() > deadline:
                msg = f"not every cell ran within {timeout:.0f} s"
                raise TimeoutError(msg)
            self.page.wait_for_timeout(250)
        self.wait_for_kernel_idle(max(1.0, deadline - time.monotonic()))

    def cell_output(self, index: int) -> Locator:
        """The outputs of the `index`-th code cell (0-based, markdown cells not counted), one
        element per output, prompts left out: `cell_output(1).all_inner_texts() == ["42"]`."""
        cell = self._notebook().locator(".jp-CodeCell").nth(index)
        return cell.locator(".jp-OutputArea-output")

    def wait_for_output(self, what: str, *, timeout: float = 60) -> Locator:
        """Wait until an output area shows `what`: a CSS selector if it starts with `css=`,
        else text; returns the first match's Locator."""
        outputs = self._notebook().locator(".jp-OutputArea-output")
        if what.startswith("css="):
            target = self._notebook().locator(f".jp-OutputArea {what[4:]}").first
        else:
            target = outputs.filter(has_text=what).first
        target.wait_for(state="visible", timeout=timeout * 1000)
        return target

    def screenshot(self, path: Path, locator: Locator | None = None) -> Path:
        """A PNG of the whole page, or of `locator`'s element only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if locator is None:
            self.page.screenshot(path=str(path), full_page=True)
        else:
            locator.screenshot(path=str(path))
        return path
