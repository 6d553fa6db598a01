"""The AppImage's layout for delta updates, and its update information.

mksquashfs writes file data in directory order, so in the 270M LLM AppImage the model sat after
the 50 MB onedir, and one changed line of tea's code shifted every byte after tea's executable:
85% of the 64 KiB blocks differed (benchmarks/delta.py's two releases). With `-sort` priorities
(LAYOUT) the model comes first, right after the superblock, and tea's own code last — the
executable that holds its bytecode, then its small package files and the version-stamped desktop
metadata, which fill the last fragment blocks: 0.4% of the blocks differ, all at the end. The
runtime is padded to a multiple of 64 KiB (appimage.pad_elf), so even a new runtime leaves the
model's blocks on the grid of the block map.

The update information (AppImage spec: `gh-releases-zsync|owner|repo|tag|file.zsync` or
`zsync|URL`) goes into the runtime's `.upd_info` before the image is signed, so the signature
covers it.
"""

from __future__ import annotations

from pathlib import Path

from . import signing
from .errors import BuildError

UPDATE_SECTION = ".upd_info"
# mksquashfs -sort priorities, highest first; anything unlisted sits at 0, in between.
LAYOUT = (
    ("*.gguf", 32767),                           # the model: right after the superblock
    ("usr/bin/tea", -1),                         # the frozen tea, which holds tea's bytecode
    ("usr/bin/_internal/the_edge_agent*", -2),   # tea's package files and metadata (small: fragments)
    ("usr/share/metainfo/*", -2),                # version-stamped
    ("*.desktop", -2),
)


def embed_update_information(appimage: Path, text: str) -> None:
    """Write the update information into the runtime's `.upd_info` (before signing: it is part of
    what the signature covers)."""
    section = signing.sections(appimage).get(UPDATE_SECTION)
    if section is None:
        raise BuildError(f"{appimage.name}: its runtime has no {UPDATE_SECTION} section for the update information")
    signing.write_section(appimage, section, text.encode(), UPDATE_SECTION)


def update_information(appimage: Path) -> str:
    """What `--appimage-updateinformation` prints: the section's text up to its first NUL."""
    section = signing.sections(appimage).get(UPDATE_SECTION)
    return signing.read_section(appimage, section).decode() if section else ""
