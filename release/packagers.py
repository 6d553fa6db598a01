"""External AppImage packagers: the pinned linuxdeploy or appimagetool, for the real world.

The builtin packager needs nothing from the network; these backends are what most AppImage users
know. Each tool is itself an AppImage, pinned per arch in `[tools.*]` of release/release.toml,
fetched with the project's downloader (verified, cached) and run with APPIMAGE_EXTRACT_AND_RUN=1
so it works in containers without FUSE. `auto` uses linuxdeploy only when it can really be had.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from . import log, proc
from .config import load_pins
from .download import RemoteFile, RetryPolicy, fetch
from .errors import BuildError, ConfigError, DownloadError

EXTERNAL = ("linuxdeploy", "appimagetool")
RUNTIME_TOOL = "appimage-runtime"  # appimagetool fetches this from the network unless given one
# `auto` only asks "can linuxdeploy be had?": an unreachable host should cost seconds, not minutes.
PROBE_RETRY = RetryPolicy(attempts=2, base_delay=0.5, timeout=(5.0, 60.0))


def tool_remote(name: str, arch: str, tools_config: dict) -> RemoteFile:
    """The pinned download of tool `name` for `arch`; ConfigError when release.toml has no pin."""
    table = tools_config.get(name, {})
    entry = table.get(arch)
    if not entry or not entry.get("url"):
        raise ConfigError(f"no pin for {name} on {arch}: add [tools.{name}.{arch}] url/sha256 to release/release.toml")
    url = entry["url"]
    filename = f"{name}-{table.get('version', 'unversioned')}-{arch}-{url.rsplit('/', 1)[-1]}"
    return RemoteFile(filename, (url,), entry.get("sha256") or None, entry.get("size") or None)


def fetch_tool(name: str, arch: str, cache_dir: Path, tools_config: dict, *, offline: bool = False,
               require_pins: bool = False, retry: RetryPolicy = RetryPolicy()) -> Path:
    """Fetch (or reuse from the cache) the pinned tool and make it executable."""
    path = fetch(tool_remote(name, arch, tools_config), cache_dir, offline=offline, require_pins=require_pins,
                 retry=retry)
    path.chmod(path.stat().st_mode | 0o111)
    return path


def resolve_packager(requested: str, *, arch: str, cache_dir: Path, offline: bool,
                     tools_config: dict | None = None) -> str:
    """The packager to use: an explicit choice as is; `auto` → linuxdeploy if it can be had, else builtin."""
    if requested != "auto":
        return requested
    tools = load_pins().get("tools", {}) if tools_config is None else tools_config
    try:
        fetch_tool("linuxdeploy", arch, cache_dir, tools, offline=offline, retry=PROBE_RETRY)
    except (ConfigError, DownloadError) as exc:
        log.info(f"packager auto: using the builtin packager, linuxdeploy is unavailable ({exc})")
        return "builtin"
    return "linuxdeploy"


def tool_command(packager: str, tool: Path, appdir: Path, output: Path, *, arch: str, cache_dir: Path,
                 tools_config: dict, offline: bool, require_pins: bool) -> list[str]:
    """The command line that packs `appdir` into `output` (inside the tool's work dir)."""
    if packager == "linuxdeploy":
        return [str(tool), "--appdir", str(appdir), "--output", "appimage", *desktop_and_icon(appdir)]
    runtime = fetch(tool_remote(RUNTIME_TOOL, arch, tools_config), cache_dir,
                    offline=offline, require_pins=require_pins)
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


def build_with_tool(packager: str, appdir: Path, out: Path, *, arch: str, cache_dir: Path,
                    tools_config: dict, offline: bool = False, require_pins: bool = False) -> Path:
    """Pack `appdir` into the AppImage `out` with the pinned external tool; `out` appears atomically."""
    if packager not in EXTERNAL:
        raise ConfigError(f"unknown external packager '{packager}': use one of {'|'.join(EXTERNAL)}")
    tool = fetch_tool(packager, arch, cache_dir, tools_config, offline=offline, require_pins=require_pins)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.{packager}-", dir=out.parent))
    try:
        produced = work / out.name
        cmd = tool_command(packager, tool, appdir, produced, arch=arch, cache_dir=cache_dir,
                           tools_config=tools_config, offline=offline, require_pins=require_pins)
        env = {"APPIMAGE_EXTRACT_AND_RUN": "1", "ARCH": arch, "OUTPUT": out.name}
        proc.run(cmd, what=packager, log_file=appdir.parent / f"{packager}-{out.name}.log", env=env, cwd=work)
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
