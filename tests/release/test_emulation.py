"""Building aarch64 on an x86_64 host: toolchain file, wheel retag, binfmt detection, and the built AppImage."""

from __future__ import annotations

import dataclasses

import base64
import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from release import appimage, arch, config, emulation, hosts
from release.audit import read_elf
from release.floor import highest, newer, system_floor
from release.hosts.emulated import retag_wheel, toolchain_file
from release.errors import ConfigError

def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _make_wheel(directory: Path) -> Path:
    wheel = directory / "demo-1.0-py3-none-linux_x86_64.whl"
    files = {"demo/__init__.py": b"x = 1\n", "demo/lib/libdemo.so": b"\x7fELF fake",
             "demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                         b"Tag: py3-none-linux_x86_64\n"}
    record = [_record_line(name, data) for name, data in files.items()] + ["demo-1.0.dist-info/RECORD,,"]
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("demo-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def test_toolchain_file_targets_the_cross_compilers_and_the_roots_libc_and_libstdcxx():
    text = toolchain_file("aarch64", Path("/cache/root"), "10", "/usr/lib/gcc-cross/aarch64-linux-gnu/12/include")
    assert "set(CMAKE_SYSTEM_NAME Linux)" in text
    assert "set(CMAKE_SYSTEM_PROCESSOR aarch64)" in text
    assert "set(CMAKE_SYSROOT /cache/root)" in text
    assert "set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)" in text
    assert "set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)" in text
    assert ('set(CMAKE_C_FLAGS_INIT "-nostdinc -isystem /usr/lib/gcc-cross/aarch64-linux-gnu/12/include '
            '-isystem /cache/root/usr/include/aarch64-linux-gnu -isystem /cache/root/usr/include")') in text
    assert "-nostdinc -nostdinc++ -isystem /cache/root/usr/include/c++/10 " in text
    assert ('"-B/cache/root/usr/lib/aarch64-linux-gnu/ -L/cache/root/usr/lib/gcc/aarch64-linux-gnu/10 '
            '-L/cache/root/usr/lib/aarch64-linux-gnu -L/cache/root/lib/aarch64-linux-gnu"') in text
    assert "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)" in text


@pytest.fixture(scope="module")
def arm64_root() -> hosts.EmulatedRoot:
    """The bullseye arm64 build root an `invoke release --arch aarch64` left in TEA_TEST_CACHE."""
    cache = os.environ.get("TEA_TEST_CACHE")
    if not cache or shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("cmake") is None:
        pytest.skip("needs TEA_TEST_CACHE with an arm64 build root, cmake and g++-aarch64-linux-gnu")
    root = hosts.select(config.resolve(arch="aarch64", cache_dir=cache))
    if not (root.root / "usr/include/c++").is_dir():
        pytest.skip(f"no arm64 build root at {root.root} (build it with `invoke release --arch aarch64`)")
    return root


@pytest.mark.slow
def test_cross_builds_link_against_the_roots_glibc_and_libstdcxx(arm64_root, tmp_path):
    """A C++ library built with the toolchain file needs no more than bullseye arm64 has, although
    this machine's cross compiler ships glibc 2.36 and GLIBCXX 3.4.30 of its own."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src/CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.18)\nproject(t C CXX)\n"
                                                 "add_library(t SHARED t.cc)\n")
    (tmp_path / "src/t.cc").write_text('#include <string>\n#include <cstdio>\n#include <cstdlib>\n'
                                       'extern "C" int t(const char *v) { std::string s(v); s += "x";'
                                       ' std::printf("%s", s.c_str()); return (int) std::strtol(v, 0, 10); }\n')
    include = subprocess.run(["aarch64-linux-gnu-gcc", "-print-file-name=include"], capture_output=True,
                             text=True, check=True).stdout.strip()
    (tmp_path / "toolchain.cmake").write_text(
        toolchain_file("aarch64", arm64_root.root, arm64_root.gcc_version(), include))
    for args in (["-S", tmp_path / "src", "-B", tmp_path / "b", f"-DCMAKE_TOOLCHAIN_FILE={tmp_path / 'toolchain.cmake'}"],
                 ["--build", tmp_path / "b"]):
        subprocess.run(["cmake", *map(str, args)], check=True, capture_output=True)
    built = read_elf(tmp_path / "b/libt.so")
    provided = system_floor(arm64_root.root, "aarch64")
    assert built.machine == "aarch64" and built.glibcxx_versions
    assert not newer(highest(built.glibc_versions), provided.glibc)
    assert not newer(highest(built.glibcxx_versions), provided.glibcxx)


def test_retag_wheel_renames_and_keeps_record_consistent(tmp_path):
    (tmp_path / "wheels").mkdir()
    wheel = retag_wheel(_make_wheel(tmp_path / "wheels"), "linux_aarch64")
    assert wheel.name == "demo-1.0-py3-none-linux_aarch64.whl"
    assert [p.name for p in (tmp_path / "wheels").iterdir()] == [wheel.name]
    with zipfile.ZipFile(wheel) as archive:
        meta = archive.read("demo-1.0.dist-info/WHEEL").decode()
        assert "Tag: py3-none-linux_aarch64\n" in meta and "x86_64" not in meta
        for line in archive.read("demo-1.0.dist-info/RECORD").decode().splitlines():
            name, digest, _ = line.split(",")
            if digest:
                assert line == _record_line(name, archive.read(name))
        assert archive.read("demo/lib/libdemo.so") == b"\x7fELF fake"


QEMU_ENTRY = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n"


def test_enabled_binfmt_entries_are_enough(tmp_path):
    (tmp_path / "qemu-aarch64").write_text(QEMU_ENTRY)
    (tmp_path / "appimage-aarch64").write_text("enabled\n")
    emulation.ensure_binfmt("aarch64", tmp_path, register=False)


def test_appimage_rule_matches_a_type2_header_only(tmp_path):
    """The rule's magic/mask accept our AppImage's first bytes and reject a plain aarch64 ELF."""
    rule = emulation.appimage_binfmt_rule("aarch64", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")
    name, kind, offset, magic, mask, interpreter, flags = rule.split(":")[1:]
    assert (name, kind, offset, interpreter, flags) == (
        "appimage-aarch64", "M", "", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")
    magic_bytes, mask_bytes = (bytes.fromhex(v.replace("\\x", "")) for v in (magic, mask))
    matches = lambda head: all(h & m == g & m for h, m, g in zip(head, mask_bytes, magic_bytes))  # noqa: E731
    elf = bytearray(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\xb7\x00")
    assert not matches(elf)
    elf[8:11] = b"AI\x02"
    assert matches(elf)
    elf[18] = 0x3e  # x86_64
    assert not matches(elf)


def test_appimage_entry_is_registered_with_qemus_interpreter(tmp_path):
    (tmp_path / "qemu-aarch64").write_text(QEMU_ENTRY)
    (tmp_path / "register").write_text("")
    emulation.ensure_binfmt("aarch64", tmp_path, register=True)
    assert (tmp_path / "register").read_text() == emulation.appimage_binfmt_rule(
        "aarch64", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")


def test_missing_appimage_entry_without_root_gives_the_rule(tmp_path):
    (tmp_path / "qemu-aarch64").write_text(QEMU_ENTRY)
    with pytest.raises(ConfigError, match=r"AppImages cannot run here .* > .*register$"):
        emulation.ensure_binfmt("aarch64", tmp_path, register=False)


@pytest.mark.parametrize("entry", [None, "disabled\n", ""])
def test_missing_binfmt_is_one_line_with_the_commands(tmp_path, entry):
    if entry is not None:
        (tmp_path / "qemu-aarch64").write_text(entry)
    with pytest.raises(ConfigError) as error:
        emulation.ensure_binfmt("aarch64", tmp_path, register=False)
    message = str(error.value)
    assert "\n" not in message
    for command in ("apt-get install qemu-user-static binfmt-support", "mount -t binfmt_misc binfmt_misc",
                    "update-binfmts --enable qemu-aarch64"):
        assert command in message


def test_host_arch_needs_no_emulation(tmp_path):
    assert emulation.prepare(arch.host_arch(), tmp_path, "bullseye") == "native"
    assert not (tmp_path / "rootfs").exists()


def test_arch_without_cross_pins_is_a_config_error():
    settings = config.resolve(arch="aarch64", model="gemma-3-270m")
    bare = dataclasses.replace(settings.pins, cross={})
    with pytest.raises(ConfigError, match=r"no \[cross.aarch64\] table"):
        bare.cross_for("aarch64")


def _dist_appimage() -> Path:
    dist = os.environ.get("TEA_TEST_DIST")
    found = sorted(Path(dist).glob("tea-python-llm-*-aarch64.AppImage")) if dist else []
    if not found:
        pytest.skip("no aarch64 AppImage in TEA_TEST_DIST (build it with `invoke release --arch aarch64`)")
    return found[0]


def _machine(path: Path) -> str:
    header = subprocess.run(["readelf", "-h", str(path)], capture_output=True, text=True, check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in header.splitlines() if "Machine:" in line)


@pytest.mark.slow
def test_built_aarch64_appimage(tmp_path):
    """The runtime and usr/bin/tea are AArch64, libappimage reads it, and SHA256SUMS lists it."""
    path = _dist_appimage()
    assert _machine(path) == "AArch64"
    appimage.validate_appimage(path)
    offset = appimage.elf_end_offset(path)
    subprocess.run(["unsquashfs", "-q", "-n", "-o", str(offset), "-d", str(tmp_path / "root"), str(path),
                    "usr/bin/tea"], check=True, capture_output=True)
    assert _machine(tmp_path / "root/usr/bin/tea") == "AArch64"
    sums = (path.parent / "SHA256SUMS").read_text()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"{digest}  {path.name}" in sums.splitlines()
