"""Fixtures of the browser tests: a Chromium per session, JupyterLabs and pages per test.

A failing test leaves its evidence under `$NBSERVE_UI_ARTIFACTS` (default `ui-artifacts/` at
the repository root; CI uploads it): `<test>.png` (the whole page) and `<test>.server.log`
(the Jupyter server's output), plus the page's errors in the failure report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import CHROMIUM, JupyterLab, LabPage, launch_chromium

ROOT = Path(__file__).resolve().parents[2]

# Everything here needs a browser and a Jupyter server: slow, and skipped without Chromium
# except in CI (scripts/setup installs it there, so a missing browser fails loudly).
_needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs Chromium: apt-get install -y chromium",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.slow)
            item.add_marker(_needs_browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


def artifacts_dir() -> Path:
    return Path(os.environ.get("NBSERVE_UI_ARTIFACTS", ROOT / "ui-artifacts"))


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser per test module, closed when it ends: Playwright's sync API
    keeps an asyncio loop marked running on the main thread while it is open, which would make
    every later `asyncio.run()` of the session fail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[Callable[..., JupyterLab]]:
    """`lab_factory(root_dir=None, args=(), config=None, env=None)` starts a JupyterLab that is
    stopped after the test; root_dir defaults to a fresh folder under tmp_path."""
    labs: list[JupyterLab] = []

    def start(root_dir: Path | None = None, **options: Any) -> JupyterLab:
        root = root_dir or tmp_path / f"lab{len(labs)}"
        root.mkdir(parents=True, exist_ok=True)
        lab = JupyterLab(root, **options)
        labs.append(lab)
        lab.start()
        return lab

    try:
        yield start
    finally:
        for lab in labs:
            lab.stop()


@pytest.fixture
def lab_page_for(
    chromium: Any, request: pytest.FixtureRequest
) -> Iterator[Callable[[JupyterLab], LabPage]]:
    """`lab_page_for(lab)`: a fresh browser page on `lab`; on failure its screenshot and the
    server log are saved as artifacts."""
    opened: list[tuple[Any, LabPage]] = []

    def open_page(lab: JupyterLab) -> LabPage:
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        page = LabPage(context.new_page(), lab)
        opened.append((context, page))
        return page

    try:
        yield open_page
    finally:
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        for i, (context, page) in enumerate(opened):
            if _failed(request):
                out = artifacts_dir()
                suffix = f"-{i}" if i else ""
                try:
                    page.screenshot(out / f"{name}{suffix}.png")
                except Exception as exc:  # the page may be gone; the log still helps
                    page.errors.append(f"(no screenshot: {exc})")
                (out / f"{name}{suffix}.server.log").write_text(page.lab.log)
                (out / f"{name}{suffix}.page-errors.txt").write_text("\n".join(page.errors))
            context.close()
