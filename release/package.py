"""The packager and appimage steps: AppDir → `dist/<name>.AppImage`.

`auto` prefers the pinned linuxdeploy when it can be had and otherwise uses the builtin packager
(our static type-2 runtime + mksquashfs), which needs nothing from the network.
"""

from __future__ import annotations

from pathlib import Path

from . import appdir, appimage, cross, download, packagers, runtime_build, squashfs
from .config import Flavor
from .pipeline import BaseStep, Context, code_of, hash_files


class PackagerStep(BaseStep):
    """Decide the packager once per run and prepare it (compile the builtin runtime)."""

    name = "packager"
    after = ("system-packages",)

    def inputs(self, ctx: Context) -> dict:
        return {"requested": ctx.settings.packager, "runtime": hash_files(runtime_build.runtime_sources()),
                "tools": ctx.settings.pins.get("tools", {})}

    def outputs(self, ctx: Context) -> list[Path]:
        return [self.runtime_path(ctx)] if ctx.settings.packager in ("auto", "builtin") else []

    def runtime_path(self, ctx: Context) -> Path:
        return ctx.settings.arch_dir / "runtime" / f"runtime-{ctx.settings.arch}"

    def run(self, ctx: Context) -> dict:
        settings = ctx.settings
        chosen = packagers.resolve_packager(settings.packager, arch=settings.arch,
                                            cache_dir=settings.cache_dir, offline=settings.offline)
        if chosen != "builtin":
            return {"packager": chosen}
        cc = cross.runtime_compiler(settings, settings.arch_dir / "runtime") if cross.is_cross(settings) else None
        runtime = runtime_build.build_runtime(self.runtime_path(ctx).parent, arch=settings.arch, cc=cc)
        return {"packager": chosen, "runtime": str(runtime)}


class AppImageStep(BaseStep):
    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"appimage-{flavor.name}"
        self.after = ("packager", f"appdir-{flavor.name}")

    def inputs(self, ctx: Context) -> dict:
        return {"code": code_of(squashfs, appimage, packagers)}

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.settings.appimage_path(self.flavor)]

    def run(self, ctx: Context) -> dict:
        settings, chosen = ctx.settings, ctx.results["packager"]
        tree = appdir.appdir_path(settings, self.flavor)
        out = settings.appimage_path(self.flavor)
        out.parent.mkdir(parents=True, exist_ok=True)
        if chosen["packager"] == "builtin":
            # One pass: mksquashfs writes behind a gap the runtime then fills, so the model is
            # written once, next to its final name (a rename, not another multi-GB copy).
            runtime = Path(chosen["runtime"])
            image = squashfs.make_squashfs(tree, out.with_name(f".{out.name}.building"),
                                           offset=runtime.stat().st_size)
            appimage.write_runtime_over(runtime, image, out)
        else:
            packagers.build_with_tool(chosen["packager"], tree, out, arch=settings.arch,
                                      cache_dir=settings.cache_dir, tools_config=settings.pins.get("tools", {}))
        appimage.validate_appimage(out)
        return {"path": str(out), "size": out.stat().st_size, "sha256": download.sha256_file(out),
                "packager": chosen["packager"]}
