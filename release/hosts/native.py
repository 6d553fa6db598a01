"""`--base host`: build with this machine's own Python and compilers (no root, no build root).

For developers without root. The AppImages then need at least this machine's glibc: the
floor is read from its own libc.so.6 / libstdc++.so.6 and reported like a build root's.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Mapping, Sequence

from .. import proc
from ..config import Settings
from ..floor import system_floor
from .base import CompilesHere, Description, distribution


class Host(CompilesHere):
    kind = "host"
    strip = "strip"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def packages(self) -> tuple[str, ...]:
        return ()

    def identity(self) -> list[str]:
        return [self.kind, sys.version, platform.machine()]

    def prepare(self) -> Description:
        return Description(self.kind, "host", distribution(Path("/")), platform.python_version(),
                           system_floor(Path("/"), self.settings.arch))

    def python(self) -> str:
        return sys.executable

    @property
    def system_root(self) -> Path:
        return Path("/")

    def venvs_dir(self) -> Path:
        return self.settings.cache_dir / "venvs"

    def inside(self, path: Path) -> str:
        return str(path)

    def command(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def run(self, argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None,
            stream: bool = True, check: bool = True):
        return proc.run(argv, what=what, env=env, stream=stream, check=check)
