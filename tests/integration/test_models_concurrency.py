"""The model store across processes: concurrent writers, and loading in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import nbserve.models as models

pytestmark = pytest.mark.slow

ROUNDS = 25

# Each writer hammers the same names: one identical model ("shared"), three contended
# versions ("rotating"), entries of its own, and files written through create(). After every
# save it reads "shared" back, so a reader would notice a half-written entry at once.
WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import numpy as np
    import nbserve.models as models

    writer, rounds, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.001)
    for i in range(rounds):
        models.save("shared", np.arange(1000), metadata={"kind": "shared"})
        models.save("rotating", np.full(1000, i % 3))
        models.save(f"own-{writer}", np.full(1000, i))
        with models.create("made") as m:
            Path(m.path_of("data.txt")).write_text(str(i % 2) * 10000)
        assert (models.get("shared").load() == np.arange(1000)).all()
    print("done")
    """
)


def test_two_concurrent_writers_never_corrupt_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("NBSERVE_HOME", str(home))
    monkeypatch.delenv("NBSERVE_MODEL_STORE", raising=False)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, name, str(ROUNDS), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    time.sleep(0.5)  # both interpreters start importing; the go file releases them together
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err
        assert out.strip() == "done"

    by_name: dict[str, list[str]] = {}
    for entry in models.list():
        by_name.setdefault(entry.name, []).append(entry.version)
        stored = models.get(f"{entry.name}:{entry.version}")  # verifies every file
        stored.verify(cached=False)
        if entry.name != "made":
            assert stored.load().shape == (1000,)
    assert len(by_name["shared"]) == 1
    assert len(by_name["rotating"]) == 3
    assert len(by_name["made"]) == 2
    for writer in ("a", "b"):
        assert len(by_name[f"own-{writer}"]) == ROUNDS
        assert models.get(f"own-{writer}").load()[0] == ROUNDS - 1  # latest is the last save
    np.testing.assert_array_equal(models.get("shared").load(), np.arange(1000))
    store = home / "models"
    assert list((store / ".tmp").iterdir()) == []  # no staging dirs or latest files left behind
    for name, versions in by_name.items():
        assert (store / name / "latest").read_text() in versions


def test_a_module_defined_in_a_notebook_loads_where_its_class_does_not_exist(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    env = {**os.environ, "NBSERVE_HOME": str(tmp_path / "home")}
    env.pop("NBSERVE_MODEL_STORE", None)
    # The class lives in __main__, as in a notebook cell; the loading process never defines it.
    save = textwrap.dedent(
        """
        import json, torch
        import nbserve.models as models

        class Doubler(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = torch.nn.Linear(3, 1)

            def forward(self, x):
                return 2 * self.linear(x)

        torch.manual_seed(0)
        net = Doubler()
        models.save("doubler", net)
        print(json.dumps(net(torch.ones(1, 3)).tolist()))
        """
    )
    load = textwrap.dedent(
        """
        import json, torch
        import nbserve.models as models

        net = models.get("doubler").load()
        print(json.dumps([type(net).__name__, net(torch.ones(1, 3)).tolist()]))
        """
    )
    run = {"env": env, "capture_output": True, "text": True, "timeout": 100, "check": True}
    expected = json.loads(subprocess.run([sys.executable, "-c", save], **run).stdout)  # type: ignore[call-overload]
    name, got = json.loads(subprocess.run([sys.executable, "-c", load], **run).stdout)  # type: ignore[call-overload]
    assert name == "Doubler"
    assert got == expected
