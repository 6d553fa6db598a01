"""The glibc/libstdc++ floor: which versions a Linux system provides, read from its own libraries.

- glibc: the release in libc.so.6's banner ("... stable release version 2.31."), the same text
  the AppImage runtime reads (release/runtime/floor.c). A release provides every `GLIBC_x.y`
  symbol version up to its own number (spread over libc, libm, libpthread...: bullseye's
  libc.so.6 defines up to GLIBC_2.30, its libm GLIBC_2.31), so it is compared with the highest
  `GLIBC_` version an ELF needs.
- libstdc++: the highest `GLIBCXX_x.y.z` version libstdc++.so.6 defines (its ELF version
  definitions, the table ld.so checks).
Reading files needs no exec, so it works for a root of another arch too. The build root's floor
bounds what an AppImage may need; a clean system's glibc says whether an AppImage must run
there or refuse in one line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection

from .errors import VerifyError

FLOOR_FILE = ".tea/glibc-floor"  # in an AppDir: "<name> <min glibc>", checked by release/runtime/floor.c
TRIPLETS = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
GLIBC = re.compile(r"GLIBC_(\d+(?:\.\d+)+)")
BANNER = re.compile(rb"GNU C Library [^\n]{0,200}? release version (\d+\.\d+)")
GLIBCXX = re.compile(r"GLIBCXX_(\d+(?:\.\d+)+)")


@dataclass(frozen=True)
class Floor:
    """The newest glibc and libstdc++ symbol versions a system provides ("" = none found)."""

    glibc: str
    glibcxx: str


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")) if version else ()


def highest(versions: Iterable[str]) -> str:
    return max(versions, key=version_key, default="")


def newer(needed: str, provided: str) -> bool:
    """True when `needed` is a version and `provided` is older (an unknown floor blocks nothing)."""
    return bool(needed and provided) and version_key(needed) > version_key(provided)


def defined_versions(library: Path) -> set[str]:
    """Names of the version definitions (`readelf -V`'s .gnu.version_d) of a shared library."""
    with library.open("rb") as handle:
        elf = ELFFile(handle)
        return {aux.name for section in elf.iter_sections() if isinstance(section, GNUVerDefSection)
                for _definition, auxiliaries in section.iter_versions() for aux in auxiliaries}


def in_root(root: Path, path: str) -> Path:
    """`path` as the system in `root` resolves it: absolute symlinks stay inside the root."""
    current = root
    for part in Path(path.lstrip("/")).parts:
        current = current / part
        for _ in range(40):
            if not current.is_symlink():
                break
            target = os.readlink(current)
            current = root / target.lstrip("/") if target.startswith("/") else current.parent / target
    return current


def system_floor(root: Path, arch: str) -> Floor:
    """The floor of the Debian system in `root` (`Path("/")` for this machine)."""
    libc = in_root(root, f"/lib/{TRIPLETS[arch]}/libc.so.6")
    if not libc.is_file():
        raise VerifyError(f"{root}: no {arch} glibc at /lib/{TRIPLETS[arch]}/libc.so.6: not a Debian {arch} system")
    libstdcxx = in_root(root, f"/usr/lib/{TRIPLETS[arch]}/libstdc++.so.6")
    return Floor(glibc=glibc_release(libc),
                 glibcxx=_newest(GLIBCXX, defined_versions(libstdcxx)) if libstdcxx.is_file() else "")


def glibc_release(libc: Path) -> str:
    """The glibc release a libc.so.6 belongs to, from its banner ("" if it has none)."""
    match = BANNER.search(libc.read_bytes())
    return match.group(1).decode() if match else ""


def _newest(pattern: re.Pattern[str], names: Iterable[str]) -> str:
    return highest(m.group(1) for name in names if (m := pattern.fullmatch(name)))
