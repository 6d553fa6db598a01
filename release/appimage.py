"""Assembling a type-2 AppImage (runtime ++ squashfs) and validating one with independent readers.

Validation does not trust our own runtime: libappimage (an independent AppImage implementation)
must call the file type 2, `unsquashfs` must list the image at the offset, and `squashfuse` must
mount it there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import proc
from .errors import VerifyError
from .floor import FLOOR_FILE

MAGIC_OFFSET = 8
MAGIC = b"AI\x02"
# The runtime is padded to a multiple of this (pad_elf): a multiple of the block map's block size
# (the_edge_agent.update.blockmap) and of zsync's, so the squashfs always starts on the grid.
ALIGNMENT = 1 << 16
REQUIRED_SECTIONS = (".upd_info", ".sha256_sig")
DIGEST_SECTION = ".sqfs_sha256"  # our runtime's extract-and-run cache key (release/runtime/sections.c)


@dataclass(frozen=True)
class SectionTable:
    """Where an ELF's section header table is: the last part of the file in an AppImage runtime."""

    shoff_field: str  # struct format of e_shoff, with the byte order
    shoff_at: int     # offset of e_shoff in the ELF header
    offset: int       # e_shoff
    size: int         # e_shnum * e_shentsize

    @property
    def end(self) -> int:
        return self.offset + self.size


def section_table(path: Path) -> SectionTable:
    with path.open("rb") as handle:
        ident = handle.read(64)
    if len(ident) < 64 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise VerifyError(f"{path} is not an ELF file")
    order = "<" if ident[5] == 1 else ">"
    field, shoff_at, sizes_at = (order + "Q", 0x28, 0x3A) if ident[4] == 2 else (order + "I", 0x20, 0x2E)
    shoff, = struct.unpack_from(field, ident, shoff_at)
    shentsize, shnum = struct.unpack_from(order + "HH", ident, sizes_at)
    return SectionTable(field, shoff_at, shoff, shnum * shentsize)


def elf_end_offset(path: Path) -> int:
    """Where the ELF ends and the squashfs starts: e_shoff + e_shnum * e_shentsize."""
    return section_table(path).end


def pad_elf(path: Path, multiple: int = ALIGNMENT) -> int:
    """Move the section header table so the ELF ends at a multiple of `multiple`; returns the new size.

    The squashfs starts where the ELF ends, so it then starts at a multiple of ALIGNMENT whatever
    the runtime's code: a new runtime does not shift the model's bytes within the block grid of
    the block map, and the delta updater still finds every block of it. The gap is zeros outside
    every section and segment (the kernel and AppImage tools never read it).
    """
    table = section_table(path)
    if path.stat().st_size != table.end:
        raise VerifyError(f"{path}: the section header table is not at the end of the ELF file")
    end = -(-table.end // multiple) * multiple
    with path.open("r+b") as handle:
        handle.seek(table.offset)
        entries = handle.read(table.size)
        handle.seek(table.offset)
        handle.write(bytes(end - table.size - table.offset) + entries)
        handle.seek(table.shoff_at)
        handle.write(struct.pack(table.shoff_field, end - table.size))
    return end


def write_runtime_over(runtime: Path, image: Path, out: Path) -> Path:
    """Finish an image built with `make_squashfs(..., offset=runtime size)` without copying it.

    The squashfs already sits at the right offset; only the runtime bytes go in front, which
    saves a full copy of a multi-GB model compared with concatenating runtime and image.
    """
    data = runtime.read_bytes()
    with image.open("r+b") as handle:
        if len(data) != elf_end_offset(runtime) or handle.seek(0, os.SEEK_END) < len(data):
            raise VerifyError(f"{image} was not built with a {len(data)}-byte runtime offset")
        handle.seek(0)
        handle.write(data)
    embed_squashfs_digest(image, runtime)
    image.chmod(0o755)
    os.replace(image, out)
    return out


def digest_section_offset(runtime: Path) -> int | None:
    """Where the runtime keeps the squashfs sha256 in its file; None for a runtime without one."""
    from elftools.elf.elffile import ELFFile

    with runtime.open("rb") as handle:
        section = ELFFile(handle).get_section_by_name(DIGEST_SECTION)
        return section["sh_offset"] if section is not None and section["sh_size"] == 32 else None


def embed_squashfs_digest(image: Path, runtime: Path) -> None:
    """Write the sha256 of image's squashfs (all after the runtime) into the runtime's section.

    The runtime keys its extract-and-run cache on it: a content identity without hashing a
    multi-GB image at every start (one read of the image here, at build time, instead).
    """
    offset = digest_section_offset(runtime)
    if offset is None:
        return
    with image.open("r+b") as handle:
        handle.seek(runtime.stat().st_size)
        digest = hashlib.file_digest(handle, "sha256").digest()
        handle.seek(offset)
        handle.write(digest)


def validate_appimage(path: Path) -> None:
    """Raise VerifyError unless `path` is a type-2 AppImage that independent tools can read."""
    offset = _check_header(path)
    _check_sections(path)
    _check_libappimage_type(path)
    _check_unsquashfs(path, offset)
    _check_squashfuse_mount(path, offset)


def _check_header(path: Path) -> int:
    with path.open("rb") as handle:
        head = handle.read(16)
    if head[:4] != b"\x7fELF":
        raise VerifyError(f"{path} does not start with an ELF header")
    if head[MAGIC_OFFSET:MAGIC_OFFSET + 3] != MAGIC:
        raise VerifyError(f"{path} lacks the type-2 magic AI\\x02 at offset {MAGIC_OFFSET}")
    offset = elf_end_offset(path)
    with path.open("rb") as handle:
        handle.seek(offset)
        if handle.read(4) != b"hsqs":
            raise VerifyError(f"{path} has no squashfs right after its ELF part (offset {offset})")
    return offset


def _check_sections(path: Path) -> None:
    from elftools.elf.elffile import ELFFile

    with path.open("rb") as handle:
        names = {section.name for section in ELFFile(handle).iter_sections()}
    missing = [name for name in REQUIRED_SECTIONS if name not in names]
    if missing:
        raise VerifyError(f"{path} runtime lacks the section(s) {', '.join(missing)}")


def appimage_type(path: Path) -> int:
    """The AppImage type according to libappimage (`appimage_get_type`), -1 if not an AppImage."""
    name = ctypes.util.find_library("appimage")
    if name is None:
        raise VerifyError("libappimage not found: apt-get install libappimage-dev")
    lib = ctypes.CDLL(name)
    lib.appimage_get_type.argtypes = (ctypes.c_char_p, ctypes.c_bool)
    lib.appimage_get_type.restype = ctypes.c_int
    return lib.appimage_get_type(os.fsencode(path), False)


def _check_libappimage_type(path: Path) -> None:
    kind = appimage_type(path)
    if kind != 2:
        raise VerifyError(f"libappimage says {path} is AppImage type {kind}, expected 2")


def _run_tool(command: list[str], what: str, timeout: float = 120) -> str:
    if shutil.which(command[0]) is None:
        raise VerifyError(f"{command[0]} not found: cannot check {what}")
    result = proc.run(command, what=f"{command[0]} checking {what}", timeout=timeout, check=False,
                      error=VerifyError)
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        raise VerifyError(f"{command[0]} failed on {what}: {' '.join(detail)}")
    return result.stdout


def _check_unsquashfs(path: Path, offset: int) -> None:
    listing = _run_tool(["unsquashfs", "-o", str(offset), "-l", str(path)], f"{path}")
    if "squashfs-root/AppRun" not in listing.splitlines():
        raise VerifyError(f"{path} has no AppRun at the top of its squashfs")


def _check_squashfuse_mount(path: Path, offset: int) -> None:
    with tempfile.TemporaryDirectory(prefix="appimage-check-") as mountpoint:
        _run_tool(["squashfuse", "-o", f"offset={offset}", str(path), mountpoint],
                  f"mounting {path}")
        try:
            if not os.access(Path(mountpoint) / "AppRun", os.X_OK):
                raise VerifyError(f"{path}: AppRun is missing or not executable when mounted")
        finally:
            _run_tool(["fusermount3", "-u", mountpoint], f"unmounting {mountpoint}")



def glibc_floor(path: Path) -> tuple[str, str]:
    """(name, minimum glibc) an AppImage records, read with unsquashfs; ("", "") when it has none."""
    done = proc.run(["unsquashfs", "-o", str(elf_end_offset(path)), "-cat", str(path), FLOOR_FILE],
                    what="unsquashfs -cat", check=False, error=VerifyError)
    fields = done.stdout.split() if done.returncode == 0 else []
    return (fields[0], fields[1]) if len(fields) == 2 else ("", "")


def runtime_checks_floor(path: Path) -> bool:
    """Whether the AppImage's runtime refuses below the glibc floor (ours names the floor file;
    the upstream runtime linuxdeploy and appimagetool use does not)."""
    with path.open("rb") as handle:
        return FLOOR_FILE.encode() in handle.read(elf_end_offset(path))
