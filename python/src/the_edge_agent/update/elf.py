"""The sections of an AppImage's runtime the updater reads: `.upd_info` (where the next release
is) and `.sig_key` (the publisher's key, in a signed AppImage).

A type-2 AppImage starts with an ELF whose section header table names them; AppImage tools write
their text in place, NUL-padded. Sizes are bounded: a damaged file cannot make us read gigabytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import UpdateError

UPDATE_INFORMATION = ".upd_info"
SIGNING_KEY = ".sig_key"
TABLE_MAX = 1 << 20
SECTION_MAX = 64 << 10


def _layout(ident: bytes, path: Path) -> tuple[str, bool]:
    if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2) or ident[8:11] != b"AI\x02":
        raise UpdateError(f"{path} is not a type-2 AppImage: nothing to update")
    return ("<" if ident[5] == 1 else ">"), ident[4] == 2


def sections(path: Path) -> dict[str, tuple[int, int]]:
    """name → (file offset, size) of every section of the AppImage's runtime."""
    try:
        with Path(path).open("rb") as handle:
            ident = handle.read(64)
            order, wide = _layout(ident, path)
            shoff, shentsize, shnum, shstrndx = (
                struct.unpack_from(order + "Q", ident, 0x28) + struct.unpack_from(order + "HHH", ident, 0x3A)
                if wide else struct.unpack_from(order + "I", ident, 0x20) + struct.unpack_from(order + "HHH", ident, 0x2E))
            if shnum * shentsize > TABLE_MAX or shstrndx >= shnum:
                raise UpdateError(f"{path}: its ELF section table is damaged")
            handle.seek(shoff)
            table = handle.read(shnum * shentsize)
            entry = order + ("I4x8x8xQQ" if wide else "I4x4x4xII")  # sh_name, sh_offset, sh_size
            raw = [struct.unpack_from(entry, table, index * shentsize) for index in range(shnum)]
            names_at, names_size = raw[shstrndx][1], min(raw[shstrndx][2], TABLE_MAX)
            handle.seek(names_at)
            names = handle.read(names_size)
    except (OSError, struct.error) as error:
        raise UpdateError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    return {names[name:names.find(b"\0", name)].decode(errors="replace"): (offset, size)
            for name, offset, size in raw}


def section_text(path: Path, name: str) -> str:
    """A section's text up to its first NUL ("" when the section is missing or empty)."""
    found = sections(path).get(name)
    if found is None:
        return ""
    offset, size = found
    with Path(path).open("rb") as handle:
        handle.seek(offset)
        return handle.read(min(size, SECTION_MAX)).split(b"\0", 1)[0].decode(errors="replace").strip()
