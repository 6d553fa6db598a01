"""The checksums step: what a release job publishes and what a user verifies.

Artifacts at or above the asset size cap are also split into parts; `SHA256SUMS` lists the files
that get published (parts instead of an oversized whole); `manifest.json` is the full record. Both
are merged into what `dist/` already holds, so runs for several arches can share one `dist/`.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import checksums, provenance, reassemble, signing, split, verify_steps
from .artifacts import Artifact, Kind
from .config import PINS_FILE, REPO, Flavor, Settings
from .pipeline import BaseStep, Context

MANIFEST = checksums.MANIFEST_NAME


def artifact_record(ctx: Context, appimage: Artifact) -> dict:
    """The manifest entry of one AppImage (and its parts, written here when it is over the cap)."""
    flavor = appimage.flavor
    appdir = ctx.artifacts.get(Kind.APPDIR, flavor).extra
    host = ctx.artifacts.get(Kind.BUILD_HOST).extra["description"]
    record = {"name": appimage.path.name, "kind": "appimage", "arch": ctx.settings.arch, "flavor": flavor,
              "size": appimage.extra["size"], "sha256": appimage.digest, "packager": appimage.extra["packager"],
              "unsigned_sha256": appimage.extra["unsigned_sha256"], "signed_by": appimage.extra["signed_by"],
              "min_glibc": appdir["min_glibc"], "min_glibcxx": appdir["min_glibcxx"],
              "base": host["base"], "distribution": host["distribution"], "build_host": host["kind"],
              "python": host["python"], "model": None,
              "swi_prolog": ctx.artifacts.get(Kind.ONEDIR, flavor).extra.get("swi_prolog")}
    sbom = ctx.artifacts.get(Kind.SBOM, flavor)
    record["sbom"] = {"name": sbom.path.name, "sha256": sbom.digest, "format": "CycloneDX 1.6 JSON"}
    for kind in (Kind.ZSYNC, Kind.BLOCKMAP):
        companion = ctx.artifacts.get(kind, flavor)
        record[kind.value] = {"name": companion.path.name, "sha256": companion.digest}
    if any(f.name == flavor and f.llm for f in ctx.settings.flavors):
        model = ctx.settings.model
        record["model"] = {"name": model.name, "filename": model.filename,
                           "sha256": ctx.artifacts.get(Kind.MODEL).digest, "source": model.source}
        # what the build shipped and dropped (with why), then where each shipped variant was proven
        proof = verify_steps.read_report(ctx, "variant-proof", flavor) or {}
        record["cpu_variants"] = {**ctx.artifacts.get(Kind.WHEEL).extra["cpu_variants"], **proof}
    parts = split.split_if_needed(appimage.path, ctx.settings.asset_size_cap)
    for part in parts:
        ctx.register(Kind.PART, appimage.path.with_name(part.name), flavor=flavor, digest=part.sha256)
    if parts:
        record["parts"] = [part.to_json() for part in parts]
    return record


def tool_versions(settings: Settings) -> dict:
    python_pins = settings.pins.python
    return {"llama-cpp-python": python_pins.llama_cpp_python, "llama_cmake_args": list(python_pins.llama_cmake_args),
            "build_requirements": list(python_pins.requirements),
            "tools": {name: tool.version for name, tool in settings.pins.tools.items()}}


def read_dist_manifest(dist: Path) -> dict:
    """dist/manifest.json, or an empty one before the first release into `dist`."""
    path = dist / MANIFEST
    return checksums.read_manifest(path) if path.exists() else {"artifacts": []}


def write_manifest(dist: Path, manifest: dict) -> Path:
    return checksums.write_text_atomic(dist / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def known_hashes(artifacts: list[dict]) -> dict[str, str]:
    """Hashes the manifest already holds, so SHA256SUMS does not re-read gigabytes."""
    return {entry["name"]: entry["sha256"] for a in artifacts
            for entry in (a, *a.get("parts", []), *checksums.companions(a))}


def build_system(ctx: Context) -> dict[str, str]:
    """provenance.base_system of this run's build host."""
    floor = ctx.artifacts.get(Kind.BUILD_HOST).extra["description"]["floor"]
    return provenance.base_system(ctx.host.system_root, floor["glibc"], ctx.settings.arch)


class FinalizeStep(BaseStep):
    """Split what is over the cap, then SHA256SUMS, reassemble.sh and manifest.json in dist/."""

    name = "checksums"

    def __init__(self, flavors: tuple[Flavor, ...]) -> None:
        wheel = ("llama-wheel",) if any(flavor.llm for flavor in flavors) else ()
        self.after = ("build-root", *wheel) + tuple(
            f"{kind}-{flavor.name}" for flavor in flavors
            for kind in ("appimage", "sbom", "delta", "smoke", "functional", "variant-proof", "systems"))

    def inputs(self, ctx: Context) -> dict:
        key = ctx.settings.signing_key
        return {"cap": ctx.settings.asset_size_cap, "tools": tool_versions(ctx.settings),
                "signing_key": key.fingerprint if key else None}

    def run(self, ctx: Context) -> dict:
        settings, dist = ctx.settings, ctx.settings.dist_dir
        ours = [artifact_record(ctx, appimage) for appimage in ctx.artifacts.all(Kind.APPIMAGE)]
        names = {a["name"] for a in ours}
        kept = [a for a in read_dist_manifest(dist)["artifacts"]
                if a["name"] not in names and (dist / a["name"]).exists()]
        artifacts = sorted(kept + ours, key=lambda a: a["name"])
        manifest = {"schema": 1, "version": settings.version, "commit": provenance.git_commit(REPO),
                    "artifacts": artifacts, "tools": tool_versions(settings),
                    "provenance": provenance.record(PINS_FILE, settings.release_date, build_system(ctx)),
                    "build_seconds": round(sum(ctx.timings.values()), 1), "step_seconds": ctx.timings}
        script = reassemble.write_reassemble_script(dist, manifest)  # before the sums, which list it
        if script is not None:
            ctx.register(Kind.SCRIPT, script)
        sums = ctx.register(Kind.CHECKSUMS, checksums.write_sums(dist, checksums.published_names(manifest),
                                                                 known=known_hashes(artifacts))).path
        signature = signing.sign_sums(sums, settings.signing_key)
        if signature is not None:
            ctx.register(Kind.SIGNATURE, signature)
        ctx.register(Kind.MANIFEST, write_manifest(dist, manifest))
        return {"artifacts": sorted(names)}
