"""Debian packages of the machine running the release: install what is missing, or say how."""

from __future__ import annotations

import os
import shutil

from . import log, proc
from .errors import ConfigError


def missing_apt_packages(packages: list[str]) -> list[str]:
    query = proc.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages], check=False)
    installed = {line.split()[0] for line in query.stdout.splitlines() if line.endswith(" installed")}
    return [name for name in packages if name not in installed]


def root_prefix() -> list[str] | None:
    """How to run a command as root here: directly, through password-less sudo (CI runners), or not at all."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and proc.run(["sudo", "-n", "true"], check=False).returncode == 0:
        return ["sudo", "-n", "-E"]
    return None


def ensure_apt_packages(packages: list[str]) -> list[str]:
    """Install what is missing when root; otherwise stop with the exact command to run."""
    if not shutil.which("dpkg-query"):
        log.warn("not a Debian/Ubuntu system: make sure these are installed: " + " ".join(packages))
        return []
    missing = missing_apt_packages(packages)
    if not missing:
        return []
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    as_root = root_prefix()
    if as_root is None:
        raise ConfigError(f"missing system packages; run: sudo apt-get update && sudo {' '.join(command)}")
    log.info(f"installing system packages: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    proc.run([*as_root, "apt-get", "update", "-q"], what="apt-get update", env=env, stream=True)
    proc.run([*as_root, *command], what="apt-get install", env=env, stream=True)
    return missing
