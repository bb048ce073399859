"""The request tester, dashboard and load test in a real JupyterLab, in Chromium.

JupyterLab opens `examples/04-try-and-load-test.ipynb` (a copy, in a temp root dir) and runs
every cell but the final `stop_all()`. Then, as a user: the tester's form is filled and sent
(JSON answer, a stream, a validation error shown next to its field), a Send while another
cell is running is answered before that cell ends, the history re-sends, the dashboard shows
the requests the load tests made, and the load test's plot is on the page.

`NBSERVE_SCREENSHOTS=<dir>` also saves `tester.png` and `dashboard.png` there (the README's
pictures come from this test: `NBSERVE_SCREENSHOTS=docs/images`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from harness import JupyterLab, LabPage

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "04-try-and-load-test.ipynb"


@pytest.mark.timeout(600)
def test_try_watch_and_load_test_in_jupyterlab(
    lab_factory: Callable[..., JupyterLab],
    lab_page_for: Callable[[JupyterLab], LabPage],
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(REPO / "examples" / NOTEBOOK, root / NOTEBOOK)
    cells = nbformat.read(root / NOTEBOOK, as_version=4).cells
    last = len(cells) - 1
    assert "stop_all" in cells[last].source
    lab = lab_factory(root_dir=root, env={"NBSERVE_HOME": str(tmp_path / "home")})
    lab_page = lab_page_for(lab)
    page = lab_page.page
    lab_page.open(NOTEBOOK)
    lab_page.run_all_above(last)

    tester = page.locator(".nbs-tester[data-view=tester]").first
    tester.wait_for(state="visible", timeout=30_000)
    tabs = tester.locator(".nbs-tab")
    assert tabs.all_inner_texts() == ["classify", "scores", "explain", "Dashboard"]

    # JSON in, JSON out: the form, Send, the answer with status, latency and size.
    classify = tester.locator("[data-api=classify]")
    assert classify.locator("input[name=text]").input_value() == "string"  # the example
    classify.locator("input[name=text]").fill("I love this notebook")
    classify.locator(".nbs-send").click()
    status = classify.locator(".nbs-answer [data-status]")
    status.wait_for(timeout=30_000)
    assert status.inner_text() == "200 OK"
    body = classify.locator(".nbs-answer pre")
    assert json.loads(body.inner_text()) == {"label": "positive", "score": 1}
    assert classify.locator(".nbs-latency").inner_text().endswith(("ms", "s"))
    # The same request as curl, with the kernel-side URL.
    classify.locator(".nbs-code summary").click()
    assert "I love this notebook" in classify.locator(".nbs-curl").inner_text()
    assert "client.classify(text=" in classify.locator(".nbs-python").inner_text()

    # A list input edited as JSON; an invalid value comes back as a 400 next to its field.
    tabs.filter(has_text="scores").click()
    scores = tester.locator("[data-api=scores]")
    scores.locator("textarea[name=texts]").fill('["good", "bad", 3]')
    scores.locator(".nbs-send").click()
    # The status pill comes with the head; the field error only once the body is done.
    scores.locator(".nbs-answer .nbs-latency").wait_for(timeout=30_000)
    assert scores.locator(".nbs-answer [data-status]").inner_text() == "400 Bad Request"
    assert scores.locator("[data-field=texts] .nbs-field-error").inner_text() != ""
    scores.locator("textarea[name=texts]").fill('["good", "bad"]')
    scores.locator(".nbs-send").click()
    page.wait_for_function(
        "() => document.querySelector('[data-api=scores] .nbs-answer [data-status]')?.textContent === '200 OK'",
        timeout=30_000,
    )
    assert json.loads(scores.locator(".nbs-answer pre").inner_text()) == [1, -1]

    # A stream grows chunk by chunk.
    tabs.filter(has_text="explain").click()
    explain = tester.locator("[data-api=explain]")
    explain.locator("input[name=text]").fill("a good day")
    explain.locator(".nbs-send").click()
    page.wait_for_function(
        "() => document.querySelector('[data-api=explain] .nbs-latency') !== null",
        timeout=30_000,
    )
    assert explain.locator(".nbs-stream").inner_text() == "a· good+ day· "
    assert explain.locator(".nbs-chunks").inner_text() == "3 chunks"

    # A Send while a cell is running is answered at once: JupyterLab sends comm messages on a
    # kernel subshell (ipykernel 7), and the bridge does not need the busy main thread.
    page.evaluate(
        """() => {
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            window.__sleeping = true;
            kernel.requestExecute({code: "import time; time.sleep(20)"}).done
                .then(() => { window.__sleeping = false; });
        }"""
    )
    page.wait_for_function(
        "() => document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'busy'"
    )
    tabs.filter(has_text="classify").click()
    classify.locator("input[name=text]").fill("what an awful day")
    classify.locator(".nbs-send").click()
    page.wait_for_function(
        "() => document.querySelector('[data-api=classify] .nbs-answer pre')?.textContent.includes('negative')",
        timeout=15_000,
    )
    assert page.evaluate("() => window.__sleeping") is True, "answered only after the cell ended"
    page.wait_for_function("() => window.__sleeping === false", timeout=30_000)

    # The history lists them, newest first, and re-sends.
    tester.locator(".nbs-history-box summary").click()
    rows = tester.locator(".nbs-history-row")
    assert rows.count() >= 5
    assert rows.first.locator("code").inner_text() == "/classify"
    rows.nth(1).locator(".nbs-resend").click()  # the stream again, into its own tab
    page.wait_for_function(
        "() => document.querySelectorAll('.nbs-tester[data-view=tester] .nbs-history-row').length >= 6",
        timeout=30_000,
    )
    assert tester.locator(".nbs-history-row").first.locator("code").inner_text() == "/explain"

    # The dashboard counts what the load tests sent.
    dashboard = page.locator(".nbs-tester[data-view=dashboard]").first
    dashboard.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => Number(document.querySelector('.nbs-tester[data-view=dashboard] [data-metric=requests]')?.textContent) > 10",
        timeout=30_000,
    )
    assert dashboard.locator("[data-route='/classify']").count() == 1
    assert dashboard.locator(".nbs-batch[data-api=scores] .nbs-bar-row").count() >= 1

    # The load test's report and its plot (an SVG output, kept in the saved notebook).
    report = lab_page.wait_for_output("nbserve load test")
    assert "requests/s" in report.inner_text()
    plot = lab_page.wait_for_output("css=.jp-RenderedSVG")
    assert plot.bounding_box() is not None
    assert plot.bounding_box()["width"] > 300  # type: ignore[index]

    assert [e for e in lab_page.errors if "nbs" in e or "tester" in e] == []

    shots = os.environ.get("NBSERVE_SCREENSHOTS")
    if shots:
        tabs.filter(has_text="classify").click()
        classify.locator(".nbs-code summary").click()  # closed again: a compact picture
        tester.locator(".nbs-history-box summary").click()
        tester.scroll_into_view_if_needed()
        lab_page.screenshot(Path(shots) / "tester.png", tester)
        lab_page.screenshot(Path(shots) / "dashboard.png", dashboard)


UPLOADS = """\
%%serve
from pathlib import Path

import nbserve
from PIL.Image import Image, Transpose


@nbserve.service
class Files:
    @nbserve.api
    def count(self, f: Path, note: str = "hi") -> dict[str, object]:
        return {"note": note, "bytes": len(f.read_bytes()), "name": f.suffix}

    @nbserve.api
    def mirror(self, img: Image) -> Image:
        return img.transpose(Transpose.FLIP_LEFT_RIGHT)
"""


@pytest.mark.timeout(600)
def test_files_and_images_cross_the_comm_as_buffers(
    lab_factory: Callable[..., JupyterLab],
    lab_page_for: Callable[[JupyterLab], LabPage],
    tmp_path: Path,
) -> None:
    """A file picked in the page reaches the service; an image answer is shown as an image."""
    import io

    from PIL import Image

    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell("%load_ext nbserve"), nbformat.v4.new_code_cell(UPLOADS)]
    nbformat.write(nb, root / "files.ipynb")
    png = io.BytesIO()
    Image.new("RGB", (3, 2), (200, 10, 10)).save(png, format="PNG")
    lab = lab_factory(root_dir=root, env={"NBSERVE_HOME": str(tmp_path / "home")})
    lab_page = lab_page_for(lab)
    page = lab_page.page
    lab_page.open("files.ipynb")
    lab_page.run_all()
    tester = page.locator(".nbs-tester[data-view=tester]").first
    tester.wait_for(state="visible", timeout=30_000)

    count = tester.locator("[data-api=count]")
    count.locator("input[name=f]").set_input_files(
        files=[{"name": "data.csv", "mimeType": "text/csv", "buffer": b"a,b\n1,2\n" * 1000}]
    )
    count.locator("input[name=note]").fill("from the browser")
    count.locator(".nbs-send").click()
    count.locator(".nbs-answer pre").wait_for(timeout=30_000)
    assert json.loads(count.locator(".nbs-answer pre").inner_text()) == {
        "note": "from the browser",
        "bytes": 8000,
        "name": ".csv",
    }
    assert "-F 'f=@data.csv'" in (count.locator(".nbs-curl").text_content() or "")

    tester.locator(".nbs-tab", has_text="mirror").click()
    mirror = tester.locator("[data-api=mirror]")
    mirror.locator("input[name=img]").set_input_files(
        files=[{"name": "red.png", "mimeType": "image/png", "buffer": png.getvalue()}]
    )
    mirror.locator(".nbs-send").click()
    page.wait_for_function(
        "() => document.querySelector('[data-api=mirror] .nbs-answer img')?.naturalWidth === 3",
        timeout=30_000,
    )
    assert mirror.locator(".nbs-answer [data-status]").inner_text() == "200 OK"
