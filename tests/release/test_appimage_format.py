"""The builtin packager's output format: static runtime, type-2 layout, squashfs contents, bytes.

Also home of the shared builders (runtime, tiny AppDir, AppImage) that test_runtime.py imports:
everything is built for real with cc, mksquashfs and the runtime under test.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from release.appimage import (MAGIC, appimage_type, digest_section_offset, elf_end_offset,
                              validate_appimage, write_runtime_over)
from release.errors import BuildError, VerifyError
from release.runtime_build import build_runtime, runtime_sources
from release.squashfs import make_squashfs, mksquashfs_command

APPRUN = """#!/bin/sh
echo "APPDIR=$APPDIR"
echo "APPIMAGE=$APPIMAGE"
echo "ARGV0=$ARGV0"
echo "OWD=$OWD"
echo "HOME=$HOME"
echo "XDG_CONFIG_HOME=$XDG_CONFIG_HOME"
echo "ZERO=$0"
echo "PID=$$"
for arg in "$@"; do echo "ARG=$arg"; done
"$APPDIR/usr/bin/link"
if [ -n "$APP_SLEEP" ]; then exec sleep "$APP_SLEEP"; fi
exit "${APP_EXIT:-0}"
"""
SUPERBLOCK_MKFS_TIME = 8  # offset of mkfs_time inside the squashfs superblock


@functools.lru_cache(maxsize=None)
def runtime_in(directory: Path) -> Path:
    """One compile per test process, however many modules ask."""
    return build_runtime(directory, arch="x86_64")


@pytest.fixture(scope="session")
def runtime(tmp_path_factory) -> Path:
    return runtime_in(tmp_path_factory.getbasetemp() / f"runtime-{os.getpid()}")


def make_appdir(root: Path, model: bytes) -> Path:
    """A tiny AppDir: AppRun, an executable, a relative symlink, a read-only file, a model."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/share/doc").mkdir(parents=True)
    (root / "usr/share/models").mkdir(parents=True)
    (root / "AppRun").write_text(APPRUN)
    (root / "AppRun").chmod(0o755)
    (root / "usr/bin/tool").write_text("#!/bin/sh\necho TOOL=ok\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/link").symlink_to("tool")
    (root / "usr/share/doc/README").write_text("read me\n" * 100)
    (root / "usr/share/doc/README").chmod(0o444)
    (root / "usr/share/models/x.gguf").write_bytes(model)
    return root


@pytest.fixture
def appdir(tmp_path) -> Path:
    return make_appdir(tmp_path / "AppDir", os.urandom(3 << 20) + b"GGUF")


def build_appimage(runtime: Path, appdir: Path, out: Path) -> Path:
    """The builtin packager's one-pass path: squashfs behind a gap, then the runtime over the gap."""
    image = make_squashfs(appdir, out.with_suffix(".building"), offset=runtime.stat().st_size)
    return write_runtime_over(runtime, image, out)


@pytest.fixture
def appimage(runtime, appdir, tmp_path) -> Path:
    return build_appimage(runtime, appdir, tmp_path / "Test-x86_64.AppImage")


# ------------------------------------------------------------------------------------------------
# The runtime binary


def test_runtime_is_static(runtime):
    assert "statically linked" in subprocess.run(["file", str(runtime)], capture_output=True,
                                                 text=True, check=True).stdout
    ldd = subprocess.run(["ldd", str(runtime)], capture_output=True, text=True)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr


def test_runtime_has_magic_and_reserved_sections(runtime):
    assert runtime.read_bytes()[8:11] == MAGIC
    with runtime.open("rb") as handle:
        sizes = {s.name: s["sh_size"] for s in ELFFile(handle).iter_sections()}
    assert sizes[".digest_md5"] == 16  # appimagetool refuses a runtime without it
    assert sizes[".upd_info"] == 1024
    assert sizes[".sha256_sig"] == 1024
    assert sizes[".sig_key"] == 8192


def test_runtime_elf_ends_at_its_file_size(runtime):
    assert elf_end_offset(runtime) == runtime.stat().st_size


def test_runtime_sources_cover_every_c_and_header_file():
    names = {path.name for path in runtime_sources()}
    assert {"appimage.h", "main.c", "mount.c", "extract.c", "elf.c"} <= names


def test_runtime_build_is_reproducible(runtime, tmp_path):
    assert build_runtime(tmp_path, arch="x86_64").read_bytes() == runtime.read_bytes()


def test_missing_compiler_names_the_package(tmp_path):
    with pytest.raises(BuildError, match="apt-get install build-essential"):
        build_runtime(tmp_path, cc="no-such-cc")


def test_cross_build_without_arm64_libs_names_the_package(tmp_path):
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        with pytest.raises(BuildError, match="apt-get install gcc-aarch64-linux-gnu"):
            build_runtime(tmp_path, arch="aarch64")
        return
    probe = subprocess.run(["aarch64-linux-gnu-gcc", "-print-file-name=libsquashfuse_ll.a"],
                           capture_output=True, text=True).stdout.strip()
    if os.path.isabs(probe):
        assert build_runtime(tmp_path, arch="aarch64").read_bytes()[8:11] == MAGIC
    else:
        with pytest.raises(BuildError, match=r"apt-get install libsquashfuse-dev:arm64"):
            build_runtime(tmp_path, arch="aarch64")


# ------------------------------------------------------------------------------------------------
# The squashfs image


def test_mksquashfs_command_is_deterministic_and_stores_models_raw(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    command = mksquashfs_command(tmp_path, tmp_path / "x.sqfs")
    for flag in ("-all-root", "-no-xattrs", "-reproducible", "-noappend"):
        assert flag in command
    assert command[command.index("-mkfs-time") + 1] == "1700000000"
    assert command[command.index("-all-time") + 1] == "1700000000"
    assert "uncompressed@name(*.gguf)" in command


def test_unknown_compression_is_a_build_error(appdir, tmp_path):
    with pytest.raises(BuildError, match="unknown squashfs compression 'brotli'"):
        make_squashfs(appdir, tmp_path / "x.sqfs", compression="brotli")


@pytest.mark.parametrize("globs, stored_raw", [(("*.gguf",), True), ((), False)])
def test_model_is_stored_uncompressed_only_when_matched(tmp_path, globs, stored_raw):
    model = b"GGUF" + b"compressible tensor data " * 200_000  # ~5 MB, compresses > 100x
    appdir = make_appdir(tmp_path / "AppDir", model)
    image = make_squashfs(appdir, tmp_path / "x.sqfs", uncompressed_globs=globs)
    assert (image.stat().st_size >= len(model)) is stored_raw


def test_squashfs_is_byte_reproducible(appdir, tmp_path):
    first = make_squashfs(appdir, tmp_path / "first.sqfs")
    for path in appdir.rglob("*"):
        os.utime(path, (1, 1), follow_symlinks=False)  # different mtimes must not matter
    second = make_squashfs(appdir, tmp_path / "second.sqfs")
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("given, used", [(None, "1"), ("0", "1"), ("2", "2")])
def test_every_file_is_dated_after_the_epoch_itself(tmp_path, monkeypatch, given, used):
    """SWI-Prolog takes a library file dated 0 for one it never loaded and loads it again, forever."""
    if given is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", given)
    command = mksquashfs_command(tmp_path, tmp_path / "x.sqfs")
    assert command[command.index("-all-time") + 1] == used == command[command.index("-mkfs-time") + 1]


def test_source_date_epoch_sets_the_image_time(appdir, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image = make_squashfs(appdir, tmp_path / "x.sqfs").read_bytes()
    assert struct.unpack_from("<I", image, SUPERBLOCK_MKFS_TIME)[0] == 1700000000


# ------------------------------------------------------------------------------------------------
# The assembled AppImage


def test_appimage_is_runtime_followed_by_squashfs(appimage, runtime):
    """The runtime's bytes, except its .sqfs_sha256 section: the sha256 of the squashfs after it."""
    data, plain = appimage.read_bytes(), runtime.read_bytes()
    offset, at = elf_end_offset(appimage), digest_section_offset(runtime)
    assert offset == len(plain)
    assert data[:at] + data[at + 32:offset] == plain[:at] + plain[at + 32:]
    assert plain[at:at + 32] == bytes(32)
    assert data[at:at + 32] == hashlib.sha256(data[offset:]).digest()
    assert data[offset:offset + 4] == b"hsqs"
    assert appimage.stat().st_mode & 0o777 == 0o755


def test_libappimage_says_type_2(appimage, runtime):
    assert appimage_type(appimage) == 2
    validate_appimage(appimage)


def test_offset_option_matches_elf_end(appimage):
    printed = subprocess.run([str(appimage), "--appimage-offset"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    assert int(printed) == elf_end_offset(appimage)


def test_one_pass_build_equals_concatenation(runtime, appdir, appimage, tmp_path):
    """runtime ++ squashfs, with the squashfs's sha256 in the runtime's digest section."""
    image = make_squashfs(appdir, tmp_path / "plain.squashfs").read_bytes()
    expected = bytearray(runtime.read_bytes() + image)
    offset = digest_section_offset(runtime)
    expected[offset:offset + 32] = hashlib.sha256(image).digest()
    assert appimage.read_bytes() == bytes(expected)


def test_appimage_is_byte_reproducible(runtime, appdir, appimage, tmp_path):
    (tmp_path / "again").mkdir()
    again = build_appimage(runtime, appdir, tmp_path / "again" / "Test-x86_64.AppImage")
    assert again.read_bytes() == appimage.read_bytes()


def test_validate_rejects_a_bare_runtime(runtime):
    with pytest.raises(VerifyError, match="no squashfs right after its ELF part"):
        validate_appimage(runtime)


def test_validate_rejects_missing_magic(appimage):
    data = bytearray(appimage.read_bytes())
    data[8:11] = b"\0\0\0"
    appimage.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="lacks the type-2 magic"):
        validate_appimage(appimage)


def test_validate_rejects_a_corrupt_squashfs(appimage):
    offset = elf_end_offset(appimage)
    with appimage.open("r+b") as handle:  # keep the magic, break the table pointers
        handle.seek(offset + 48)
        handle.write(b"\xff" * 48)
    with pytest.raises(VerifyError):
        validate_appimage(appimage)
