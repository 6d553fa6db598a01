"""The appimage step: AppDir → `dist/<name>.AppImage`, with the packager the packager step chose.

The image is finished under a temporary name — packed (the model first, tea's code last:
layout.LAYOUT), given its update information, then signed when the run has a key — and only then
renamed into place, so the signature covers the final bytes and everything after this step
(smoke, functional, checksums) checks exactly what ships.
"""

from __future__ import annotations

import os

from . import appimage, download, layout, packagers, signing, squashfs
from .artifacts import Kind
from .config import Flavor
from .pipeline import BaseStep, Context


class AppImageStep(BaseStep):
    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"appimage-{flavor.name}"
        self.after = ("packager", f"appdir-{flavor.name}")

    def inputs(self, ctx: Context) -> dict:
        key = ctx.settings.signing_key
        return {"signing_key": key.fingerprint if key else None,
                "update_information": ctx.settings.update_information(self.flavor)}

    def run(self, ctx: Context) -> dict:
        settings, packager = ctx.settings, ctx.artifacts.get(Kind.PACKAGER)
        chosen = packager.extra["name"]
        tree = ctx.artifacts.get(Kind.APPDIR, self.flavor.name).path
        out = settings.appimage_path(self.flavor)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.with_name(f".{out.name}.unsigned")
        if chosen == "builtin":
            # One pass: mksquashfs writes behind a gap the runtime then fills, so the model is
            # written once, next to its final name (a rename, not another multi-GB copy).
            image = squashfs.make_squashfs(tree, out.with_name(f".{out.name}.building"),
                                           offset=packager.path.stat().st_size, priorities=layout.LAYOUT,
                                           uncompressed_globs=squashfs.stored_uncompressed(self.flavor.llm))
            appimage.write_runtime_over(packager.path, image, staging)
        else:
            packagers.build_with_tool(chosen, tree, staging, arch=settings.arch, toolbox=packagers.Toolbox.of(settings))
        layout.embed_update_information(staging, settings.update_information(self.flavor))
        trust = signing.finish_appimage(staging, settings.signing_key)
        os.replace(staging, out)
        appimage.validate_appimage(out)
        ctx.register(Kind.APPIMAGE, out, flavor=self.flavor.name, digest=download.sha256_file(out),
                     packager=chosen, size=out.stat().st_size, **trust)
        return {"packager": chosen, **trust}
