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

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from . import cross, deps, proc, swipl
from .config import REPO, Flavor, Settings
from .errors import VerifyError
from .artifacts import Artifact, Kind
from .pipeline import BaseStep, Context

APP_SOURCE = REPO / "python"
ENTRY_SCRIPT = "from the_edge_agent.cli import main\n\nraise SystemExit(main())\n"
SWIPL_HOME = "swipl"  # the_edge_agent.prolog.BUNDLED_HOME
VARIANT_GLOB = "libggml-cpu-*.so"


def onedir(settings: Settings, flavor: Flavor) -> Path:
    return settings.flavor_dir(flavor) / "freeze" / "dist" / "tea"


def app_dir(settings: Settings, flavor: Flavor) -> Path:
    """the_edge_agent installed for this build only (the shared build venv is never modified)."""
    return settings.flavor_dir(flavor) / "app"


def source_tea(settings: Settings, flavor: Flavor) -> tuple[list[str], dict[str, str]]:
    """Command and environment of the unfrozen tea of this build: the reference the AppImage must match."""
    if cross.is_cross(settings):
        return cross.source_tea(settings, flavor)
    command = [str(deps.venv_bin(settings, flavor, "python")), "-c", ENTRY_SCRIPT]
    prolog = swipl.environment(swipl.prefix_dir(settings)) if swipl.bundled(settings, flavor) else {}
    return command, {"PYTHONPATH": str(app_dir(settings, flavor)), **prolog}


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def pyinstaller_args(flavor: Flavor, work: Path, venv: Path, swipl_prefix: Path | None = None) -> list[str]:
    args = ["--noconfirm", "--clean", "--onedir", "--name", "tea",
            "--distpath", str(work / "dist"), "--workpath", str(work / "work"), "--specpath", str(work),
            "--collect-all", "the_edge_agent", "--copy-metadata", "the_edge_agent",
            "--exclude-module", "tkinter"]
    if swipl_prefix is not None:
        args += ["--collect-all", "janus_swi"]
        args += [arg for source, dest in swipl.runtime_data(swipl_prefix, SWIPL_HOME)
                 for arg in ("--add-data", f"{source}:{dest}")]
    else:
        args += ["--exclude-module", "janus_swi"]
    if flavor.llm:
        args += ["--collect-all", "llama_cpp"]
        variants = sorted((site_packages(venv) / "bin").glob(VARIANT_GLOB))
        args += [arg for lib in variants for arg in ("--add-binary", f"{lib}:llama_cpp/lib")]
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


def strip_own_libraries(root: Path, strip: str = "strip") -> int:
    """Strip the llama.cpp libraries and the janus-swi extension we compiled, and drop the extension's
    RUNPATH (a directory of the build machine: the bundle's libswipl is found like every bundled
    library). Not PyInstaller's --strip: it also strips the patchelf-edited libraries vendored by
    manylinux wheels (numpy's OpenBLAS), which corrupts them ("ELF load command address/offset not
    page-aligned")."""
    internal = root / "_internal"
    janus = sorted((internal / "janus_swi").glob("_swipl*.so"))
    libraries = [p for p in (internal / "llama_cpp" / "lib").glob("*.so*") if not p.is_symlink()] + janus
    if janus:
        proc.run(["patchelf", "--remove-rpath", *janus], what="patchelf --remove-rpath")
    if libraries:
        proc.run([strip, "--strip-unneeded", *libraries], what="strip")
    return len(libraries)


def check_frozen(executable: Path, version: str) -> None:
    """The step only succeeds if the frozen program answers like the source one."""
    expected = {"--version": f"tea {version}", "--impl": "python"}
    for flag, want in expected.items():
        done = proc.run([executable, flag], timeout=60, check=False, error=VerifyError)
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
        result = (cross.freeze_in_build_root(settings, flavor) if cross.is_cross(settings)
                  else self.freeze_here(settings, flavor, prolog))
        ctx.register(Kind.SOURCE_APP, app_dir(settings, flavor), flavor=flavor.name)
        ctx.register(Kind.ONEDIR, onedir(settings, flavor), flavor=flavor.name,
                     swi_prolog=dict(prolog.extra) if prolog else None)
        return result

    def freeze_here(self, settings: Settings, flavor: Flavor, prolog: Artifact | None) -> dict:
        venv, pip = deps.venv_dir(settings, flavor), deps.venv_bin(settings, flavor, "pip")
        work = onedir(settings, flavor).parent.parent
        for stale in (work, app_dir(settings, flavor)):
            shutil.rmtree(stale, ignore_errors=True)
        work.mkdir(parents=True)
        # No build isolation: the venv's own setuptools builds it, so this works offline too.
        install = [pip, "install", "-q", "--no-deps", "--no-build-isolation", "--no-compile",
                   "--target", app_dir(settings, flavor)]
        proc.run([*install, APP_SOURCE], what="installing the_edge_agent for the build")
        if prolog is not None:
            python = proc.run([deps.venv_bin(settings, flavor, "python"), "-c", "import sys; print(sys.version)"],
                              what="the build venv's Python").stdout.strip()
            proc.run([*install, swipl.ensure_janus_wheel(settings, prolog.path, prolog.extra["tarball"], pip, python)],
                     what="installing janus-swi for the build")
        entry = work / "tea_entry.py"
        entry.write_text(ENTRY_SCRIPT)
        swipl_prefix = prolog.path if prolog else None
        proc.run([deps.venv_bin(settings, flavor, "pyinstaller"), *pyinstaller_args(flavor, work, venv, swipl_prefix),
                  entry],
                 what="PyInstaller", stream=True,
                 env={"PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "0", **source_tea(settings, flavor)[1]})
        deduped = dedupe_shared_libs(onedir(settings, flavor))
        strip_own_libraries(onedir(settings, flavor))
        check_frozen(onedir(settings, flavor) / "tea", settings.version)
        return {"onedir": str(onedir(settings, flavor)), "deduplicated_libs": deduped}
