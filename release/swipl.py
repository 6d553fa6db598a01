"""SWI-Prolog for the AppImages' `language: prolog` nodes: a minimal build of a Debian source package.

janus-swi, the Python binding tea uses, needs SWI-Prolog 9.1.12 or newer; Debian 12 ships 9.0.4.
[swipl] in release.toml names a newer suite's source package (trixie: 9.2.9). apt downloads its
upstream tarball (`--tar-only`), checked against that suite's signed Sources index; Debian's own
patches only touch documentation, a test and the bundled jQuery, none of which this build uses.
apt runs with a private state directory, so the machine's own apt configuration is never changed;
its deb-src line is derived from the mirror that machine already uses (no mirror is named here).

The build (CMake, `cmake_args`: the core libraries and clib, nothing that needs a GUI, Java or
extra system libraries) runs on the build host of the release (release.hosts): in the pinned
build root, so SWI-Prolog and janus-swi need no newer glibc than the root's, like everything else
bundled. CMake itself comes from a pinned PyPI wheel in a throwaway venv ([swipl] build_tools), as
scikit-build-core gets it for llama.cpp: the same CMake on every build host, and the root stays
as debootstrap made it. The install goes into a prefix whose RUNPATHs are made relative, packed
as a tarball in the cache keyed by version, build host, arch and options, and unpacked into each
build dir. The source of janus-swi's Python package travels in the prefix (JANUS_SOURCE), so its
extension is compiled by whichever Python freezes tea. An emulated (foreign-arch) build bundles
no SWI-Prolog yet: compiling it under qemu would take hours.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from . import arch as arches
from . import debian, hosts, log, proc
from .artifacts import Kind
from .config import Flavor, Settings, SwiplPins
from .errors import BuildError, ConfigError
from .pipeline import BaseStep, Context

MARKER = ".tea-swipl.json"           # in the prefix: what was built
JANUS_SOURCE = "share/janus-swi"     # in the prefix: janus-swi's Python package source
JANUS_FILES = ("setup.py", "pyproject.toml", "README.md", "janus")
# What `build_script` and `make_relocatable` do, in words: part of the tarball's cache key.
RECIPE = "upstream tarball; cmake, build, install; RUNPATHs relative to $ORIGIN; janus-swi source in share/"


@dataclass(frozen=True)
class SwiplBuild:
    version: str         # 9.2.9, as SWI-Prolog reports itself
    debian_version: str  # 9.2.9+dfsg-1, the source package built
    suite: str           # trixie
    arch: str


# --- apt, with private state ---------------------------------------------------------------------

def apt_options(state: Path) -> list[str]:
    """apt reading only our sources list and keeping its lists and downloads under `state`."""
    return ["-q", "-o", f"Dir::Etc::SourceList={state / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "APT::Sandbox::User=root"]


def available_versions(builder: hosts.BuildHost, pins: SwiplPins, state: Path) -> list[str]:
    """Versions of the source package in the pinned suite, newest first."""
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(f"deb-src {debian.system_mirror(builder.system_root).url} {pins.suite} main\n")
    builder.run(["apt-get", *apt_options(state), "update"], what=f"apt-get update (deb-src {pins.suite})",
                stream=False)
    listing = builder.run(["apt-cache", *apt_options(state), "madison", pins.source], what="apt-cache madison",
                          stream=False, check=False)
    return debian.madison_versions(listing.stdout, pins.source)


def usable(versions: list[str], minimum: str) -> list[str]:
    """The versions janus-swi works with (`minimum` or newer), in the given order."""
    return [version for version in versions if upstream_version(version) >= upstream_version(minimum)]


def upstream_version(debian_version: str) -> tuple[int, ...]:
    """(9, 2, 9) for "9.2.9+dfsg-1" (epoch and Debian revision dropped)."""
    upstream = debian_version.split(":", 1)[-1].rsplit("-", 1)[0]
    match = re.match(r"\d+(?:\.\d+)*", upstream)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


# --- the cached build ------------------------------------------------------------------------------

def recipe_key(settings: Settings, builder: hosts.BuildHost) -> str:
    """Everything that changes the build besides the version picked."""
    pins = settings.pins.swipl
    material = [pins.source, pins.suite, pins.minimum, list(pins.cmake_args), list(pins.build_tools), settings.arch,
                builder.identity(), RECIPE]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:12]


def tarball_affixes(settings: Settings, builder: hosts.BuildHost) -> tuple[str, str]:
    """Tarball names are <prefix><Debian version><suffix>."""
    return f"{settings.pins.swipl.source}-", f"-{settings.arch}-{recipe_key(settings, builder)}.tar.zst"


def tarball_path(settings: Settings, builder: hosts.BuildHost, debian_version: str) -> Path:
    prefix, suffix = tarball_affixes(settings, builder)
    return settings.cache_dir / "swipl" / f"{prefix}{debian_version.replace(':', '_')}{suffix}"


def work_dir(settings: Settings) -> Path:
    return settings.arch_dir / "swipl-build"


def ensure_tarball(settings: Settings, builder: hosts.BuildHost) -> Path:
    """The cached build for these pins (no network then); else the newest usable version of the
    suite, built first (a few minutes, once)."""
    cached = newest_cached(settings, builder)
    if cached is not None:
        return cached
    pins = settings.pins.swipl
    if settings.offline:
        raise ConfigError(f"offline and no SWI-Prolog build for {settings.arch} in {settings.cache_dir / 'swipl'}: "
                          f"run `invoke deps` online once")
    versions = usable(available_versions(builder, pins, work_dir(settings) / "apt"), pins.minimum)
    if not versions:
        raise BuildError(f"no {pins.source} {pins.minimum} or newer in {pins.suite}'s deb-src index "
                         f"(janus-swi needs it); log: {proc.current_log()}")
    tarball = tarball_path(settings, builder, versions[0])
    build(settings, builder, versions[0], tarball)
    return tarball


def newest_cached(settings: Settings, builder: hosts.BuildHost) -> Path | None:
    prefix, suffix = tarball_affixes(settings, builder)
    found = {path.name[len(prefix):-len(suffix)].replace("_", ":"): path
             for path in (settings.cache_dir / "swipl").glob(f"{prefix}*{suffix}")}
    return found[max(found, key=upstream_version)] if found else None


def build_script(pins: SwiplPins, prefix: Path, jobs: int, tools: Path) -> str:
    """Shell commands run in the work dir, after the upstream tarball was downloaded there;
    `tools`: the bin dir of the venv with the build tools."""
    configure = ["cmake", "-S", "src", "-B", "build", "-G", "Unix Makefiles", f"-DCMAKE_INSTALL_PREFIX={prefix}",
                 *pins.cmake_args]
    return "\n".join([
        "set -e",
        f'export PATH="{tools}:$PATH"',
        "rm -rf src build",
        "mkdir src",
        "tar -xzf ./*.orig.tar.* -C src --strip-components=1",
        shlex.join(configure),
        f"cmake --build build -j{jobs}",
        "cmake --install build",
    ])


def build(settings: Settings, builder: hosts.BuildHost, debian_version: str, tarball: Path) -> None:
    """Download, build, install into a staging prefix, make it relocatable, pack it into the cache."""
    pins, work = settings.pins.swipl, work_dir(settings)
    log.info(f"building SWI-Prolog from {pins.suite}'s {pins.source} {debian_version} (a few minutes, once); "
             f"log: {proc.current_log()}")
    prefix = work / "install"
    shutil.rmtree(prefix, ignore_errors=True)
    for stale in work.glob("*.orig.tar.*"):
        stale.unlink()
    builder.run(["sh", "-c", f'cd "$0" && apt-get {shlex.join(apt_options(work / "apt"))} source --download-only '
                             f'--tar-only "$1"', str(work), f"{pins.source}={debian_version}"],
                what=f"apt-get source {pins.source}={debian_version}")
    tools = work / "tools"
    shutil.rmtree(tools, ignore_errors=True)
    builder.run([builder.python(), "-m", "venv", builder.inside(tools)], what="creating the build-tools venv")
    builder.run([builder.inside(tools / "bin" / "pip"), "install", "-q", *pins.build_tools],
                what=f"installing {', '.join(pins.build_tools)}")
    script = build_script(pins, prefix, os.cpu_count() or 2, tools / "bin")
    builder.run(["sh", "-c", f'cd "$0" && {script}', str(work)], what=f"building SWI-Prolog {debian_version}")
    make_relocatable(prefix)
    copy_janus_source(work / "src" / "packages" / "swipy", prefix / JANUS_SOURCE)
    version = builder.run([str(prefix / "bin" / "swipl"), "--version"], what="swipl --version", stream=False).stdout
    (prefix / MARKER).write_text(json.dumps(asdict(SwiplBuild(
        swipl_version(version), debian_version, pins.suite, settings.arch))))
    pack(prefix, tarball)
    for done in ("build", "install", "tools"):  # nothing may come to rely on the staging prefix's path
        shutil.rmtree(work / done, ignore_errors=True)


def swipl_version(banner: str) -> str:
    """9.2.9 from "SWI-Prolog version 9.2.9 for x86_64-linux"."""
    match = re.search(r"version (\d+\.\d+\.\d+)", banner)
    if not match:
        raise BuildError(f"the SWI-Prolog just built does not say its version: {banner.strip()[:200]!r}")
    return match.group(1)


def make_relocatable(prefix: Path) -> None:
    """Absolute RUNPATHs into the prefix become $ORIGIN-relative ones (the prefix moves: cache, AppImage).
    SWI-Prolog's ELF files are its programs and its libraries (libswipl, foreign modules)."""
    for path in sorted([*prefix.glob("lib/swipl/bin/*/*"), *prefix.glob("lib/swipl/lib/*/*")]):
        if path.is_symlink() or not path.is_file():
            continue
        runpath = proc.run(["patchelf", "--print-rpath", path], what="patchelf --print-rpath").stdout.strip()
        entries = [entry for entry in runpath.split(":") if entry]
        if any(Path(entry).is_relative_to(prefix) for entry in entries):
            relative = [f"$ORIGIN/{os.path.relpath(entry, path.parent)}" if Path(entry).is_relative_to(prefix)
                        else entry for entry in entries]
            proc.run(["patchelf", "--set-rpath", ":".join(relative), path], what="patchelf --set-rpath")


def copy_janus_source(swipy: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in JANUS_FILES:
        source = swipy / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target / name)


def pack(prefix: Path, tarball: Path) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".build-") as tmp:
        partial = Path(tmp) / tarball.name
        proc.run(["tar", "--zstd", "--numeric-owner", "-C", prefix, "-cf", partial, "."], what="packing SWI-Prolog")
        os.replace(partial, tarball)


def unpack(tarball: Path, target: Path) -> SwiplBuild:
    """The prefix at `target` (replaced whole, never half-unpacked there)."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    proc.run(["tar", "--zstd", "-C", staging, "-xf", tarball], what="unpacking SWI-Prolog")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return read_build(target)


def read_build(prefix: Path) -> SwiplBuild:
    return SwiplBuild(**json.loads((prefix / MARKER).read_text()))


# --- what the freeze needs of a prefix ------------------------------------------------------------

def prefix_dir(settings: Settings) -> Path:
    """Where SwiplStep unpacks SWI-Prolog for this build."""
    return settings.arch_dir / "swipl"


def home(prefix: Path) -> Path:
    """SWI-Prolog's home in the prefix (boot.prc, library/, lib/<arch>-linux/)."""
    return prefix / "lib" / "swipl"


def environment(prefix: Path) -> dict[str, str]:
    """What a Python using janus-swi needs to find this prefix's libswipl and home (the relocated
    build's compiled-in home does not exist)."""
    return {"LD_LIBRARY_PATH": str(next(home(prefix).glob("lib/*-linux"))), "SWI_HOME_DIR": str(home(prefix))}


def runtime_data(prefix: Path, bundled_as: str) -> list[tuple[Path, str]]:
    """(source, destination) pairs of the home the frozen app needs: the boot file, the Prolog
    library, the foreign modules and the licence (BSD-2: it travels with the binaries). libswipl
    itself is bundled as janus' dependency."""
    root = home(prefix)
    foreign = [path for path in sorted(root.glob("lib/*/*.so")) if not path.name.startswith("libswipl")]
    pairs = [(root / "boot.prc", bundled_as), (root / "LICENSE", bundled_as), (root / "library", f"{bundled_as}/library")]
    return pairs + [(path, f"{bundled_as}/{path.parent.relative_to(root).as_posix()}") for path in foreign]


def janus_wheel_dir(settings: Settings, tarball: str, python: str) -> Path:
    """The cached janus-swi wheel for one SWI-Prolog build and one Python (`python`: its version)."""
    key = hashlib.sha256(json.dumps([tarball, python]).encode()).hexdigest()[:16]
    return settings.cache_dir / "swipl" / f"janus-swi-{key}"


def ensure_janus_wheel(settings: Settings, host: hosts.BuildHost, prefix: Path, tarball: str, venv: Path) -> Path:
    """janus-swi compiled against this SWI-Prolog by the build venv's Python on the build host, once:
    every build reuses the same bytes (a compile embeds its paths), so a flavor built alone is the
    same file."""
    python = host.run([host.inside(venv / "bin" / "python"), "-c", "import sys; print(sys.version)"],
                      what="the build venv's Python", stream=False).stdout.strip()
    wheel_dir = janus_wheel_dir(settings, tarball, python)
    existing = sorted(wheel_dir.glob("janus_swi-*.whl"))
    if existing:
        return existing[0]
    wheel_dir.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=wheel_dir.parent, prefix=".building-"))
    try:
        install_janus(host, prefix, [host.inside(venv / "bin" / "pip"), "wheel", "-q", "--no-deps",
                                     "--no-build-isolation", "-w", str(building)], scratch=wheel_dir.parent)
        os.replace(building, wheel_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return ensure_janus_wheel(settings, host, prefix, tarball, venv)


def install_janus(host: hosts.BuildHost, prefix: Path, pip_install: Sequence[str], *, scratch: Path) -> None:
    """janus-swi compiled against this prefix on `host`, by `pip_install` (a `pip install` command line
    without the package), from a fresh copy of its source in `scratch` (a dir the host sees):
    setuptools would reuse a build dir made against another prefix."""
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".janus-swi-") as tmp:
        source = Path(tmp) / "janus-swi"
        shutil.copytree(prefix / JANUS_SOURCE, source)
        host.run([*pip_install, host.inside(source)], what="installing janus-swi",
                 env={"SWIPL": host.inside(prefix / "bin" / "swipl")})


def bundled(settings: Settings, flavor: Flavor) -> bool:
    """Whether this build of `flavor` carries SWI-Prolog: not yet on an emulated (foreign-arch) build."""
    return flavor.prolog and settings.arch == arches.host_arch()


class SwiplStep(BaseStep):
    """SWI-Prolog for the flavors that bundle it: the cached build, unpacked into this build dir."""

    name = "swipl"
    after = ("build-root",)

    def inputs(self, ctx: Context) -> dict:
        return {"pins": asdict(ctx.settings.pins.swipl), "builder": ctx.host.identity()}

    def skip_reason(self, ctx: Context) -> str | None:
        if not any(bundled(ctx.settings, flavor) for flavor in ctx.settings.flavors):
            emulated = ctx.settings.arch != arches.host_arch()
            return "no flavor bundles Prolog" + (" on an emulated build" if emulated else "")
        return None

    def run(self, ctx: Context) -> dict:
        tarball = ensure_tarball(ctx.settings, ctx.host)
        built = unpack(tarball, prefix_dir(ctx.settings))
        ctx.register(Kind.SWIPL, prefix_dir(ctx.settings), version=built.version,
                     debian_version=built.debian_version, suite=built.suite, tarball=tarball.name)
        return asdict(built)
