"""Choosing the packager, and the external ones: the pinned linuxdeploy or appimagetool.

The builtin packager needs nothing from the network; these backends are what most AppImage users
know. Each tool is itself an AppImage, pinned per arch in `[tools.*]` of release/release.toml,
fetched with the project's downloader (verified, cached) and run with APPIMAGE_EXTRACT_AND_RUN=1
so it works in containers without FUSE. `auto` uses linuxdeploy only when it can really be had.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import hosts, log, proc, runtime_build
from .artifacts import Kind
from .config import Settings, Tool
from .download import RetryPolicy, fetch
from .errors import BuildError, ConfigError, DownloadError
from .pipeline import BaseStep, Context

EXTERNAL = ("linuxdeploy", "appimagetool")
RUNTIME_TOOL = "appimage-runtime"  # appimagetool fetches this from the network unless given one
# `auto` only asks "can linuxdeploy be had?": an unreachable host should cost seconds, not minutes.
PROBE_RETRY = RetryPolicy(attempts=2, base_delay=0.5, timeout=(5.0, 60.0))


@dataclass(frozen=True)
class Toolbox:
    """Where pinned tools come from: the typed pins, the cache, and this run's download policy."""

    tools: dict[str, Tool]
    cache_dir: Path
    offline: bool = False
    require_pins: bool = False

    @classmethod
    def of(cls, settings: Settings) -> Toolbox:
        return cls(settings.pins.tools, settings.cache_dir, settings.offline, settings.require_pins)

    def fetch(self, name: str, arch: str, retry: RetryPolicy = RetryPolicy()) -> Path:
        """The verified tool from the cache (downloaded first if needed), made executable."""
        if name not in self.tools:
            raise ConfigError(f"no [tools.{name}] pins in release.toml")
        path = fetch(self.tools[name].for_arch(arch), self.cache_dir, offline=self.offline,
                     require_pins=self.require_pins, retry=retry)
        path.chmod(path.stat().st_mode | 0o111)
        return path


def resolve_packager(requested: str, *, arch: str, toolbox: Toolbox) -> str:
    """The packager to use: an explicit choice as is; `auto` → linuxdeploy if it can be had, else builtin."""
    if requested != "auto":
        return requested
    try:
        toolbox.fetch("linuxdeploy", arch, retry=PROBE_RETRY)
    except (ConfigError, DownloadError) as exc:
        log.info(f"packager auto: using the builtin packager, linuxdeploy is unavailable ({exc})")
        return "builtin"
    return "linuxdeploy"


def tool_command(packager: str, tool: Path, appdir: Path, output: Path, *, arch: str, toolbox: Toolbox) -> list[str]:
    """The command line that packs `appdir` into `output` (inside the tool's work dir)."""
    if packager == "linuxdeploy":
        return [str(tool), "--appdir", str(appdir), "--output", "appimage", *desktop_and_icon(appdir)]
    runtime = toolbox.fetch(RUNTIME_TOOL, arch)
    return [str(tool), "--runtime-file", str(runtime), str(appdir), str(output)]


def desktop_and_icon(appdir: Path) -> list[str]:
    """linuxdeploy flags naming the AppDir's top-level desktop file and icon, when present."""
    flags = []
    desktops = sorted(appdir.glob("*.desktop"))
    if desktops:
        flags += ["--desktop-file", str(desktops[0])]
    icons = sorted(p for p in appdir.iterdir() if p.suffix in (".png", ".svg") and p.is_file())
    if icons:
        flags += ["--icon-file", str(icons[0])]
    return flags


def build_with_tool(packager: str, appdir: Path, out: Path, *, arch: str, toolbox: Toolbox) -> Path:
    """Pack `appdir` into the AppImage `out` with the pinned external tool; `out` appears atomically."""
    if packager not in EXTERNAL:
        raise ConfigError(f"unknown external packager '{packager}': use one of {'|'.join(EXTERNAL)}")
    tool = toolbox.fetch(packager, arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.{packager}-", dir=out.parent))
    try:
        produced = work / out.name
        cmd = tool_command(packager, tool, appdir, produced, arch=arch, toolbox=toolbox)
        env = {"APPIMAGE_EXTRACT_AND_RUN": "1", "ARCH": arch, "OUTPUT": out.name}
        proc.run(cmd, what=packager, env=env, cwd=work, stream=True)
        os.replace(find_output(work, packager), out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def find_output(work: Path, packager: str) -> Path:
    """The AppImage the tool wrote into its work dir (named by OUTPUT, or the only *.AppImage)."""
    found = sorted(p for p in work.iterdir() if p.is_file() and p.name.endswith(".AppImage"))
    if len(found) != 1:
        raise BuildError(f"{packager} exited 0 but wrote {len(found)} AppImages in {work} (expected 1)")
    return found[0]


class PackagerStep(BaseStep):
    """Decide the packager once per run and prepare it (compile the builtin runtime)."""

    name = "packager"
    after = ("build-root",)  # an emulated root is the cross compiler's sysroot

    def inputs(self, ctx: Context) -> dict:
        return {"requested": ctx.settings.packager, "runtime": runtime_build.RUNTIME_DIR,
                "tools": ctx.settings.pins.tools}

    def run(self, ctx: Context) -> dict:
        settings = ctx.settings
        host: hosts.BuildHost = ctx.host  # its cc builds the runtime (an emulated root's: a cross gcc)
        toolbox = Toolbox.of(settings)
        chosen = resolve_packager(settings.packager, arch=settings.arch, toolbox=toolbox)
        if chosen == "builtin":
            out_dir = settings.arch_dir / "runtime"
            program = runtime_build.build_runtime(out_dir, arch=settings.arch, cc=host.runtime_compiler(out_dir))
        else:
            program = toolbox.fetch(chosen, settings.arch)
        ctx.register(Kind.PACKAGER, program, name=chosen)
        return {"packager": chosen}
