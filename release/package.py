"""The appimage step: AppDir → `dist/<name>.AppImage`, with the packager the packager step chose."""

from __future__ import annotations


from . import appimage, download, packagers, squashfs
from .artifacts import Kind
from .config import Flavor
from .pipeline import BaseStep, Context


class AppImageStep(BaseStep):
    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"appimage-{flavor.name}"
        self.after = ("packager", f"appdir-{flavor.name}")

    def run(self, ctx: Context) -> dict:
        settings, packager = ctx.settings, ctx.artifacts.get(Kind.PACKAGER)
        chosen = packager.extra["name"]
        tree = ctx.artifacts.get(Kind.APPDIR, self.flavor.name).path
        out = settings.appimage_path(self.flavor)
        out.parent.mkdir(parents=True, exist_ok=True)
        if chosen == "builtin":
            # One pass: mksquashfs writes behind a gap the runtime then fills, so the model is
            # written once, next to its final name (a rename, not another multi-GB copy).
            image = squashfs.make_squashfs(tree, out.with_name(f".{out.name}.building"),
                                           offset=packager.path.stat().st_size,
                                           uncompressed_globs=squashfs.stored_uncompressed(self.flavor.llm))
            appimage.write_runtime_over(packager.path, image, out)
        else:
            packagers.build_with_tool(chosen, tree, out, arch=settings.arch, toolbox=packagers.Toolbox.of(settings))
        appimage.validate_appimage(out)
        ctx.register(Kind.APPIMAGE, out, flavor=self.flavor.name, digest=download.sha256_file(out),
                     packager=chosen, size=out.stat().st_size)
        return {"packager": chosen}
