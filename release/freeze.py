"""The freeze step: PyInstaller onedir build of `tea` (onedir starts ~10x faster than onefile).

For flavors with Prolog, janus-swi is compiled against the build's SWI-Prolog and installed next
to the app; PyInstaller bundles it with libswipl, and SWI-Prolog's home (boot file, library,
foreign modules) goes into the bundle as `swipl/`, where tea points SWI_HOME_DIR.

For the LLM flavor the portable llama.cpp CPU variants (`libggml-cpu-*.so`, installed by the wheel
outside the llama_cpp package) are bundled next to libllama, and byte-identical copies of a
library under several names (wheels carry no symlinks) become symlinks to the soname copy, so
only one libggml is ever loaded and the AppImage does not carry it three times.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Callable

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from . import hosts, proc, swipl
from .config import REPO, Flavor, Settings
from .errors import VerifyError
from .artifacts import Artifact, Kind
from .pipeline import BaseStep, Context

APP_SOURCE = REPO / "python"
ENTRY_SCRIPT = "from the_edge_agent.cli import main\n\nraise SystemExit(main())\n"
# AppRun is a symlink to usr/bin/tea (no shell at every start), so what the AppRun script did is
# done here, before tea runs: the AppImage runtime sets APPDIR, but an AppDir run directly (an
# extracted AppImage) has to find it from the executable's place, usr/bin/tea in the AppDir.
# Python 3.11's open() asks isatty() of every file it opens with default buffering, and on the
# AppImage's FUSE mount each ask is a round trip to the server (an ioctl no kernel caches): ~130
# per start, 7 ms of a 115 ms `tea --version`. The two importers that open an archive once per
# module (PyInstaller's PYZ reader in the tea executable, zipimport for base_library.zip) open it
# unbuffered from here on: the same reads, no isatty.
APPDIR_HOOK = """\
import io
import os
import sys
import types
import zipimport

os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
_appdir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
if "APPDIR" not in os.environ and os.path.isfile(os.path.join(_appdir, "AppRun")):
    os.environ["APPDIR"] = _appdir


def _open_unbuffered(path, mode="rb"):
    return io.open(path, mode, buffering=0)


sys.modules["pyimod01_archive"].open = _open_unbuffered
zipimport._io = types.SimpleNamespace(open_code=_open_unbuffered)
"""
# What builds the app, never what runs it. Left in the build venv's module graph (the plain
# flavor's), setuptools brings PyInstaller's runtime hook that imports it at every start: 60 ms
# of a 140 ms `tea --version`.
BUILD_ONLY_MODULES = ("setuptools", "pkg_resources", "_distutils_hack")
SWIPL_HOME = "swipl"  # the_edge_agent.prolog.BUNDLED_HOME
VARIANT_GLOB = "libggml-cpu-*.so"


def onedir(settings: Settings, flavor: Flavor) -> Path:
    return settings.flavor_dir(flavor) / "freeze" / "dist" / "tea"


def app_dir(settings: Settings, flavor: Flavor) -> Path:
    """the_edge_agent installed for this build only (the shared build venv is never modified)."""
    return settings.flavor_dir(flavor) / "app"


def source_tea(ctx: Context, flavor: Flavor) -> tuple[list[str], dict[str, str]]:
    """Command and environment of the unfrozen tea of this build: the reference the AppImage must match."""
    venv, host, settings = ctx.artifacts.get(Kind.VENV, flavor.name).path.parent, ctx.host, ctx.settings
    command = host.command([host.inside(venv / "bin" / "python"), "-c", ENTRY_SCRIPT])
    prolog = swipl.environment(swipl.prefix_dir(settings)) if swipl.bundled(settings, flavor) else {}
    return command, {"PYTHONPATH": str(app_dir(settings, flavor)), **prolog}


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def write_entry_scripts(work: Path) -> Path:
    """The entry script and the runtime hook pyinstaller_args names, in work; returns the entry."""
    (work / "appdir_hook.py").write_text(APPDIR_HOOK)
    entry = work / "tea_entry.py"
    entry.write_text(ENTRY_SCRIPT)
    return entry


def pyinstaller_args(flavor: Flavor, work: Path, venv: Path, inside: Callable[[Path], str] = str,
                     swipl_prefix: Path | None = None) -> list[str]:
    """PyInstaller's options; `inside` names a venv path as the build host sees it."""
    args = ["--noconfirm", "--clean", "--onedir", "--name", "tea",
            "--distpath", str(work / "dist"), "--workpath", str(work / "work"), "--specpath", str(work),
            "--collect-all", "the_edge_agent", "--copy-metadata", "the_edge_agent",
            "--exclude-module", "tkinter", "--runtime-hook", str(work / "appdir_hook.py"),
            *(arg for module in BUILD_ONLY_MODULES for arg in ("--exclude-module", module))]
    if swipl_prefix is not None:
        args += ["--collect-all", "janus_swi"]
        args += [arg for source, dest in swipl.runtime_data(swipl_prefix, SWIPL_HOME)
                 for arg in ("--add-data", f"{source}:{dest}")]
    else:
        args += ["--exclude-module", "janus_swi"]
    if flavor.llm:
        args += ["--collect-all", "llama_cpp"]
        variants = sorted((site_packages(venv) / "bin").glob(VARIANT_GLOB))
        args += [arg for lib in variants for arg in ("--add-binary", f"{inside(lib)}:llama_cpp/lib")]
    else:
        args += ["--exclude-module", "llama_cpp"]
    return args


def elf_soname(path: Path) -> str | None:
    with path.open("rb") as handle:
        if handle.read(4) != b"\x7fELF":
            return None
        handle.seek(0)
        for section in ELFFile(handle).iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags("DT_SONAME"):
                    return tag.soname
    return None


def dedupe_shared_libs(root: Path) -> int:
    """Replace byte-identical copies of a shared library by relative symlinks to its soname copy."""
    by_digest: dict[str, list[Path]] = defaultdict(list)
    for path in root.rglob("*.so*"):
        if path.is_file() and not path.is_symlink():
            by_digest[hashlib.sha256(path.read_bytes()).hexdigest()].append(path)
    replaced = 0
    for copies in by_digest.values():
        if len(copies) < 2:
            continue
        soname = elf_soname(copies[0])
        keep = next((p for p in copies if p.name == soname), min(copies))
        for duplicate in copies:
            if duplicate != keep:
                duplicate.unlink()
                duplicate.symlink_to(os.path.relpath(keep, duplicate.parent))
                replaced += 1
    return replaced


def carries_debug_info(path: Path) -> bool:
    with path.open("rb") as handle:
        if handle.read(4) != b"\x7fELF":
            return False
        handle.seek(0)
        return ELFFile(handle).get_section_by_name(".debug_info") is not None


def strip_own_libraries(root: Path, strip: str = "strip") -> int:
    """Strip the libraries compiled for this build and drop the janus-swi extension's RUNPATH (a
    directory of the build machine: the bundle's libswipl is found like every bundled library).
    Those are the llama.cpp libraries, the janus extension, and whatever carries debug info:
    CPython's own (built with -g: 25 MB of libpython's 30, which no run reads and every AppImage
    carried) and the extension modules pip compiled with its flags (PyYAML's). Never the libraries
    auditwheel vendored into `<package>.libs/`: they are patchelf-edited, and strip corrupts them
    ("ELF load command address/offset not page-aligned"), which is why this is not PyInstaller's
    --strip."""
    internal = root / "_internal"
    janus = sorted((internal / "janus_swi").glob("_swipl*.so"))
    llama = [p for p in (internal / "llama_cpp" / "lib").glob("*.so*") if not p.is_symlink()]
    built_with_debug_info = [
        p for p in sorted(internal.rglob("*.so*"))
        if p.is_file() and not p.is_symlink() and p not in llama + janus
        and not any(part.endswith(".libs") for part in p.relative_to(internal).parts) and carries_debug_info(p)]
    libraries = llama + janus + built_with_debug_info
    if janus:
        proc.run(["patchelf", "--remove-rpath", *janus], what="patchelf --remove-rpath")
    if libraries:
        proc.run([strip, "--strip-unneeded", *libraries], what="strip")
    return len(libraries)


def drop_install_origins(root: Path) -> list[str]:
    """pip records where it installed a distribution from in `direct_url.json`: this checkout for
    the app, the download cache for the llama.cpp and janus-swi wheels. Those are the builder's
    paths; bundled, they would ship to every user and make the same commit build differently in
    another checkout. Each is removed with its RECORD line; returns the distributions changed."""
    changed = []
    for origin in sorted(root.rglob("*.dist-info/direct_url.json")):
        origin.unlink()
        record = origin.with_name("RECORD")
        if record.is_file():
            entry = f"{origin.parent.name}/{origin.name},"
            lines = record.read_text().splitlines(keepends=True)
            record.write_text("".join(line for line in lines if not line.startswith(entry)))
        changed.append(origin.parent.name)
    return changed


def check_frozen(command: list[str], version: str) -> None:
    """The step only succeeds if the frozen program answers like the source one. It runs on the
    build host: the base it was built for (this machine may be older, or of another arch)."""
    expected = {"--version": f"tea {version}", "--impl": "python"}
    executable = command[-1]
    for flag, want in expected.items():
        done = proc.run([*command, flag], timeout=60, check=False, error=VerifyError)
        if done.returncode != 0 or done.stdout.strip() != want:
            raise VerifyError(f"frozen {executable} {flag} printed {done.stdout.strip()!r} "
                              f"(exit {done.returncode}), expected {want!r}: {done.stderr.strip()[-200:]}")


class FreezeStep(BaseStep):
    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"freeze-{flavor.name}"
        self.after = (f"venv-{flavor.name}",) + (("swipl",) if flavor.prolog else ())

    def inputs(self, ctx: Context) -> dict:
        return {"app": APP_SOURCE / "src", "pyproject": APP_SOURCE / "pyproject.toml", "version": ctx.settings.version}

    def run(self, ctx: Context) -> dict:
        settings, flavor = ctx.settings, self.flavor
        prolog = ctx.artifacts.get(Kind.SWIPL) if swipl.bundled(settings, flavor) else None
        result = freeze(ctx, flavor, prolog)
        ctx.register(Kind.SOURCE_APP, app_dir(settings, flavor), flavor=flavor.name)
        ctx.register(Kind.ONEDIR, onedir(settings, flavor), flavor=flavor.name,
                     swi_prolog=dict(prolog.extra) if prolog else None)
        return result



def freeze(ctx: Context, flavor: Flavor, prolog: Artifact | None) -> dict:
    """Install the app (and janus-swi) for this build, run PyInstaller on the build host, check what it made."""
    host: hosts.BuildHost = ctx.host
    settings = ctx.settings
    venv = ctx.artifacts.get(Kind.VENV, flavor.name).path.parent
    work, app = onedir(settings, flavor).parent.parent, app_dir(settings, flavor)
    for stale in (work, app):
        shutil.rmtree(stale, ignore_errors=True)
    work.mkdir(parents=True)
    # No build isolation: the venv's own setuptools builds it, so this works offline too.
    install = [host.inside(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-build-isolation",
               "--no-compile", "--target", str(app)]
    host.run([*install, str(APP_SOURCE)], what="installing the_edge_agent for the build")
    if prolog is not None:
        janus = swipl.ensure_janus_wheel(settings, host, prolog.path, prolog.extra["tarball"], venv)
        host.run([*install, str(janus)], what="installing janus-swi for the build")
    entry = write_entry_scripts(work)
    swipl_prefix = prolog.path if prolog else None
    host.run([host.inside(venv / "bin" / "pyinstaller"),
              *pyinstaller_args(flavor, work, venv, host.inside, swipl_prefix), str(entry)],
             what=f"PyInstaller ({host.kind})",
             env={"PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "0", **source_tea(ctx, flavor)[1]})
    deduped = dedupe_shared_libs(onedir(settings, flavor))
    strip_own_libraries(onedir(settings, flavor), strip=host.strip)
    drop_install_origins(onedir(settings, flavor))
    check_frozen(host.command([host.inside(onedir(settings, flavor) / "tea")]), settings.version)
    return {"onedir": str(onedir(settings, flavor)), "deduplicated_libs": deduped, "built_in": host.kind}
