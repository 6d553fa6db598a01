"""Builds the AppImage type-2 runtime in `release/runtime/` with the system C compiler.

The runtime is linked fully statically against Debian's libsquashfuse/libfuse3 archives, so an
AppImage never needs libfuse2 or libfuse3 on the target (the classic "AppImages require FUSE to
run" failure on Ubuntu 22.04). After linking, the type-2 magic `AI\\x02` goes into bytes 8..10 of
the ELF header, which the kernel ignores, and the file is padded to a multiple of 64 KiB
(appimage.pad_elf): the squashfs after it then starts on the delta-update block grid whatever
the runtime's size.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import arch as arches
from . import proc
from .appimage import MAGIC, MAGIC_OFFSET, elf_end_offset, pad_elf
from .errors import BuildError

RUNTIME_DIR = Path(__file__).with_name("runtime")
CFLAGS = ("-static", "-O2", "-s", "-Wall", "-D_GNU_SOURCE", "-D_FILE_OFFSET_BITS=64",
          "-Wl,--build-id=none")
# The tests' build: AddressSanitizer and UBSan see squashfuse's reads of a hostile image
# (sanitizers need a dynamic executable; the AppImage layout does not care).
SANITIZE_CFLAGS = ("-O1", "-g", "-Wall", "-D_GNU_SOURCE", "-D_FILE_OFFSET_BITS=64",
                   "-fsanitize=address,undefined", "-fno-sanitize-recover=all")
# Link order matters for static archives: users before the libraries they use.
LIBS = {"squashfuse_ll": "libsquashfuse-dev", "squashfuse": "libsquashfuse-dev",
        "fuse3": "libfuse3-dev", "zstd": "libzstd-dev", "lzma": "liblzma-dev",
        "z": "zlib1g-dev", "lz4": "liblz4-dev", "lzo2": "liblzo2-dev"}
SYSTEM_LIBS = ("pthread", "dl")
CROSS_CC = {"x86_64": "x86_64-linux-gnu-gcc", "aarch64": "aarch64-linux-gnu-gcc"}
CROSS_CC_PACKAGE = {"x86_64": "gcc-x86-64-linux-gnu", "aarch64": "gcc-aarch64-linux-gnu"}
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def runtime_sources() -> list[Path]:
    """Every file the runtime is built from (for the pipeline's fingerprint)."""
    return sorted(RUNTIME_DIR.glob("*.[ch]"))


def build_runtime(out_dir: Path, *, arch: str = "x86_64", cc: str | None = None,
                  sanitize: bool = False) -> Path:
    """Compile the static runtime for `arch`; returns `out_dir/runtime-<arch>` (`-sanitized`)."""
    arch = arches.normalize(arch)
    native = arch == arches.host_arch()
    cc = cc or ("cc" if native else CROSS_CC[arch])
    _require_compiler(cc, arch, native)
    _require_static_libs(cc, arch, native)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"runtime-{arch}{'-sanitized' if sanitize else ''}"
    partial = target.with_name(f".{target.name}.partial")
    _compile(cc, partial, SANITIZE_CFLAGS if sanitize else CFLAGS)
    _stamp_magic(partial)
    pad_elf(partial)
    os.replace(partial, target)
    return target


def _require_compiler(cc: str, arch: str, native: bool) -> None:
    if shutil.which(cc) is None:
        package = "build-essential" if native else CROSS_CC_PACKAGE[arch]
        raise BuildError(f"C compiler '{cc}' not found: apt-get install {package}")


def _require_static_libs(cc: str, arch: str, native: bool) -> None:
    """A missing archive is named with the -dev package that provides it."""
    suffix = "" if native else f":{DEBIAN_ARCH[arch]}"
    for lib, package in LIBS.items():
        found = proc.run([cc, f"-print-file-name=lib{lib}.a"], check=False).stdout.strip()
        if not os.path.isabs(found):
            raise BuildError(f"static library lib{lib}.a for {arch} not found: "
                             f"apt-get install {package}{suffix}")


def _compile(cc: str, out: Path, flags: tuple[str, ...]) -> None:
    sources = [str(p) for p in runtime_sources() if p.suffix == ".c"]
    libs = [f"-l{lib}" for lib in (*LIBS, *SYSTEM_LIBS)]
    result = proc.run([cc, *flags, "-o", out, *sources, *libs], check=False)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        first = next((line for line in lines if "error" in line), lines[-1])
        where = f"; log: {proc.current_log()}" if proc.current_log() else ""
        raise BuildError(f"compiling the AppImage runtime with {cc} failed: {first}{where}")


def _stamp_magic(path: Path) -> None:
    """Write `AI\\x02` into the unused ELF ident bytes and check the squashfs offset rule."""
    with path.open("r+b") as handle:
        handle.seek(MAGIC_OFFSET)
        if handle.read(len(MAGIC)).strip(b"\0"):
            raise BuildError(f"{path}: ELF ident bytes 8..10 are in use, cannot add the AppImage magic")
        handle.seek(MAGIC_OFFSET)
        handle.write(MAGIC)
    if elf_end_offset(path) != path.stat().st_size:
        raise BuildError(f"{path}: the section header table is not at the end of the ELF file")
