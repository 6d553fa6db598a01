"""The delta step: the two files published beside each AppImage for updaters (the layout that
makes them pay off is release/layout.py).

Published beside `<name>.AppImage`:
- `<name>.AppImage.zsync`, made by zsyncmake, for AppImageUpdate and Debian's `zsync` (its MTime
  header is left out so the file is reproducible). Its URL is the AppImage's name, relative: it
  serves artifacts under the asset cap; a split one has no whole file to point at.
- `<name>.AppImage.blockmap` (the_edge_agent.update.blockmap) for `tea self-update`, with the
  parts the checksums step splits the file into (the same cap through split.part_sizes), so it
  can map whole-file ranges onto them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from the_edge_agent.update import blockmap

from . import checksums, proc, split
from .artifacts import Kind
from .config import Flavor
from .errors import BuildError
from .pipeline import BaseStep, Context

ZSYNC_SUFFIX = ".zsync"


def zsync_path(appimage: Path) -> Path:
    return appimage.with_name(appimage.name + ZSYNC_SUFFIX)


def blockmap_path(appimage: Path) -> Path:
    return appimage.with_name(appimage.name + blockmap.SUFFIX)


def without_mtime(control: bytes) -> bytes:
    """A .zsync control file without its MTime header line (the build time: not reproducible)."""
    header, blank, body = control.partition(b"\n\n")
    kept = [line for line in header.split(b"\n") if not line.startswith(b"MTime:")]
    return b"\n".join(kept) + blank + body


def write_zsync(appimage: Path) -> Path:
    if shutil.which("zsyncmake") is None:
        raise BuildError("zsyncmake not found: apt-get install zsync")
    out = zsync_path(appimage)
    partial = out.with_name(f".{out.name}.partial")
    proc.run(["zsyncmake", "-u", appimage.name, "-o", partial, appimage], what="zsyncmake")
    partial.write_bytes(without_mtime(partial.read_bytes()))
    os.replace(partial, out)
    return out


def write_blockmap(appimage: Path, cap: int) -> Path:
    sizes = split.part_sizes(appimage.stat().st_size, cap)
    parts = tuple(map(blockmap.Part, split.part_names(appimage.name, len(sizes)), sizes))
    return checksums.write_text_atomic(blockmap_path(appimage), blockmap.build(appimage, parts).to_json())


class DeltaStep(BaseStep):
    """`<name>.zsync` and `<name>.blockmap` of the AppImage the appimage step made."""

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"delta-{flavor.name}"
        self.after = (f"appimage-{flavor.name}",)

    def inputs(self, ctx: Context) -> dict:
        return {"cap": ctx.settings.asset_size_cap, "blockmap_format": Path(blockmap.__file__)}

    def run(self, ctx: Context) -> dict:
        appimage = ctx.artifacts.get(Kind.APPIMAGE, self.flavor.name).path
        made = {Kind.ZSYNC: write_zsync(appimage), Kind.BLOCKMAP: write_blockmap(appimage, ctx.settings.asset_size_cap)}
        for kind, path in made.items():
            ctx.register(kind, path, flavor=self.flavor.name, appimage=appimage.name)
        return {kind.value: path.name for kind, path in made.items()}
