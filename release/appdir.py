"""The appdir step: the AppDir tree that becomes the AppImage's filesystem.

Layout: AppRun, the desktop entry and icon at the root (the AppImage convention), the onedir app
in usr/bin, desktop metadata under usr/share, the model at usr/share/models/<filename>, and
`.tea/glibc-floor` ("<name> <min glibc>"), which the AppImage runtime checks before starting
AppRun (release/runtime/floor.c): below it, one line instead of a loader error.
The desktop entry and the AppStream metadata are named after the reverse-DNS component id, as
appimagetool and linuxdeploy expect (they look for usr/share/metainfo/<desktop name>.appdata.xml
and run `appstreamcli validate-tree`, which this step runs too, so their gate is ours).
AppRun is a symlink to usr/bin/tea: every start execs tea directly, no shell; tea finds the model
under $APPDIR itself, and the frozen tea sets APPDIR when the AppDir is run directly
(freeze.APPDIR_HOOK).
Large files are hard-linked from the freeze output and the model cache instead of copied
(4.5 GB of model), falling back to a reflink/copy across filesystems.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import audit, log, proc
from .artifacts import Kind
from .config import Flavor, Settings
from .floor import FLOOR_FILE, Floor
from .errors import BuildError
from .pipeline import BaseStep, Context

ASSETS = Path(__file__).with_name("assets")
APP_ID = "tea-python"  # the icon's name
COMPONENT_ID = "io.github.fabceolin.the_edge_agent"  # AppStream id: the desktop and metainfo file names


def appdir_path(settings: Settings, flavor: Flavor) -> Path:
    return settings.flavor_dir(flavor) / "AppDir"


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        proc.run(["cp", "--reflink=auto", "--preserve=mode", source, target], what="copying into the AppDir")


def link_tree(source: Path, target: Path) -> None:
    """Mirror a tree with hard links, keeping symlinks as symlinks."""
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_symlink():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(os.readlink(path))
        elif path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            link_or_copy(path, dest)


def write_metadata(root: Path, version: str, date: str) -> None:
    """AppRun, desktop entry, icons and AppStream metadata, where AppImage tools look for them."""
    (root / "AppRun").symlink_to("usr/bin/tea")
    desktop = (ASSETS / f"{APP_ID}.desktop").read_text().format(version=version)
    for place in (root / f"{COMPONENT_ID}.desktop", root / "usr/share/applications" / f"{COMPONENT_ID}.desktop"):
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_text(desktop)
    icons = {root / f"{APP_ID}.svg": "svg", root / f"{APP_ID}.png": "png",
             root / "usr/share/icons/hicolor/scalable/apps" / f"{APP_ID}.svg": "svg",
             root / "usr/share/icons/hicolor/256x256/apps" / f"{APP_ID}.png": "png"}
    for place, kind in icons.items():
        place.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ASSETS / f"{APP_ID}.{kind}", place)
    (root / ".DirIcon").symlink_to(f"{APP_ID}.png")
    metainfo = root / "usr/share/metainfo" / f"{COMPONENT_ID}.appdata.xml"
    metainfo.parent.mkdir(parents=True, exist_ok=True)
    metainfo.write_text((ASSETS / metainfo.name).read_text().format(version=version, date=date))


def validate_desktop_file(path: Path) -> None:
    if not shutil.which("desktop-file-validate"):
        log.warn("desktop-file-validate not installed; desktop entry not checked (run `invoke deps`)")
        return
    done = proc.run(["desktop-file-validate", path], check=False)
    if done.returncode != 0 or done.stdout.strip():
        raise BuildError(f"{path.name} is not a valid desktop entry: {(done.stdout + done.stderr).strip()}")


def validate_appstream(root: Path) -> None:
    """`appstreamcli validate-tree`, as appimagetool and linuxdeploy run it: errors and warnings
    fail (infos and pedantic hints do not)."""
    if not shutil.which("appstreamcli"):
        raise BuildError("appstreamcli not found: apt-get install appstream (run `invoke deps`)")
    done = proc.run(["appstreamcli", "validate-tree", "--no-net", root], check=False)
    if done.returncode != 0:
        issues = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith(("E:", "W:"))]
        raise BuildError(f"the AppStream metadata is not valid: {'; '.join(issues) or done.stdout.strip()[-200:]}")


def build_appdir(target: Path, onedir: Path, version: str, model: Path | None, date: str) -> Path:
    """Assemble next to `target` (returned: the caller audits it, then `finish`es it)."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_metadata(staging, version, date)
    link_tree(onedir, staging / "usr/bin")
    if model is not None:
        link_or_copy(model, staging / "usr/share/models" / model.name)
    validate_desktop_file(staging / f"{COMPONENT_ID}.desktop")
    validate_appstream(staging)
    return staging


def finish(staging: Path, target: Path) -> None:
    """Swap the audited tree in: never a half-built or unaudited AppDir at the final path."""
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def write_floor(root: Path, name: str, min_glibc: str) -> None:
    """What the runtime compares with the system's glibc (nothing to compare without a version)."""
    if min_glibc:
        (root / FLOOR_FILE).parent.mkdir(parents=True, exist_ok=True)
        (root / FLOOR_FILE).write_text(f"{name} {min_glibc}\n")


class AppDirStep(BaseStep):
    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"appdir-{flavor.name}"
        self.after = ("build-root", f"freeze-{flavor.name}") + (("model",) if flavor.llm else ())

    def inputs(self, ctx: Context) -> dict:
        return {"assets": ASSETS, "version": ctx.settings.version, "date": ctx.settings.release_date}

    def run(self, ctx: Context) -> dict:
        settings = ctx.settings
        model = ctx.artifacts.get(Kind.MODEL).path if self.flavor.llm else None
        host = ctx.artifacts.get(Kind.BUILD_HOST).extra["description"]
        floor = Floor(**host["floor"])
        target = appdir_path(settings, self.flavor)
        staging = build_appdir(target, ctx.artifacts.get(Kind.ONEDIR, self.flavor.name).path, settings.version,
                               model, settings.release_date)
        report = audit.audit_appdir(staging, arch=settings.arch, floor=floor)
        write_floor(staging, self.flavor.product, report.min_glibc)
        finish(staging, target)
        log.info(f"{self.name}: {report.elf_count} ELF files resolve; they need glibc {report.min_glibc} and "
                 f"GLIBCXX {report.min_glibcxx or '-'} at most (the {host['base']} base has {floor.glibc} "
                 f"and {floor.glibcxx or '-'})")
        ctx.register(Kind.APPDIR, target, flavor=self.flavor.name, min_glibc=report.min_glibc,
                     min_glibcxx=report.min_glibcxx)
        return {"elf_files": report.elf_count, "min_glibc": report.min_glibc, "min_glibcxx": report.min_glibcxx}
