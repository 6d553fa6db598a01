"""Verification steps: each runs one check of `release.verify`/`release.clean_system` on a fresh AppImage."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import clean_system, freeze, rootfs, verify
from .config import Flavor
from .pipeline import BaseStep, Context, code_of

Check = Callable[[Context, Flavor, Path], dict]


def smoke(ctx: Context, flavor: Flavor, appimage: Path) -> dict:
    return {"seconds": verify.smoke(appimage, ctx.settings.version)}


def functional(ctx: Context, flavor: Flavor, appimage: Path) -> dict:
    if not flavor.llm:
        return verify.functional_plain(appimage)
    command, env = freeze.source_tea(ctx.settings, flavor)
    model = Path(ctx.results["model"]["path"])
    return verify.functional_llm(appimage, model.name, command, {**env, "TEA_MODEL_PATH": str(model)})


def clean(ctx: Context, flavor: Flavor, appimage: Path) -> dict:
    tarball = rootfs.ensure_rootfs(ctx.settings.cache_dir, arch=ctx.settings.arch)
    model_filename = Path(ctx.results["model"]["path"]).name if flavor.llm else None
    return {"checked": clean_system.check_in_rootfs(tarball, appimage, ctx.settings.version,
                                                    model_filename=model_filename)}


class CheckStep(BaseStep):
    def __init__(self, kind: str, flavor: Flavor, check: Check) -> None:
        self.flavor, self.check = flavor, check
        self.name = f"{kind}-{flavor.name}"
        self.after = (f"appimage-{flavor.name}",)

    def inputs(self, ctx: Context) -> dict:
        return {"code": code_of(verify, clean_system, rootfs)}

    def run(self, ctx: Context) -> dict:
        return self.check(ctx, self.flavor, Path(ctx.results[f"appimage-{self.flavor.name}"]["path"]))
