"""The README's Python example runs and prints exactly the output the README shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> tuple[str, str]:
    """The first ```python block under "From Python" and the plain ``` block right after it."""
    section = README.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)
    code = next(body for lang, body in blocks if lang == "python")
    output = blocks[[body for _, body in blocks].index(code) + 1][1]
    return code, output


def test_the_python_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    code, expected = _example()
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert result.stderr == ""  # nothing else printed: no log lines, no warnings
