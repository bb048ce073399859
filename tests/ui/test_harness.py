"""The harness itself: a real JupyterLab runs a notebook in Chromium and shows its outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from harness import JupyterLab, LabPage


@pytest.mark.timeout(300)  # a lab and a kernel start: slow on a busy machine
def test_lab_runs_a_notebook_and_shows_its_outputs(
    lab_factory: Callable[..., JupyterLab],
    lab_page_for: Callable[[JupyterLab], LabPage],
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A title"),
        nbformat.v4.new_code_cell("print('hello ' + 'lab')"),
        nbformat.v4.new_code_cell("6 * 7"),
    ]
    nbformat.write(nb, root / "a.ipynb")
    lab = lab_factory(root_dir=root)
    assert lab.api("api/status")["kernels"] == 0
    page = lab_page_for(lab)
    page.open("a.ipynb")
    page.run_all()
    assert page.wait_for_output("hello lab").inner_text().strip() == "hello lab"
    assert [t.strip() for t in page.cell_output(1).all_inner_texts()] == ["42"]
    shot = page.screenshot(tmp_path / "page.png")
    assert shot.read_bytes().startswith(b"\x89PNG")
