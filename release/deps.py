"""Build dependencies: Debian packages, and the build host made ready.

The build host (release.hosts) is prepared once per run and describes itself (base, Python,
glibc/libstdc++ floor) in `build/<arch>/build-host.json`, the artifact later steps, the audit
and the manifest read.
"""

from __future__ import annotations

from . import apt, hosts, log
from .artifacts import Kind
from .config import Settings
from .pipeline import BaseStep, Context

DESCRIPTION = "build-host.json"


class SystemPackagesStep(BaseStep):
    name = "system-packages"

    def inputs(self, ctx: Context) -> dict:
        return {"apt": apt_packages(ctx.settings, ctx.host)}

    def run(self, ctx: Context) -> dict:
        return {"installed": apt.ensure_apt_packages(apt_packages(ctx.settings, ctx.host))}


def apt_packages(settings: Settings, host: hosts.BuildHost) -> list[str]:
    """The pinned packages, plus what the build host needs (a cross toolchain)."""
    return [*settings.pins.apt_packages, *host.packages()]


class BuildHostStep(BaseStep):
    """The build root (or this machine, with --base host), ready: root, CPython, emulation."""

    name = "build-root"
    after = ("system-packages",)

    def inputs(self, ctx: Context) -> dict:
        return {"identity": ctx.host.identity(), "python": ctx.settings.pins.build.python}

    def run(self, ctx: Context) -> dict:
        description = ctx.host.prepare()
        log.info(f"build host: {description.kind}, {description.distribution}, glibc {description.floor.glibc}, "
                 f"GLIBCXX {description.floor.glibcxx or '-'}, Python {description.python}")
        path = description.write(ctx.settings.arch_dir / DESCRIPTION)
        ctx.register(Kind.BUILD_HOST, path, description=description.to_json())
        return description.to_json()
