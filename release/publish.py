"""Publish dist/ to a GitHub release or a directory, idempotently.

What is published comes from the manifest, never from globbing: each artifact (or its parts when it
was split), reassemble.sh, manifest.json and SHA256SUMS last. Every file is checked against
SHA256SUMS first, then compared with what the target already holds: identical files are skipped,
different or partial ones replaced, so a re-run after a failure uploads only what is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import log, proc
from .checksums import MANIFEST_NAME, SUMS_NAME, expected_sha256, published_names, read_manifest, read_sums
from .download import sha256_file
from .errors import ChecksumError, ConfigError, PublishError
from .github import Asset, GitHub, github_token
from .signing import sums_signature_path


@dataclass(frozen=True)
class Item:
    """One file to publish, with the size and sha256 it must have at the target."""

    path: Path
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Report:
    target: str
    dry_run: bool
    split: dict[str, list[str]]
    actions: list[tuple[str, str]] = field(default_factory=list)  # (upload|replace|skip, name) in order

    def names(self, *actions: str) -> list[str]:
        return [name for action, name in self.actions if action in actions]

    @property
    def uploaded(self) -> list[str]:
        return self.names("upload", "replace")

    @property
    def skipped(self) -> list[str]:
        return self.names("skip")

    def summary(self) -> str:
        would = "would " if self.dry_run else ""
        lines = [f"{name}: published as {len(parts)} parts" for name, parts in self.split.items()]
        lines += [f"{would}{action} {name}" for action, name in self.actions]
        return "\n".join([f"publish to {self.target}:", *(f"  {line}" for line in lines)])


def published_files(dist_dir: Path, manifest: dict) -> list[Path]:
    """Binaries first (parts instead of a split whole), then reassemble.sh, manifest, SHA256SUMS
    and its signature, when the release was signed."""
    names = published_names(manifest) + [MANIFEST_NAME, SUMS_NAME]
    if sums_signature_path(Path(dist_dir) / SUMS_NAME).is_file():
        names.append(sums_signature_path(Path(dist_dir) / SUMS_NAME).name)
    paths = [Path(dist_dir) / name for name in names]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise PublishError(f"{dist_dir} lacks {', '.join(missing)}: run the release (and checksums) first")
    return paths


def verified_items(dist_dir: Path, manifest: dict) -> list[Item]:
    """Published files with their sha256; a binary that no longer matches SHA256SUMS stops everything."""
    sums_path = Path(dist_dir) / SUMS_NAME
    sums, binaries = read_sums(sums_path), set(published_names(manifest))
    items = []
    for path in published_files(dist_dir, manifest):
        sha = sha256_file(path)
        if path.name in binaries and sha != expected_sha256(sums, path.name, str(sums_path)):
            raise ChecksumError(f"{path} changed since SHA256SUMS was written: re-run the release")
        items.append(Item(path, path.stat().st_size, sha))
    return items


class Target(Protocol):
    description: str

    def action(self, item: Item) -> str: ...  # "upload", "replace" or "skip"
    def put(self, item: Item, action: str) -> None: ...


class DirTarget:
    """A local or mounted directory with the release's files side by side (a mirror, or tests)."""

    def __init__(self, root: Path, dry_run: bool) -> None:
        self.root = root
        self.description = f"dir:{root}"
        if not dry_run:
            root.mkdir(parents=True, exist_ok=True)

    def action(self, item: Item) -> str:
        dest = self.root / item.name
        if not dest.is_file():
            return "upload"
        same = dest.stat().st_size == item.size and sha256_file(dest) == item.sha256
        return "skip" if same else "replace"

    def put(self, item: Item, action: str) -> None:
        tmp = self.root / f".{item.name}.tmp"
        shutil.copyfile(item.path, tmp)
        shutil.copymode(item.path, tmp)
        os.replace(tmp, self.root / item.name)


class GitHubTarget:
    """A GitHub release, created for the tag if missing; assets compared through their labels."""

    def __init__(self, client: GitHub, tag: str, *, draft: bool, dry_run: bool, commit: str) -> None:
        self.client = client
        self.description = f"GitHub {client.repo} release {tag}"
        self.release = client.find_release(tag) if client.authenticated else None
        if self.release is None and not dry_run:
            self.release = client.create_release(tag, draft=draft, commit=commit)
        self.assets: dict[str, Asset] = {a.name: a for a in client.assets(self.release)} if self.release else {}

    def action(self, item: Item) -> str:
        asset = self.assets.get(item.name)
        if asset is None:
            return "upload"
        return "skip" if asset.holds(item.size, item.sha256) else "replace"

    def put(self, item: Item, action: str) -> None:
        if action == "replace":
            self.client.delete_asset(self.assets.pop(item.name))
        self.client.upload(self.release, item.path, item.name, item.size, item.sha256)


def repo_from_git(cwd: Path | None = None) -> str:
    """owner/name of the `origin` remote when it is on GitHub."""
    result = proc.run(["git", "config", "--get", "remote.origin.url"], cwd=cwd, check=False)
    match = re.search(r"github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?/?$", result.stdout.strip())
    if not match:
        raise ConfigError("cannot tell the GitHub repository from git's origin remote: pass --repo owner/name")
    return match.group(1)


def open_target(target: str, *, tag: str, repo: str | None, draft: bool, dry_run: bool,
                api_url: str | None, retries: int, retry_delay: float, commit: str = "") -> Target:
    if target.startswith("dir:") and target[4:]:
        return DirTarget(Path(target[4:]).absolute(), dry_run)
    if target != "github":
        raise ConfigError(f"unknown publish target '{target}': use github or dir:PATH")
    client = GitHub(repo or repo_from_git(), github_token(required=not dry_run), url=api_url,
                    retries=retries, retry_delay=retry_delay)
    if not client.authenticated:
        log.warn("no GITHUB_TOKEN/GH_TOKEN: the dry run cannot see which assets already exist")
    return GitHubTarget(client, tag, draft=draft, dry_run=dry_run, commit=commit)


def publish(dist_dir: Path, target: str, *, tag: str, repo: str | None = None, draft: bool = False,
            dry_run: bool = False, api_url: str | None = None, retries: int = 3, retry_delay: float = 2.0) -> Report:
    """Make target hold exactly dist_dir's published files; returns what was uploaded/skipped."""
    dist_dir = Path(dist_dir)
    manifest = read_manifest(dist_dir / MANIFEST_NAME)
    items = verified_items(dist_dir, manifest)
    destination = open_target(target, tag=tag, repo=repo, draft=draft, dry_run=dry_run, api_url=api_url,
                              retries=retries, retry_delay=retry_delay, commit=str(manifest.get("commit") or ""))
    split = {a["name"]: [p["name"] for p in a["parts"]] for a in manifest["artifacts"] if a.get("parts")}
    report = Report(destination.description, dry_run, split)
    for item in items:
        action = destination.action(item)
        report.actions.append((action, item.name))
        log.info(f"{'would ' if dry_run else ''}{action} {item.name} ({log.human_bytes(item.size)})")
        if action != "skip" and not dry_run:
            destination.put(item, action)
    return report
