"""What a release was built from, for manifest.json: enough to rebuild it and compare the bytes.

Recorded: the commit, the pins (release.toml as parsed, and its sha256), the build's base system,
the versions of the tools that shaped the bytes, and SOURCE_DATE_EPOCH (every timestamp in the
image). The AppStream release date comes from git too (config.version_epoch): the commit that last
changed python/pyproject.toml, where the version is set.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from . import proc
from .squashfs import source_date_epoch

TOOLS = {"gpg": ["gpg", "--version"], "mksquashfs": ["mksquashfs", "-version"],
         "appstreamcli": ["appstreamcli", "--version"], "cc": ["cc", "--version"]}
PYTHON_TOOLS = ("cyclonedx-bom", "cyclonedx-python-lib")


def git_commit(repo: Path) -> str:
    done = proc.run(["git", "rev-parse", "HEAD"], cwd=repo, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def base_system(root: Path = Path("/")) -> dict[str, str]:
    """The build root's distribution (os-release) and C library: what the binaries were linked on."""
    fields = {}
    os_release = root / "etc" / "os-release"
    if os_release.is_file():
        for line in os_release.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("ID", "VERSION_ID", "PRETTY_NAME"):
                fields[key.lower()] = value.strip('"')
    return {**fields, "libc": " ".join(platform.libc_ver()), "machine": platform.machine()}


def first_line(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    done = proc.run(command, check=False)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def tool_versions() -> dict[str, str | None]:
    versions = {name: first_line(command) for name, command in TOOLS.items()}
    for name in PYTHON_TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {**versions, "python": sys.version.split()[0]}


def pins_record(pins_file: Path) -> dict:
    data = pins_file.read_bytes()
    return {"file": pins_file.name, "sha256": hashlib.sha256(data).hexdigest(), "pins": tomllib.loads(data.decode())}


def record(pins_file: Path, version_date: str) -> dict:
    """manifest.json's `provenance`: SOURCE_DATE_EPOCH as the image's files carry it
    (release/squashfs.py), and everything else a rebuild needs besides the commit."""
    return {"source_date_epoch": source_date_epoch(), "version_date": version_date,
            "base_system": base_system(), "tools": tool_versions(), "pins": pins_record(pins_file)}
