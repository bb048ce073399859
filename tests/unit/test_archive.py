"""`.bento` archives: byte-reproducible builds, content-hash versions, and a safe extraction."""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from nbserve._bento import archive, builder, sources
from nbserve._bento.archive import ArchiveError, Entry
from nbserve._bento.capture import CapturedSource

SOURCE = """\
import nbserve


@nbserve.service(resources={"cpu": "1"}, labels={"team": "ml"})
class Echo:
    @nbserve.api
    def shout(self, text: str) -> str:
        return text.upper()
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "home"))
    # A fixed stand-in for nbserve's own wheel: building the real one takes seconds.
    wheel = tmp_path / "jupyter_nbserve-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    monkeypatch.setattr(builder, "nbserve_wheel", lambda cache, **_: wheel)


def build(source: str, out: Path) -> Path:
    variable, service = sources.load_source(source, "Echo")
    captured = CapturedSource(text=source, modules=("nbserve",))
    return builder.build_bento(service, captured, out, variable=variable)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- reproducible builds ---------------------------------------------------------------------
def test_same_inputs_give_the_same_bytes_at_other_times_and_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    first = build(SOURCE, tmp_path / "a" / "dist")
    os.utime(first, (0, 0))
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400 * 400)  # a year later
    (tmp_path / "b" / "c").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "b" / "c")
    second = build(SOURCE, tmp_path / "b" / "out")
    assert first.name == second.name
    assert sha(first) == sha(second)


def test_a_one_line_change_gives_another_version(tmp_path: Path) -> None:
    first = build(SOURCE, tmp_path / "one")
    second = build(SOURCE.replace("text.upper()", "text.lower()"), tmp_path / "two")
    assert first.name != second.name
    assert sha(first) != sha(second)


def test_headers_are_normalised(tmp_path: Path) -> None:
    path = build(SOURCE, tmp_path)
    with archive.open_tar(path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {
        "bento.yaml",
        "src/service.py",
        "env/python/install.sh",
        "env/docker/Dockerfile",
    } <= set(names)
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (
            archive.REPRODUCIBLE_EPOCH,
            0,
            0,
            "",
            "",
        )
        assert m.mode == (0o755 if m.name.endswith(".sh") else 0o644)


def test_the_version_is_the_content_hash_and_named_in_the_versioned_files(tmp_path: Path) -> None:
    path = build(SOURCE, tmp_path)
    version = path.name.removeprefix("echo-").removesuffix(".bento")
    assert len(version) == 16
    extracted = archive.extract(path, home=tmp_path / "cache")
    assert extracted == tmp_path / "cache" / "echo" / version
    info = archive.read_bento_yaml(extracted)
    assert (info["name"], info["version"], info["service"]) == ("echo", version, "service:Echo")
    assert "creation_time" not in info
    assert f"echo:{version}" in (extracted / "deploy/kubernetes.yaml").read_text()
    assert archive.PLACEHOLDER not in (extracted / "env/docker/Dockerfile").read_text()
    assert archive.content_version(archive.scan(extracted), version) == version


def test_extracting_twice_reuses_the_cache(tmp_path: Path) -> None:
    path = build(SOURCE, tmp_path)
    first = archive.extract(path, home=tmp_path / "cache")
    assert archive.extract(path, home=tmp_path / "cache") == first
    assert list((tmp_path / "cache" / ".tmp").iterdir()) == []


# ---- hostile archives --------------------------------------------------------------------------
def _member(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def craft(path: Path, *members: tuple[tarfile.TarInfo, bytes], codec: str = "xz") -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info, data = _member("bento.yaml", b"name: evil\nversion: aaaaaaaaaaaaaaaa\n")
        tar.addfile(info, io.BytesIO(data))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    compress = lzma.compress if codec == "xz" else zstandard.ZstdCompressor().compress
    path.write_bytes(compress(buffer.getvalue()))
    return path


HOSTILE = {
    "parent": ([_member("../evil.txt")], "climbs out"),
    "nested parent": ([_member("src/../../evil.txt")], "climbs out"),
    "absolute": ([_member("/tmp/nbserve-evil.txt")], "absolute path"),
    "symlink escape": (
        [_member("src/link", kind=tarfile.SYMTYPE, link="../../.."), _member("src/link/evil.txt")],
        "is a link",
    ),
    "symlink inside": ([_member("src/link", kind=tarfile.SYMTYPE, link="service.py")], "is a link"),
    "hardlink": ([_member("src/hard", kind=tarfile.LNKTYPE, link="/etc/passwd")], "is a link"),
    "char device": ([_member("src/null", kind=tarfile.CHRTYPE)], "device"),
    "fifo": ([_member("src/fifo", kind=tarfile.FIFOTYPE)], "device"),
    "duplicate": ([_member("src/a.py"), _member("src/a.py")], "twice"),
    "oversized": ([_member("models/big.bin", b"x" * 4096)], "limit per file"),
    "file then dir": ([_member("src/a"), _member("src/a/b.py")], "which is a file"),
    "dir then file": ([_member("src/a/b.py"), _member("src/a")], "other members are inside it"),
}


@pytest.mark.parametrize("codec", ["zstd", "xz"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_without_writing_outside(
    tmp_path: Path, case: str, codec: str
) -> None:
    members, reason = HOSTILE[case]
    work = tmp_path / "work"
    work.mkdir()
    bad = craft(work / "evil.bento", *members, codec=codec)
    home = work / "deep" / "cache"
    with pytest.raises(ArchiveError, match=reason):
        archive.extract(bad, home=home, max_member_size=1024)
    written = sorted(p.relative_to(work).as_posix() for p in work.rglob("*"))
    assert written == ["evil.bento"]  # checked before anything was written
    assert not Path("/tmp/nbserve-evil.txt").exists()


def test_a_total_size_over_the_limit_is_refused(tmp_path: Path) -> None:
    bad = craft(tmp_path / "big.bento", _member("a.bin", b"x" * 600), _member("b.bin", b"y" * 600))
    with pytest.raises(ArchiveError, match="add up to more than 1000 bytes"):
        archive.extract(bad, home=tmp_path / "cache", max_total_size=1000)


def test_content_that_does_not_match_its_version_is_refused(tmp_path: Path) -> None:
    path = build(SOURCE, tmp_path)
    with archive.open_tar(path) as tar:
        files = {m.name: Entry(tar.extractfile(m).read(), bool(m.mode & 0o111)) for m in tar}  # type: ignore[union-attr]
    files["src/service.py"] = Entry(
        files["src/service.py"].data + b"\nimport os; os.system('id')\n"
    )  # type: ignore[operator]
    tampered = archive.write_archive(files, tmp_path / "tampered.bento")
    with pytest.raises(ArchiveError, match="does not match its version"):
        archive.extract(tampered, home=tmp_path / "cache")
    assert not (tmp_path / "cache" / "echo").exists()


def test_a_file_that_is_not_a_tar_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "junk.bento"
    bad.write_bytes(b"PK\x03\x04 not a tar")
    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        archive.extract(bad, home=tmp_path / "cache")


def test_an_archive_without_bento_yaml_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info, data = _member("src/service.py")
        tar.addfile(info, io.BytesIO(data))
    bad = tmp_path / "nobento.bento"
    bad.write_bytes(lzma.compress(buffer.getvalue()))
    with pytest.raises(ArchiveError, match=r"no bento\.yaml"):
        archive.extract(bad, home=tmp_path / "cache")


def test_an_archive_repacked_with_tar_still_opens(tmp_path: Path) -> None:
    """`tar -C dir -cJf x.bento .` names members ./bento.yaml and adds a ./ directory."""
    original = archive.extract(build(SOURCE, tmp_path), home=tmp_path / "first")
    repacked = tmp_path / "repacked.bento"
    with tarfile.open(repacked, "w:xz") as tar:
        tar.add(original, arcname=".")
    again = archive.extract(repacked, home=tmp_path / "second")
    assert again.name == original.name
    assert (again / "src/service.py").read_bytes() == (original / "src/service.py").read_bytes()


# ---- the codec ---------------------------------------------------------------------------------
def test_weights_that_do_not_compress_are_stored_and_text_is_compressed(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(8 << 20))  # like float weights: zstd cannot shrink them
    text = tmp_path / "vocab.txt"
    text.write_bytes(b"token\n" * (2 << 20))
    assert archive.level_for(Entry(weights)) == archive.STORED_LEVEL
    assert archive.level_for(Entry(text)) == archive.LEVEL
    assert archive.level_for(Entry(b"small")) == archive.LEVEL
    files = {"models/m/v/weights.bin": Entry(weights), "models/m/v/vocab.txt": Entry(text)}
    path = archive.write_archive(files, tmp_path / "m.bento")
    # Stored costs next to nothing; the text shrinks: the archive is about the weights' size.
    assert weights.stat().st_size < path.stat().st_size < weights.stat().st_size * 1.01
    again = archive.write_archive(files, tmp_path / "again.bento")
    assert sha(path) == sha(again)


def test_the_archive_is_standard_zstd_a_frame_per_member(tmp_path: Path) -> None:
    """Any zstd reader that reads concatenated frames (the zstd CLI, Python 3.14's tarfile)
    reads the tar; nbserve's own reader also opens xz archives written by older versions."""
    path = build(SOURCE, tmp_path)
    with path.open("rb") as f:
        reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
        plain = reader.read()
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        names = tar.getnames()
    assert "bento.yaml" in names
    frames = path.read_bytes().count(b"\x28\xb5\x2f\xfd")
    assert frames >= len(names) + 1  # one per member, one for the end blocks


def test_a_zstd_bomb_is_refused_without_writing(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.bento"
    bomb.write_bytes(zstandard.ZstdCompressor().compress(b"\0" * (8 << 20)))
    assert bomb.stat().st_size < 4096
    with pytest.raises(ArchiveError, match="refusing to extract"):
        archive.extract(bomb, home=tmp_path / "cache", max_total_size=1000)
    assert not (tmp_path / "cache" / ".tmp").exists() or not any(
        (tmp_path / "cache" / ".tmp").iterdir()
    )


def test_corrupt_zstd_is_refused(tmp_path: Path) -> None:
    path = build(SOURCE, tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="refusing to extract"):
        archive.extract(path, home=tmp_path / "cache")


def test_progress_shows_hashing_and_writing_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(1 << 20))
    files = {"w.bin": Entry(weights)}
    capsys.readouterr()
    archive.content_version(files)
    archive.write_archive(files, tmp_path / "quiet.bento")
    assert capsys.readouterr().err == ""  # not a terminal, not a kernel: silent
    archive.content_version(files, progress=True)
    archive.write_archive(files, tmp_path / "loud.bento", progress=True)
    err = capsys.readouterr().err
    assert "hashing" in err
    assert "writing loud.bento" in err
