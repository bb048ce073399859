"""The Services panel in a real JupyterLab, in Debian's Chromium (the shared harness, harness.py).

A user's path through it: JupyterLab opens with nbserve's server extension and the prebuilt
labextension; a notebook serves a service (its status shows the proxy URL); the left-sidebar
Services panel lists it with its routes; "Docs & tester" opens the service's docs page in a
main-area tab through the proxy, and a request sent from that page answers; "Stop" (after the
confirmation dialog) stops it, the panel empties, and the notebook's status output says stopped.
Along the way the page is photographed: with NBSERVE_UPDATE_SCREENSHOTS=1 into the README's
docs/images/services-panel.png, otherwise into the test's temp folder (so a test run leaves the
checkout clean).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from harness import JupyterLab, LabPage

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "nbserve" / "labextension"
SCREENSHOT = REPO / "docs" / "images" / "services-panel.png"

SERVE = """\
%%serve
import nbserve

@nbserve.service
class Echo:
    \"\"\"Shouts back.\"\"\"

    @nbserve.api
    def shout(self, text: str) -> str:
        return text.upper()

    @nbserve.api
    def count(self, text: str) -> int:
        return len(text)
"""


def _notebook(root: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell("%load_ext nbserve"), nbformat.v4.new_code_cell(SERVE)]
    nbformat.write(nb, root / "serve.ipynb")


def _lab_with_nbserve(lab_factory: Callable[..., JupyterLab], tmp_path: Path) -> JupyterLab:
    """A lab that finds this checkout's prebuilt labextension (JUPYTER_PATH) and enables the
    server extension, as `pip install jupyter-nbserve` would, without touching the venv."""
    if not (BUILT / "package.json").exists():
        pytest.fail(
            "nbserve/labextension/ is not built; run scripts/setup (it builds labextension/)"
        )
    data = tmp_path / "jupyter-data"
    (data / "labextensions" / "@nbserve").mkdir(parents=True)
    (data / "labextensions" / "@nbserve" / "labextension").symlink_to(BUILT)
    root = tmp_path / "root"
    root.mkdir()
    _notebook(root)
    path = os.pathsep.join(p for p in (str(data), os.environ.get("JUPYTER_PATH", "")) if p)
    return lab_factory(
        root_dir=root,
        config={"ServerApp": {"jpserver_extensions": {"nbserve._jupyter": True}}},
        env={"JUPYTER_PATH": path, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.timeout(480)  # a lab, a kernel and a browser on two shared cores
def test_the_services_panel_lists_opens_and_stops_a_notebook_s_service(
    lab_factory: Callable[..., JupyterLab],
    lab_page_for: Callable[[JupyterLab], LabPage],
    tmp_path: Path,
) -> None:
    lab = _lab_with_nbserve(lab_factory, tmp_path)
    ui = lab_page_for(lab)
    page = ui.page
    ui.open("serve.ipynb")
    ui.run_all()
    # With the extension active, the notebook shows the proxy URL under the server's base_url.
    status = ui.wait_for_output("nbserve/services/Echo/", timeout=60)
    assert "running" in status.inner_text()

    # The panel: its tab in the left sidebar, then the service with its routes.
    page.locator(".jp-SideBar .lm-TabBar-tab[data-id='nbserve-services']").click()
    panel = page.locator("#nbserve-services")
    item = panel.locator(".jp-nbserve-service[data-name='Echo']")
    item.wait_for(state="visible", timeout=30_000)
    routes = item.locator("tr.jp-nbserve-route")
    assert [routes.nth(i).get_attribute("data-route") for i in range(routes.count())] == [
        "/shout",
        "/count",
    ]
    assert item.locator(".jp-nbserve-state").inner_text() == "running"
    assert "serve.ipynb" in item.locator(".jp-nbserve-owner").inner_text()
    status_bar = page.locator(".jp-nbserve-status")
    assert status_bar.inner_text() == "nbserve: 1 service"

    # Docs & tester: a main-area tab showing the service's page through the proxy.
    item.locator("button[data-action='docs']").click()
    frame = page.frame_locator(".jp-nbserve-page:not(.lm-mod-hidden) iframe")
    shout = frame.locator("details.api[data-api='shout']")
    shout.wait_for(state="attached", timeout=30_000)
    shout.evaluate("d => { d.open = true; }")
    shout.locator("textarea").fill('{"text": "hello from the panel"}')
    shout.locator(".btn-primary").click()
    result = shout.locator(".result pre")
    result.wait_for(state="visible", timeout=30_000)
    assert "HELLO FROM THE PANEL" in result.inner_text()
    assert shout.locator(".result .pill[data-status]").inner_text().startswith("200")

    # The request shows up in the panel's numbers on its next refresh.
    page.wait_for_function(
        "() => document.querySelector(\"#nbserve-services tr[data-route='/shout'] td:nth-child(2)\")"
        "?.textContent === '1'",
        timeout=30_000,
    )
    shot = SCREENSHOT if os.environ.get("NBSERVE_UPDATE_SCREENSHOTS") else tmp_path / "panel.png"
    assert (
        ui.screenshot(shot).stat().st_size > 10_000
    )  # the README's picture: the panel beside the docs tab it opened

    # Stop, confirmed in JupyterLab's dialog: the service goes, from the panel and the notebook.
    item.locator("button[data-action='stop']").click()
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    item.wait_for(state="detached", timeout=60_000)
    assert "No services running" in panel.locator(".jp-nbserve-message").inner_text()
    page.locator(
        ".jp-NotebookPanel .lm-TabBar-tab, .lm-DockPanel-tabBar .lm-TabBar-tab",
        has_text="serve.ipynb",
    ).first.click()
    ui.wait_for_output("stopped", timeout=30)
    assert status_bar.inner_text() == "nbserve: 0 services"
    assert not [e for e in ui.errors if "nbserve" in e], ui.errors
