"""Verification steps: each runs one check of `release.verify` / `release.systems` on a fresh AppImage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from . import freeze, rootfs, swipl, systems, verify
from .artifacts import Kind
from .config import Flavor
from .pipeline import BaseStep, Context

Check = Callable[[Context, Flavor, Path], dict]


def model_filename(ctx: Context, flavor: Flavor) -> str | None:
    return ctx.artifacts.get(Kind.MODEL).path.name if flavor.llm else None


def smoke(ctx: Context, flavor: Flavor, appimage: Path) -> dict:
    return {"seconds": verify.smoke(appimage, ctx.settings.version)}


def functional(ctx: Context, flavor: Flavor, appimage: Path) -> dict:
    prolog = swipl.bundled(ctx.settings, flavor)
    if not flavor.llm:
        return verify.functional_plain(appimage, prolog=prolog)
    command, env = freeze.source_tea(ctx.settings, flavor)
    model = ctx.artifacts.get(Kind.MODEL).path
    return verify.functional_llm(appimage, model.name, command, {**env, "TEA_MODEL_PATH": str(model)}, prolog=prolog)


def on_systems(ctx: Context, flavor: Flavor, appimage: Path) -> dict:
    tarball = rootfs.ensure_rootfs(ctx.settings.cache_dir, arch=ctx.settings.arch)
    return {"checked": systems.check_in_rootfs(tarball, appimage, ctx.settings.version,
                                               model_filename=model_filename(ctx, flavor),
                                               prolog=swipl.bundled(ctx.settings, flavor))}


def write_report(ctx: Context, check: str, flavor: Flavor, result: dict) -> dict:
    """Keep what a check found as an artifact: later steps and the manifest read it from there."""
    path = ctx.settings.flavor_dir(flavor) / "reports" / f"{check}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    ctx.register(Kind.REPORT, path, flavor=flavor.name, check=check)
    return result


def read_report(ctx: Context, check: str, flavor: str) -> dict | None:
    """The report of `check` for `flavor` in this run, None when that check did not run."""
    found = ctx.artifacts.all(Kind.REPORT, flavor, check=check)
    return json.loads(found[0].path.read_text()) if found else None


class CheckStep(BaseStep):
    def __init__(self, kind: str, flavor: Flavor, check: Check, *, agents: bool = True) -> None:
        self.kind, self.flavor, self.check, self.agents = kind, flavor, check, agents
        self.name = f"{kind}-{flavor.name}"
        self.after = (f"appimage-{flavor.name}",) + (("model",) if flavor.llm else ())

    def inputs(self, ctx: Context) -> dict:
        """The example agents the check runs are inputs too: editing one reruns it."""
        return {"examples": verify.EXAMPLES} if self.agents else {}

    def run(self, ctx: Context) -> dict:
        result = self.check(ctx, self.flavor, ctx.artifacts.get(Kind.APPIMAGE, self.flavor.name).path)
        return write_report(ctx, self.kind, self.flavor, result)
