"""`nbserve models list | get | delete | export | import` and `nbserve import`, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nbserve

pytestmark = pytest.mark.slow

NBSERVE = str(Path(sys.executable).parent / "nbserve")


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NBSERVE_HOME": str(home)}
    return subprocess.run(
        [NBSERVE, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_models_commands_round_trip_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    monkeypatch.setenv("NBSERVE_HOME", str(home))
    tag = str(nbserve.models.save("weights", np.arange(4.0)).tag)

    listing = cli(home, "models", "list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[0].split() == ["TAG", "MODULE", "SIZE", "CREATED", "(UTC)"]
    assert listing.stdout.splitlines()[1].split()[:2] == [tag, "numpy"]

    got = cli(home, "models", "get", "weights:latest")
    assert got.returncode == 0, got.stderr
    assert f"version: {tag.split(':')[1]}" in got.stdout

    exported = cli(home, "models", "export", "weights", str(tmp_path))
    assert exported.returncode == 0, exported.stderr
    archive = Path(exported.stdout.strip())
    assert archive.is_file()

    imported = cli(other, "models", "import", str(archive))  # into a second, empty store
    assert (imported.returncode, imported.stdout.strip()) == (0, tag), imported.stderr

    refused = cli(home, "models", "delete", "weights")  # no terminal to confirm on
    assert refused.returncode == 1
    assert "pass -y" in refused.stderr
    deleted = cli(home, "models", "delete", "weights", "-y")
    assert (deleted.returncode, deleted.stdout.strip()) == (0, "deleted weights"), deleted.stderr
    empty = cli(home, "models", "list")
    assert empty.stdout.startswith("no models stored")

    missing = cli(home, "models", "get", "weights")
    assert missing.returncode == 1
    assert missing.stderr.startswith("nbserve models get: ")
    assert "Traceback" not in missing.stderr


def test_import_refuses_what_is_not_a_bento_in_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.bento"
    bogus.write_bytes(b"not an archive")
    for target in (str(bogus), str(tmp_path / "absent.bento")):
        result = cli(tmp_path / "home", "import", target)
        assert result.returncode == 1
        assert result.stderr.startswith("nbserve import: ")
        assert "Traceback" not in result.stderr
