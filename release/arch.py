"""Architecture names: one canonical spelling, and whether this host can run a given arch.

Users and CI systems say amd64/arm64 as often as x86_64/aarch64; everything past the command line
sees only the canonical names, which are also the AppImage naming convention.
"""

from __future__ import annotations

import platform
from pathlib import Path

from .errors import ConfigError

ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64",
           "aarch64": "aarch64", "arm64": "aarch64"}
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
QEMU_BINFMT = {"aarch64": "qemu-aarch64", "x86_64": "qemu-x86_64"}


def normalize(name: str) -> str:
    try:
        return ALIASES[name.strip().lower()]
    except KeyError:
        supported = "|".join(ALIASES)
        raise ConfigError(f"unknown arch '{name}': use one of {supported}") from None


def host_arch() -> str:
    return normalize(platform.machine())


def binfmt_registered(arch: str, binfmt_dir: Path = BINFMT_DIR) -> bool:
    """True when the kernel runs `arch` binaries through qemu-user (binfmt_misc entry enabled)."""
    if arch not in QEMU_BINFMT:
        return False
    entry = binfmt_dir / QEMU_BINFMT[arch]
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def require_runnable(arch: str, binfmt_dir: Path = BINFMT_DIR) -> str:
    """Fail with the fix when the host can neither run nor emulate `arch`."""
    if arch == host_arch() or binfmt_registered(arch, binfmt_dir):
        return "native" if arch == host_arch() else "emulated"
    if arch not in QEMU_BINFMT:
        raise ConfigError(f"this {host_arch()} host cannot run {arch} binaries, and tea-release emulates only "
                          f"{', '.join(QEMU_BINFMT)}")
    raise ConfigError(
        f"this {host_arch()} host cannot run {arch} binaries: build on an {arch} machine, or enable "
        f"emulation with `apt-get install qemu-user-static binfmt-support` (binfmt entry {QEMU_BINFMT[arch]})")
