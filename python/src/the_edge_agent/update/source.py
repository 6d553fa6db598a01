"""Where the next release is: the update information an AppImage embeds, resolved to file names
and their locations.

Two transports of the AppImage update information are understood:
- `gh-releases-zsync|OWNER|REPO|TAG|PATTERN`: the GitHub release TAG (`latest`: the newest
  release that is neither a draft nor a prerelease), whose `.zsync` asset matches PATTERN
  (fnmatch); the API is at $GITHUB_API_URL (default https://api.github.com);
- `zsync|URL`: the `.zsync` at URL, beside the release's other files.
`--release URL_OR_DIR` replaces the place (a base URL, or a directory holding the release's
files) and keeps the embedded pattern or name. Which file is the new AppImage is always decided by
the release's SHA256SUMS: the one `.zsync` it lists that matches, without its `.zsync`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

from ..errors import UpdateError
from .blockmap import PLAIN_NAME

ZSYNC = ".zsync"
GITHUB_API = "https://api.github.com"


@dataclass(frozen=True)
class Release:
    """The files of one release: `base` (a URL ending in '/' or a directory) + name, or the URL the
    release lists for a name (`assets`, GitHub's browser_download_url)."""

    base: str
    pattern: str  # which `.zsync` names the AppImage (fnmatch)
    assets: dict[str, str] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        return self.base.startswith(("http://", "https://")) or bool(self.assets)

    def locate(self, name: str) -> str:
        """The URL (or path) of one of the release's files; only plain names are ever joined."""
        if not PLAIN_NAME.fullmatch(name):
            raise UpdateError(f"refusing the file name {name!r}: only plain file names are accepted")
        if self.assets:
            if name not in self.assets:
                raise UpdateError(f"the release has no asset {name}")
            return self.assets[name]
        return urljoin(self.base, quote(name)) if self.remote else str(Path(self.base) / name)

    def appimage_name(self, listed: list[str]) -> str:
        """The AppImage a release's SHA256SUMS lists through exactly one `.zsync` matching the pattern."""
        found = sorted(name for name in listed if name.endswith(ZSYNC) and fnmatchcase(name, self.pattern))
        if len(found) != 1:
            raise UpdateError(f"the release at {self.where} lists {len(found)} update files matching "
                              f"{self.pattern} in its SHA256SUMS (expected one)")
        return found[0][: -len(ZSYNC)]

    @property
    def where(self) -> str:
        return self.base or "GitHub"


def version_in_name(name: str) -> str | None:
    """The version in a release file's name, `tea-<flavor>-<version>-<arch>.AppImage`."""
    match = re.fullmatch(r"tea-.+?-(\d[^-]*)-[^-]+\.AppImage", name)
    return match[1] if match else None


def parse(information: str) -> tuple[str, list[str]]:
    """(transport, fields) of update information this updater understands."""
    fields = information.split("|")
    if fields[0] == "gh-releases-zsync" and len(fields) == 5 and all(fields):
        return fields[0], fields[1:]
    if fields[0] == "zsync" and len(fields) == 2 and urlsplit(fields[1]).scheme in ("http", "https"):
        return fields[0], fields[1:]
    if not information:
        raise UpdateError("this AppImage carries no update information: download the new release by hand, "
                          "or give its place with --release URL")
    raise UpdateError(f"unsupported update information {information[:80]!r}: expected "
                      f"gh-releases-zsync|owner|repo|tag|file or zsync|URL")


def resolve(information: str, release: str | None, fetch_json) -> Release:
    """The release the update information (or `release`, when given) points at."""
    transport, fields = parse(information)
    pattern = fields[3] if transport == "gh-releases-zsync" else urlsplit(fields[0]).path.rsplit("/", 1)[-1]
    if release:
        return Release(release if not release.startswith(("http://", "https://")) else release.rstrip("/") + "/",
                       pattern)
    if transport == "zsync":
        return Release(fields[0][: fields[0].rindex("/") + 1], pattern)
    return github_release(*fields[:3], pattern=pattern, fetch_json=fetch_json)


def github_release(owner: str, repo: str, tag: str, *, pattern: str, fetch_json) -> Release:
    if not all(re.fullmatch(r"[\w.-]+", part) for part in (owner, repo, tag)):
        raise UpdateError(f"bad GitHub repository or tag in the update information: {owner}/{repo} {tag}")
    api = os.environ.get("GITHUB_API_URL", GITHUB_API).rstrip("/")
    which = "latest" if tag == "latest" else f"tags/{tag}"
    answer = fetch_json(f"{api}/repos/{owner}/{repo}/releases/{which}")
    try:
        assets = {asset["name"]: asset["browser_download_url"] for asset in answer["assets"]}
    except (KeyError, TypeError):
        raise UpdateError(f"GitHub's answer for {owner}/{repo} release {tag} has no asset list") from None
    return Release("", pattern, assets)


def decode_json(data: bytes, what: str):
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise UpdateError(f"{what} is not JSON") from None
