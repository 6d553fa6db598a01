"""The release, in order: the table of contents of `invoke release`.

Each entry is (stage, step). Task `invoke freeze` runs the plan up to the freeze stage, and so
on; the runner skips whatever is already up to date, so running a later stage is always safe.
"""

from __future__ import annotations

from . import (appdir, delta, deps, finalize, freeze, llama, model, package, packagers, sbom, swipl, variant_proof,
               venv, verify_steps)
from .config import Settings
from .errors import ConfigError
from .pipeline import Step

STAGES = ("deps", "model", "freeze", "appdir", "appimage", "smoke", "functional", "variants", "systems",
          "checksums")


def release_plan(settings: Settings, *, skip: frozenset[str] = frozenset()) -> list[tuple[str, Step]]:
    plan: list[tuple[str, Step]] = [
        ("deps", deps.SystemPackagesStep()),             # apt packages (or the command to run)
        ("deps", deps.BuildHostStep()),                  # the pinned Debian build root with its CPython
        ("deps", packagers.PackagerStep()),              # pick packager; compile the builtin runtime
        ("deps", swipl.SwiplStep()),                     # SWI-Prolog for Prolog nodes (built once, cached)
        ("model", model.ModelStep()),                    # verified GGUF in the download cache
    ]
    if any(flavor.llm for flavor in settings.flavors):
        plan.append(("deps", llama.WheelStep()))         # portable llama-cpp-python, built in the root
    for flavor in settings.flavors:
        plan += [
            ("deps", venv.VenvStep(flavor)),             # build venv (with the wheel for LLM flavors)
            ("freeze", freeze.FreezeStep(flavor)),       # PyInstaller onedir that answers --version
            ("appdir", appdir.AppDirStep(flavor)),       # AppRun, desktop, icons, app, model; ELF audit
            ("appimage", package.AppImageStep(flavor)),  # dist/<name>.AppImage, signed when keyed, validated
            ("appimage", sbom.SbomStep(flavor)),         # dist/<name>.AppImage.cdx.json (CycloneDX)
            ("smoke", verify_steps.CheckStep("smoke", flavor, verify_steps.smoke, agents=False)),
            ("functional", verify_steps.CheckStep("functional", flavor, verify_steps.functional)),
            *([("variants", variant_proof.VariantProofStep(flavor))] if flavor.llm else []),  # each CPU variant
            ("systems", verify_steps.CheckStep("systems", flavor, verify_steps.on_systems)),  # Debian 11-13, no Python
            ("checksums", delta.DeltaStep(flavor)),       # <name>.zsync and <name>.blockmap for updaters
        ]
    plan.append(("checksums", finalize.FinalizeStep(settings.flavors)))  # split oversize, SHA256SUMS, manifest
    return [(stage, step) for stage, step in plan if stage not in skip]


def steps_until(settings: Settings, last_stage: str, *, skip: frozenset[str] = frozenset()) -> list[Step]:
    if last_stage not in STAGES:
        raise ConfigError(f"unknown stage '{last_stage}': use one of {', '.join(STAGES)}")
    unknown = skip - set(STAGES)
    if unknown:
        raise ConfigError(f"cannot skip unknown stage(s) {', '.join(sorted(unknown))}: use {', '.join(STAGES)}")
    if "functional" in skip:
        skip |= {"variants"}  # the variant proof compares every variant's answer with the functional one
    limit = STAGES.index(last_stage)
    return [step for stage, step in release_plan(settings, skip=skip) if STAGES.index(stage) <= limit]
