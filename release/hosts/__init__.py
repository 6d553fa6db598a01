"""Where the Python side of a release is built, chosen once per run (like cibuildwheel's platforms).

- `Host` (`--base host`): this machine's own Python and compilers; no root needed. The glibc
  floor is then this machine's, and the manifest says so.
- `BuildRoot` (the default): a pinned Debian ([build] base in release.toml) made by debootstrap
  and entered with unshare + chroot; CPython built inside it from Debian's source package; C and
  C++ compiled inside it. Everything bundled links against the base's glibc and libstdc++.
- `EmulatedRoot`: the same root for another arch, its programs run by qemu-user through
  binfmt_misc; C and C++ cross-compiled on this host with `--sysroot=<root>`.

The venv, wheel and freeze logic exist once (release.deps, release.llama, release.freeze) and
only call the small protocol below.
"""

from __future__ import annotations

from .. import arch as arches
from ..config import Settings
from ..errors import ConfigError
from .base import BuildHost, Description
from .emulated import EmulatedRoot
from .native import Host
from .root import BuildRoot

__all__ = ["BuildHost", "BuildRoot", "Description", "EmulatedRoot", "Host", "select"]


def select(settings: Settings) -> BuildHost:
    """The one build host of this run: from --base and whether the arch is this machine's."""
    native = settings.arch == arches.host_arch()
    if settings.base == "host":
        if not native:
            raise ConfigError(f"--base host builds only for this machine's arch ({arches.host_arch()}); "
                              f"{settings.arch} needs a Debian base such as --base {settings.pins.build.base}")
        return Host(settings)
    return BuildRoot(settings) if native else EmulatedRoot(settings)
