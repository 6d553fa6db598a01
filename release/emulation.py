"""Running another arch's programs on this host: qemu-user through binfmt_misc.

`prepare` makes it work on a fresh machine: it installs qemu-user-static and binfmt-support
(when root, like every system package), registers qemu with binfmt_misc, adds an entry for
foreign type-2 AppImages, and points qemu's loader prefix at a minimal Debian of that arch (the
oldest pinned system), where dynamic target programs find ld.so and libc.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import apt, log, proc, rootfs
from . import arch as arches
from .errors import ConfigError

PACKAGES = ["qemu-user-static", "binfmt-support"]


def prepare(arch: str, cache_dir: Path, suite: str) -> str:
    """arch.require_runnable, after setting up emulation for a foreign `arch`."""
    if arch != arches.host_arch() and arch in arches.QEMU_BINFMT:
        apt.ensure_apt_packages(PACKAGES)
        ensure_binfmt(arch)
        loader_root = rootfs.unpack_rootfs(rootfs.ensure_rootfs(cache_dir, arch=arch, suite=suite),
                                           cache_dir / "loader-roots" / f"{suite}-{arch}")
        os.environ.setdefault("QEMU_LD_PREFIX", str(loader_root))
    return arches.require_runnable(arch)


def binfmt_fix(arch: str) -> str:
    entry = arches.QEMU_BINFMT[arch]
    return (f"apt-get install {' '.join(PACKAGES)} && "
            f"mount -t binfmt_misc binfmt_misc {arches.BINFMT_DIR} (if empty) && update-binfmts --enable {entry}")


def ensure_binfmt(arch: str, binfmt_dir: Path = arches.BINFMT_DIR, *, register: bool | None = None) -> None:
    """Register qemu-user for `arch` when root (a fresh CI machine has nothing); else one line with the fix."""
    if register is None:
        register = os.geteuid() == 0
    if not arches.binfmt_registered(arch, binfmt_dir) and register and shutil.which("update-binfmts"):
        if not (binfmt_dir / "register").exists():
            proc.run(["mount", "-t", "binfmt_misc", "binfmt_misc", binfmt_dir], check=False)
        proc.run(["update-binfmts", "--enable", arches.QEMU_BINFMT[arch]], check=False)
        if arches.binfmt_registered(arch, binfmt_dir):
            log.info(f"registered {arches.QEMU_BINFMT[arch]} with binfmt_misc (emulated {arch})")
    if not arches.binfmt_registered(arch, binfmt_dir):
        raise ConfigError(f"this {arches.host_arch()} host cannot run {arch} binaries (no enabled "
                          f"{arches.QEMU_BINFMT[arch]} binfmt entry); as root run: {binfmt_fix(arch)}")
    ensure_appimage_binfmt(arch, binfmt_dir, register=register)


# qemu's binfmt entries require zeros in ELF ident bytes 8..15, where a type-2 AppImage has `AI\x02`:
# without an entry of their own, foreign AppImages fail with "Exec format error".
E_MACHINE = {"aarch64": b"\xb7\x00", "x86_64": b"\x3e\x00"}


def appimage_binfmt_rule(arch: str, interpreter: str, flags: str) -> str:
    """The binfmt_misc `register` line: qemu's ELF match, but with `AI\x02` at offset 8."""
    magic = b"\x7fELF\x02\x01\x01\x00AI\x02\x00\x00\x00\x00\x00\x02\x00" + E_MACHINE[arch]
    mask = b"\xff" * 7 + b"\x00" + b"\xff" * 8 + b"\xfe\xff\xff\xff"
    return f":appimage-{arch}:M::{_escape(magic)}:{_escape(mask)}:{interpreter}:{flags}"


def _escape(data: bytes) -> str:
    return "".join(f"\\x{byte:02x}" for byte in data)


def ensure_appimage_binfmt(arch: str, binfmt_dir: Path, *, register: bool) -> None:
    """Hand `arch` AppImages to the interpreter (and flags) of qemu's own entry."""
    try:
        if (binfmt_dir / f"appimage-{arch}").read_text().startswith("enabled"):
            return
    except OSError:
        pass
    qemu = (binfmt_dir / arches.QEMU_BINFMT[arch]).read_text().splitlines()
    interpreter = next(line.split(None, 1)[1] for line in qemu if line.startswith("interpreter "))
    flags = next((line.split(None, 1)[1] for line in qemu if line.startswith("flags:")), "").strip()
    rule = appimage_binfmt_rule(arch, interpreter, flags)
    if not register:
        raise ConfigError(f"{arch} AppImages cannot run here (qemu's binfmt entry does not match their "
                          f"AI\\x02 header); as root run: echo '{rule}' > {binfmt_dir / 'register'}")
    (binfmt_dir / "register").write_text(rule)
    log.info(f"registered appimage-{arch} with binfmt_misc ({arch} AppImages run through {interpreter})")
