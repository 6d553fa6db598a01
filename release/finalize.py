"""The checksums step: what a release job publishes and what a user verifies.

Artifacts at or above the asset size cap are also split into parts; `SHA256SUMS` lists the files
that get published (parts instead of an oversized whole); `manifest.json` is the full record. Both
are merged into what `dist/` already holds, so runs for several arches can share one `dist/`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from . import checksums, reassemble, split
from .config import REPO, Settings
from .pipeline import BaseStep, Context

MANIFEST = checksums.MANIFEST_NAME


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def artifact_record(ctx: Context, flavor_name: str) -> dict:
    settings = ctx.settings
    built = ctx.results[f"appimage-{flavor_name}"]
    path = Path(built["path"])
    record = {"name": path.name, "kind": "appimage", "arch": settings.arch, "flavor": flavor_name,
              "size": built["size"], "sha256": built["sha256"], "packager": built["packager"],
              "min_glibc": ctx.results[f"appdir-{flavor_name}"]["min_glibc"], "model": None}
    if next(f for f in settings.flavors if f.name == flavor_name).llm:
        model = settings.model
        record["model"] = {"name": model.name, "filename": model.filename,
                           "sha256": ctx.results["model"]["sha256"], "source": model.source}
        record["cpu_variants"] = ctx.results.get(f"variant-proof-{flavor_name}")  # proven natively/emulated/not
    parts = split.split_if_needed(path, settings.asset_size_cap)
    if parts:
        record["parts"] = [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in parts]
    return record


def tool_versions(settings: Settings) -> dict:
    python_pins = settings.pins["python"]
    return {"llama-cpp-python": python_pins["llama_cpp_python"], "llama_cmake_args": python_pins["llama_cmake_args"],
            "build_requirements": python_pins["requirements"],
            "tools": {name: entry.get("version") for name, entry in settings.pins.get("tools", {}).items()}}


def load_manifest(dist: Path) -> dict:
    """dist/manifest.json, or an empty one before the first release into `dist`."""
    path = dist / MANIFEST
    return checksums.read_manifest(path) if path.exists() else {"artifacts": []}


def write_manifest(dist: Path, manifest: dict) -> Path:
    target = dist / MANIFEST
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, target)
    return target


def known_hashes(artifacts: list[dict]) -> dict[str, str]:
    """Hashes the manifest already holds, so SHA256SUMS does not re-read gigabytes."""
    return {entry["name"]: entry["sha256"] for a in artifacts for entry in (a, *a.get("parts", []))}


class FinalizeStep(BaseStep):
    name = "checksums"

    def inputs(self, ctx: Context) -> dict:
        built = {name: result.get("sha256") for name, result in ctx.results.items() if name.startswith("appimage-")}
        proofs = {name: result for name, result in ctx.results.items() if name.startswith("variant-proof-")}
        return {"built": built, "cap": ctx.settings.asset_size_cap, "proofs": proofs}

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.settings.dist_dir / "SHA256SUMS", ctx.settings.dist_dir / MANIFEST]

    def run(self, ctx: Context) -> dict:
        settings, dist = ctx.settings, ctx.settings.dist_dir
        ours = [artifact_record(ctx, flavor.name) for flavor in settings.flavors]
        names = {a["name"] for a in ours}
        kept = [a for a in load_manifest(dist)["artifacts"] if a["name"] not in names and (dist / a["name"]).exists()]
        artifacts = sorted(kept + ours, key=lambda a: a["name"])
        manifest = {"schema": 1, "version": settings.version, "commit": git_commit(), "artifacts": artifacts,
                    "tools": tool_versions(settings), "build_seconds": round(sum(ctx.timings.values()), 1),
                    "step_seconds": ctx.timings}
        checksums.write_sums(dist, checksums.published_names(manifest), known=known_hashes(artifacts))
        reassemble.write_reassemble_script(dist, manifest)
        write_manifest(dist, manifest)
        return {"artifacts": sorted(names)}
