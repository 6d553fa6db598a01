"""Verification steps: each runs one check of `release.verify` / `release.systems` on a fresh AppImage."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import freeze, systems, verify
from .artifacts import Kind
from .config import Flavor
from .pipeline import BaseStep, Context

Check = Callable[[Context, Flavor, Path], dict]


def model_filename(ctx: Context, flavor: Flavor) -> str | None:
    return ctx.artifacts.get(Kind.MODEL).path.name if flavor.llm else None


def smoke(ctx: Context, flavor: Flavor, appimage: Path) -> dict:
    return {"seconds": verify.smoke(appimage, ctx.settings.version)}


def functional(ctx: Context, flavor: Flavor, appimage: Path) -> dict:
    if not flavor.llm:
        return verify.functional_plain(appimage)
    command, env = freeze.source_tea(ctx, flavor)
    model = ctx.artifacts.get(Kind.MODEL).path
    return verify.functional_llm(appimage, model.name, command, {**env, "TEA_MODEL_PATH": str(model)})


def on_systems(ctx: Context, flavor: Flavor, appimage: Path) -> dict:
    settings = ctx.settings
    min_glibc = ctx.artifacts.get(Kind.APPDIR, flavor.name).extra["min_glibc"]
    return {"checked": systems.check_on_systems(
        settings.cache_dir, settings.arch, settings.systems, appimage, settings.version, product=flavor.product,
        min_glibc=min_glibc, model_filename=model_filename(ctx, flavor), llm=flavor.llm)}


class CheckStep(BaseStep):
    def __init__(self, kind: str, flavor: Flavor, check: Check) -> None:
        self.flavor, self.check, self.kind = flavor, check, kind
        self.name = f"{kind}-{flavor.name}"
        after = (f"appimage-{flavor.name}",) + (("model",) if flavor.llm else ())
        # functional runs the unfrozen tea of this build; systems reads the AppDir's floor
        self.after = after + {"functional": (f"venv-{flavor.name}", f"freeze-{flavor.name}"),
                              "systems": (f"appdir-{flavor.name}",)}.get(kind, ())

    def inputs(self, ctx: Context) -> dict:
        return {"systems": list(ctx.settings.systems)} if self.kind == "systems" else {}

    def run(self, ctx: Context) -> dict:
        return self.check(ctx, self.flavor, ctx.artifacts.get(Kind.APPIMAGE, self.flavor.name).path)
