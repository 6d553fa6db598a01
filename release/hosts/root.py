"""The build root: a pinned Debian, entered with unshare + chroot (no qemu on a same-arch host).

Made once per base, arch and package list: debootstrap --variant=minbase with [build] packages,
its apt sources completed with -updates and -security (derived from debootstrap's own line, see
release.debian) and upgraded, then cached as a tarball and unpacked into the cache. CPython is
added by release.cpython; venvs live in the root's /opt/venvs. Commands run chrooted with a
clean environment, with the project, build and wheel/download/SWI-Prolog cache dirs bind-mounted
at their host paths, so paths are the same inside and out.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

from .. import chroot, cpython, debian, log, proc, rootfs
from ..config import REPO, Settings
from ..errors import ConfigError
from ..floor import system_floor
from .base import CompilesHere, Description, distribution

CLEAN_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
             "DEBIAN_FRONTEND=noninteractive")
VENVS = "/opt/venvs"
NEEDS_ROOT_FIX = ("run as root (in a container: --privileged), or build with this machine's own Python "
                  "and compilers: --base host (this machine's glibc becomes the floor)")
# What `finish_root` does, in words: part of the root tarball's cache key.
RECIPE = "apt sources: suite, -updates, -security (derived); apt-get dist-upgrade; apt-get clean"


class BuildRoot(CompilesHere):
    kind = "build root"
    cc = "gcc"
    strip = "strip"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def recipe(self) -> rootfs.Recipe:
        return rootfs.Recipe(self.settings.pins.build.packages, RECIPE, self.finish_root)

    @cached_property
    def tarball(self) -> Path:
        return rootfs.tarball_path(self.settings.cache_dir, self.settings.arch, self.settings.base, self.recipe)

    @property
    def root(self) -> Path:
        return self.settings.cache_dir / "buildroot" / self.tarball.name.removesuffix(".tar.zst")

    def packages(self) -> tuple[str, ...]:
        return ()

    def identity(self) -> list[str]:
        return [self.kind, self.settings.base, self.tarball.name]

    def prepare(self) -> Description:
        """The root unpacked with its CPython, under a lock: concurrent runs share one root."""
        rootfs.require_root("the build root", NEEDS_ROOT_FIX, ConfigError)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root.with_name(f"{self.root.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tarball = rootfs.ensure_rootfs(self.settings.cache_dir, arch=self.settings.arch,
                                           suite=self.settings.base, recipe=self.recipe)
            rootfs.unpack_rootfs(tarball, self.root)
            python = cpython.ensure(self)
        return Description(self.kind, self.settings.base, distribution(self.root), python.describe(),
                           system_floor(self.root, self.settings.arch))

    def finish_root(self, root: Path) -> None:
        """Before the fresh root is packed: its suite's updates and security fixes, installed.

        An update the mirror lists but cannot deliver is held back (--fix-missing) and named in
        a warning, rather than failing the build on a mirror's gap."""
        sources = root / "etc/apt/sources.list"
        sources.write_text(debian.root_sources(sources.read_text(), self.settings.base))
        self._sync_host_files(root)

        def inside(script: str, what: str, stream: bool = True):
            return proc.run(chroot.enter(root, ["/usr/bin/env", "-i", *CLEAN_ENV, "sh", "-c", script]),
                            what=what, stream=stream)

        inside("apt-get update -q && apt-get dist-upgrade -y -q --fix-missing && apt-get clean",
               f"upgrading the {self.settings.base} build root")
        held = debian.upgradable(inside("apt list --upgradable 2>/dev/null", "apt list", stream=False).stdout)
        if held:
            log.warn(f"{len(held)} update(s) of the {self.settings.base} build root could not be downloaded and are "
                     f"not in it: {', '.join(held)}")

    def python(self) -> str:
        return f"{self.settings.pins.build.python.prefix}/bin/python3"

    @property
    def system_root(self) -> Path:
        return self.root

    def venvs_dir(self) -> Path:
        return self.root / VENVS.lstrip("/")

    def inside(self, path: Path) -> str:
        path = Path(path)
        return "/" + path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)

    def binds(self) -> list[Path]:
        """Host dirs visible at the same path inside."""
        cache = self.settings.cache_dir
        dirs = {REPO, self.settings.build_dir, cache / "wheels", cache / "downloads", cache / "swipl"}
        for path in dirs:
            path.mkdir(parents=True, exist_ok=True)
        return sorted(path.resolve() for path in dirs)

    def command(self, argv: Sequence[str]) -> list[str]:
        """With the caller's environment, minus qemu's host-side loader prefix."""
        return chroot.enter(self.root, ["/usr/bin/env", "-u", "QEMU_LD_PREFIX", *argv], binds=self.binds())

    def run(self, argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None,
            stream: bool = True, check: bool = True):
        """A clean environment inside: PATH, HOME, LANG, pip's index settings and `env`."""
        self._sync_host_files(self.root)
        variables = [*CLEAN_ENV, *(f"{k}={v}" for k, v in {**pip_config_env(), **(env or {})}.items())]
        return proc.run(chroot.enter(self.root, ["/usr/bin/env", "-i", *variables, *argv], binds=self.binds()),
                        what=what, stream=stream, check=check)

    @staticmethod
    def _sync_host_files(root: Path) -> None:
        """The host's name resolution and pip's CA bundle (a proxy's CA, on some networks), copied in."""
        for name in ("/etc/resolv.conf", os.environ.get("PIP_CERT", "")):
            if name and Path(name).is_file():
                target = root / name.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(name, target)


def pip_config_env() -> dict[str, str]:
    """pip settings of the host that make sense inside too (the index, its CA), not local wheel dirs."""
    return {k: v for k, v in os.environ.items() if k.startswith("PIP_") and k != "PIP_FIND_LINKS"}
