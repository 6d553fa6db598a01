"""`invoke reproduce`: is the release in dist/ what its commit builds, wherever it is checked out?

The commit manifest.json records is cloned into a second checkout at another path and built there
up to the AppImages (the same arch, flavors, model, packager and base as the manifest's, the same
caches, no signing key); every AppImage's unsigned sha256 (the signature sections read as zeros,
release/signing.py) must equal the manifest's `unsigned_sha256`. A build path that reaches an
artifact (pip's direct_url.json did) makes them differ. The result goes into each rebuilt
artifact's manifest record as `reproduced` (so it survives `invoke manifest --merge`); SHA256SUMS
does not cover the manifest, so the published files stay as they are.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import arch as arches
from . import checksums, config, finalize, gpg, log, proc, signing
from .config import REPO
from .errors import ConfigError, VerifyError

METHOD = "rebuilt from a second checkout at another path, with the same caches"


def build_options(manifest: dict, arch: str) -> list[str]:
    """The `invoke appimage` options that rebuild the manifest's AppImages of `arch`."""
    ours = [a for a in manifest["artifacts"] if a.get("kind") == "appimage" and a.get("arch") == arch]
    if not ours:
        raise ConfigError(f"the manifest records no {arch} AppImage to rebuild")
    flavors = sorted({a.get("flavor") for a in ours})
    models = {a["model"]["name"] for a in ours if a.get("model")}
    options = ["--arch", arch, "--flavor", flavors[0] if len(flavors) == 1 else "all"]
    options += ["--model", models.pop()] if models else []
    for field in ("packager", "base"):
        values = {a.get(field) for a in ours}
        if len(values) != 1 or None in values:
            raise ConfigError(f"the {arch} AppImages of the manifest do not record one {field}: cannot rebuild them")
        options += [f"--{field}", values.pop()]
    return options


def unbuilt_changes(commit: str) -> str:
    """What this checkout holds beyond `commit` (when it is HEAD): the release may have been built from it."""
    head = proc.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=False).stdout.strip()
    if head != commit:
        return ""
    return proc.run(["git", "status", "--porcelain"], cwd=REPO, check=False).stdout.strip()


def second_checkout(commit: str, where: Path) -> Path:
    """A clone of this repository at `where`, at `commit` (full history: the release date comes from git)."""
    proc.run(["git", "clone", "-q", "--no-checkout", REPO, where], what="git clone", error=ConfigError)
    proc.run(["git", "-c", "advice.detachedHead=false", "checkout", "-q", commit], cwd=where,
             what=f"git checkout {commit[:12]}", error=ConfigError)
    return where


def rebuild(checkout: Path, options: list[str]) -> Path:
    """`invoke appimage` in the checkout (its own build/ and dist/), unsigned; returns its dist/."""
    env = {key: value for key, value in os.environ.items() if key not in (gpg.KEY_ENV, gpg.PASSPHRASE_ENV)}
    done = proc.run([sys.executable, "-m", "invoke", "appimage", *options], cwd=checkout, env=env, clean_env=True,
                    stream=True, check=False, error=VerifyError, what="the second build")
    if done.returncode != 0:
        raise VerifyError(f"the second build failed (exit {done.returncode}); its log: {proc.current_log()}")
    return checkout / "dist"


def compare(manifest: dict, arch: str, dist: Path) -> dict[str, str]:
    """name → the second build's unsigned sha256, for each AppImage of `arch` in the manifest."""
    found = {}
    for artifact in manifest["artifacts"]:
        if artifact.get("kind") == "appimage" and artifact.get("arch") == arch:
            rebuilt = dist / artifact["name"]
            if not rebuilt.is_file():
                raise VerifyError(f"the second build made no {artifact['name']}")
            found[artifact["name"]] = signing.appimage_digest(rebuilt)
    return found


def reproduce(dist_dir: Path, *, arch: str | None = None, keep: bool = False) -> dict[str, str]:
    """Rebuild dist/'s AppImages of `arch` in a second checkout; record the verdict in the manifest
    and return name → the second build's unsigned sha256. VerifyError (after recording) when any differs."""
    arch = arches.normalize(arch) if arch else arches.host_arch()
    if not (dist_dir / checksums.MANIFEST_NAME).is_file():
        raise ConfigError(f"{dist_dir}: no {checksums.MANIFEST_NAME}; run `invoke release` first")
    manifest = finalize.read_dist_manifest(dist_dir)
    commit = str(manifest.get("commit") or "")
    if len(commit) != 40:
        raise ConfigError(f"{dist_dir / checksums.MANIFEST_NAME} records no git commit: nothing to rebuild")
    changes = unbuilt_changes(commit)
    if changes:
        raise ConfigError(f"this checkout has changes beyond {commit[:12]} ({changes.splitlines()[0].strip()}, ...): "
                          f"the release may hold them; commit, rebuild, then reproduce")
    options = build_options(manifest, arch)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tea-reproduce-"))
    try:
        with proc.logging_to(config.default_cache_dir() / "logs" / "reproduce.log"):
            log.info(f"reproduce: building {commit[:12]} again in {work / 'checkout'} ({' '.join(options)})")
            rebuilt = compare(manifest, arch, rebuild(second_checkout(commit, work / "checkout"), options))
    finally:
        if keep:
            log.info(f"reproduce: kept the second checkout and its build in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    differ = sorted(name for name, sha in rebuilt.items() if sha != expected_digest(manifest, name))
    seconds = round(time.monotonic() - started, 1)
    for artifact in manifest["artifacts"]:
        if artifact["name"] in rebuilt:
            artifact["reproduced"] = {"identical": artifact["name"] not in differ, "method": METHOD,
                                      "second_unsigned_sha256": rebuilt[artifact["name"]], "seconds": seconds}
    finalize.write_manifest(dist_dir, manifest)
    if differ:
        raise VerifyError(f"not reproducible: {', '.join(differ)} built from {commit[:12]} in another checkout "
                          f"has another unsigned sha256 (recorded in manifest.json)")
    log.info(f"reproduce: {len(rebuilt)} AppImage(s) byte-identical from a second checkout ({seconds} s)")
    return rebuilt


def expected_digest(manifest: dict, name: str) -> str | None:
    return next(a.get("unsigned_sha256") for a in manifest["artifacts"] if a["name"] == name)
