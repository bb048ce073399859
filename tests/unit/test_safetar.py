"""Archives are checked before they are written (`_bento/safetar.py`, read by `archive.extract`
and `model_archive.import_model`): decompression bombs, undeclared members, content that does
not match its version and a `service:` outside the bento are refused having written next to
nothing, and nothing is left behind."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
import zstandard

from nbserve import models
from nbserve._bento import archive, loader
from nbserve._bento.archive import PLACEHOLDER, ArchiveError, Entry
from nbserve.exceptions import InvalidArgument, NbserveError

GIB = 1 << 30
SERVICE = b"import nbserve\n\n@nbserve.service\nclass Svc:\n    @nbserve.api\n    def f(self) -> int:\n        return 1\n"


class Zeros:
    """A file of `size` zero bytes that is never held in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def _zstd_tar(path: Path, members: list[tuple[str, bytes | int]]) -> Path:
    """A zstd tar: bytes members as given, int members as that many zeros (compressed ~30000:1)."""
    with (
        open(path, "wb") as raw,
        zstandard.ZstdCompressor(level=3).stream_writer(raw) as packed,
        tarfile.open(fileobj=packed, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, int):
                info.size = content
                tar.addfile(info, Zeros(content))  # type: ignore[arg-type]
            else:
                info.size = len(content)
                tar.addfile(info, Zeros(0) if not content else _Bytes(content))  # type: ignore[arg-type]
    return path


class _Bytes(Zeros):
    def __init__(self, data: bytes) -> None:
        super().__init__(0)
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out


def _written() -> int:
    """Bytes this process has passed to write() so far (files, pipes, all of it)."""
    return int(psutil.Process().io_counters().write_chars)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NBSERVE_MODEL_STORE", raising=False)


@pytest.fixture(scope="module")
def bento_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    yaml_text = yaml.safe_dump(
        {"name": "bomb", "version": "aaaaaaaaaaaaaaaa", "service": "service:Svc"}
    )
    return _zstd_tar(
        tmp_path_factory.mktemp("bomb") / "bomb.bento",
        [("bento.yaml", yaml_text.encode()), ("models/big.bin", GIB), ("src/service.py", SERVICE)],
    )


def _left_in(home: Path) -> list[str]:
    return sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())


def test_a_bento_bomb_with_a_wrong_version_is_refused_having_written_nothing(
    bento_bomb: Path, tmp_path: Path
) -> None:
    assert bento_bomb.stat().st_size < 1 << 20  # a few hundred KB at most, unpacking to 1 GiB
    home = tmp_path / "cache"
    before = _written()
    with pytest.raises(ArchiveError, match="does not match its version"):
        # The ratio check is off: the content hash alone must catch it, in a pass that writes nothing.
        archive.extract(bento_bomb, home=home, max_ratio=1e12)
    assert _written() - before < 32 << 20
    assert not home.exists() or _left_in(home) == []


def test_a_bento_bomb_is_refused_by_its_ratio_before_its_bytes_are_read(
    bento_bomb: Path, tmp_path: Path
) -> None:
    home = tmp_path / "cache"
    before = _written()
    with pytest.raises(ArchiveError, match="compression ratio over 200"):
        archive.extract(bento_bomb, home=home)
    assert _written() - before < 1 << 20
    assert not home.exists()


def test_a_bento_over_the_size_budget_is_refused(bento_bomb: Path, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="max_total_size"):
        archive.extract(bento_bomb, home=tmp_path / "cache", max_total_size=GIB // 2)


def _valid_bento(path: Path, service: str) -> Path:
    """A bento whose content hash is right, naming `service` in its bento.yaml."""
    info = {"name": "evil", "version": PLACEHOLDER, "service": service}
    files = {
        "bento.yaml": Entry(yaml.safe_dump(info).encode()),
        "src/service.py": Entry(SERVICE),
    }
    version = archive.content_version(files)
    return archive.write_archive(archive.with_version(files, version), path)


def test_a_service_outside_the_bento_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    outside = tmp_path / "tmp" / "x"
    outside.mkdir(parents=True)
    (outside / "evil.py").write_text("raise SystemExit('imported code from outside the bento')\n")
    bad = _valid_bento(tmp_path / "evil.bento", "..tmp.x.evil:Svc")
    home = tmp_path / "cache"
    with pytest.raises(ArchiveError, match="service"):
        archive.extract(bad, home=home)
    assert not home.exists()
    with pytest.raises(ArchiveError, match="service"):
        loader.load_bento_service(bad, home=home)
    assert not home.exists()


def test_a_service_naming_a_module_the_bento_lacks_is_refused(tmp_path: Path) -> None:
    bad = _valid_bento(tmp_path / "lacking.bento", "other:Svc")
    with pytest.raises(ArchiveError, match=r"src/other\.py"):
        archive.extract(bad, home=tmp_path / "cache")


def test_an_extracted_bento_naming_an_outside_service_is_not_imported(tmp_path: Path) -> None:
    """A bento directory (a container image, served in place) gets the same check."""
    good = _valid_bento(tmp_path / "good.bento", "service:Svc")
    directory = archive.extract(good, home=tmp_path / "cache")
    info = yaml.safe_load((directory / "bento.yaml").read_text())
    info["service"] = "..tmp.x.evil:Svc"
    (directory / "bento.yaml").write_text(yaml.safe_dump(info))
    with pytest.raises(NbserveError, match="service"):
        loader.load_bento_service(directory)


def test_a_good_zstd_bento_is_extracted(tmp_path: Path) -> None:
    """Reading stays tolerant of how the archive is compressed: a zstd tar opens too."""
    info = {"name": "fine", "version": PLACEHOLDER, "service": "service:Svc"}
    files = {"bento.yaml": Entry(yaml.safe_dump(info).encode()), "src/service.py": Entry(SERVICE)}
    version = archive.content_version(files)
    final = archive.with_version(files, version)
    path = _zstd_tar(
        tmp_path / "fine.bento",
        [(name, entry.data) for name, entry in sorted(final.items())],  # type: ignore[misc]
    )
    directory = archive.extract(path, home=tmp_path / "cache")
    assert (directory / "src/service.py").read_bytes() == SERVICE


def test_a_model_bomb_with_an_undeclared_member_is_refused_having_written_nothing(
    tmp_path: Path,
) -> None:
    saved = models.save("small", np.arange(4))
    model_yaml = Path(saved.path_of("model.yaml")).read_bytes()
    declared = {rel: Path(saved.path_of(rel)).read_bytes() for rel in saved.info.files}
    models.delete("small")
    bomb = _zstd_tar(
        tmp_path / "bomb.nbmodel",
        [("model.yaml", model_yaml), *declared.items(), ("weights.bin", GIB)],
    )
    assert bomb.stat().st_size < 1 << 20
    store = tmp_path / "home" / "models"
    before = _written()
    with pytest.raises(InvalidArgument, match=r"'weights\.bin' is not declared"):
        models.import_model(bomb)
    assert _written() - before < 32 << 20
    assert models.list() == []
    assert not (store / ".tmp").exists() or list((store / ".tmp").iterdir()) == []


def test_a_model_archive_without_model_yaml_first_is_still_checked_before_writing(
    tmp_path: Path,
) -> None:
    saved = models.save("small", np.arange(4))
    model_yaml = Path(saved.path_of("model.yaml")).read_bytes()
    models.delete("small")
    late = _zstd_tar(
        tmp_path / "late.nbmodel", [("extra.bin", 1 << 20), ("model.yaml", model_yaml)]
    )
    with pytest.raises(InvalidArgument, match=r"not declared|missing"):
        models.import_model(late)
    assert models.list() == []
