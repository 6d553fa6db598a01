"""CPython for a build root: Debian's source package of a newer suite, built inside the root.

The base's own python3 may be end-of-life (bullseye's 3.9); the interpreter frozen into the
AppImages is `[build.python] source` (python3.11) from `suite` (bookworm) and its -security suite
instead, with every patch Debian applied (their CPython security backports), compiled against
the root's glibc. apt inside the root fetches it and checks it against the signed Release files.
The newest version that can be downloaded is built, once: the install prefix is cached as a
tarball keyed by base, arch, that version and the build recipe, and unpacked into the root.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from . import debian, log, proc
from .config import CPythonPins, Settings
from .errors import BuildError, ConfigError


class BuildRoot(Protocol):
    """What this module needs of release.hosts.root.BuildRoot."""

    settings: Settings
    root: Path
    tarball: Path

    def venvs_dir(self) -> Path: ...
    def run(self, argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None,
            stream: bool = True, check: bool = True) -> subprocess.CompletedProcess: ...

MARKER = ".tea-python.json"  # in the prefix: what was built, read back on every later run
SOURCES = "etc/apt/sources.list.d/tea-python-source.list"
WORK = "/opt/tea-python-build"


@dataclass(frozen=True)
class PythonBuild:
    version: str         # 3.11.2
    source: str          # python3.11
    debian_version: str  # 3.11.2-6+deb12u8
    base: str            # bullseye

    def describe(self) -> str:
        return f"{self.version} (Debian {self.source} {self.debian_version}, built on {self.base})"


def ensure(host: BuildRoot) -> PythonBuild:
    """The newest CPython there is, installed in the root: the one already there when it is still
    the newest one that can be downloaded (or when offline), else unpacked from the cache or built."""
    pins = host.settings.pins.build.python
    marker = host.root / pins.prefix.lstrip("/") / MARKER
    installed = PythonBuild(**json.loads(marker.read_text())) if marker.is_file() else None
    if installed and host.settings.offline:
        return installed
    wanted = newest_cached(host, pins) if host.settings.offline else cached_or_built(host, pins, installed)
    if wanted is not None:
        install(host, wanted)
    return PythonBuild(**json.loads(marker.read_text()))


def recipe_key(host: BuildRoot, pins: CPythonPins) -> str:
    """Everything that changes the build besides the source version."""
    material = [host.tarball.name, pins.source, pins.prefix, list(pins.configure), list(pins.setup_local)]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:12]


def tarball_path(host: BuildRoot, pins: CPythonPins, version: str) -> Path:
    prefix, suffix = tarball_affixes(host, pins)
    return host.settings.cache_dir / "python" / f"{prefix}{version.replace(':', '_')}{suffix}"


def tarball_affixes(host: BuildRoot, pins: CPythonPins) -> tuple[str, str]:
    """Tarball names are <prefix><version><suffix>."""
    return f"{pins.source}-", f"-{host.settings.base}-{host.settings.arch}-{recipe_key(host, pins)}.tar.zst"


def cached_or_built(host: BuildRoot, pins: CPythonPins, installed: PythonBuild | None) -> Path | None:
    """The tarball of the newest version that can be had (None: it is the installed one)."""
    versions = available_versions(host, pins)
    for version in versions:
        if version != versions[0]:
            log.warn(f"{pins.source} {versions[0]} is listed but cannot be downloaded; using {version}")
        tarball = tarball_path(host, pins, version)
        if installed and installed.debian_version == version:
            return None
        if tarball.is_file():
            return tarball
        if download_source(host, pins, version):
            return build(host, pins, version, tarball)
    raise BuildError(f"no version of {pins.source} ({', '.join(versions) or 'none listed'}) could be downloaded "
                     f"from the {pins.suite} deb-src sources; log: {proc.current_log()}")


def newest_cached(host: BuildRoot, pins: CPythonPins) -> Path:
    prefix, suffix = tarball_affixes(host, pins)
    found = {path.name[len(prefix):-len(suffix)].replace("_", ":"): path
             for path in (host.settings.cache_dir / "python").glob(f"{prefix}*{suffix}")}
    if not found:
        raise ConfigError(f"offline and no {pins.source} build for {host.settings.base} {host.settings.arch} "
                          f"in {host.settings.cache_dir / 'python'}: run online once")
    return found[max(found, key=functools.cmp_to_key(debian.compare_versions))]


def available_versions(host: BuildRoot, pins: CPythonPins) -> list[str]:
    """Source versions of `pins.source` in `suite` and `suite`-security, newest first."""
    sources = host.root / SOURCES
    sources.write_text(debian.source_sources((host.root / "etc/apt/sources.list").read_text(), pins.suite))
    host.run(["apt-get", "update", "-q"], what=f"apt-get update (deb-src {pins.suite})")
    listing = host.run(["apt-cache", "madison", pins.source], what="apt-cache madison", stream=False)
    return debian.madison_versions(listing.stdout, pins.source)


def download_source(host: BuildRoot, pins: CPythonPins, version: str) -> bool:
    """Fetch the .dsc and tarballs of one version into a fresh work dir (False: not downloadable)."""
    shutil.rmtree(host.root / WORK.lstrip("/"), ignore_errors=True)
    (host.root / WORK.lstrip("/")).mkdir(parents=True)
    done = host.run(["sh", "-c", f'cd {WORK} && apt-get source -q --download-only "$0"', f"{pins.source}={version}"],
                    what=f"apt-get source {pins.source}={version}", check=False)
    return done.returncode == 0


def build(host: BuildRoot, pins: CPythonPins, version: str, tarball: Path) -> Path:
    """configure, make, make install inside the root; then the prefix becomes the cached tarball."""
    log.info(f"building CPython from Debian's {pins.source} {version} in the {host.settings.base} root "
             f"(~5 min on 2 cores natively, much longer emulated; once); log: {proc.current_log()}")
    prefix = host.root / pins.prefix.lstrip("/")
    shutil.rmtree(prefix, ignore_errors=True)
    (host.root / WORK.lstrip("/") / "Setup.local").write_text("".join(f"{line}\n" for line in pins.setup_local))
    host.run(["sh", "-c", build_script(pins, os.cpu_count() or 2)], what=f"building {pins.source} {version}")
    built = host.run([f"{pins.prefix}/bin/python3", "-c", "import platform; print(platform.python_version())"],
                     what="the built python3", stream=False)
    (prefix / MARKER).write_text(json.dumps(asdict(PythonBuild(
        built.stdout.strip(), pins.source, version, host.settings.base))))
    shutil.rmtree(host.root / WORK.lstrip("/"), ignore_errors=True)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".build-") as tmp:
        partial = Path(tmp) / tarball.name
        proc.run(["tar", "--zstd", "--numeric-owner", "-C", host.root, "-cf", partial, pins.prefix.lstrip("/")],
                 what="packing the CPython build")
        os.replace(partial, tarball)
    return tarball


def build_script(pins: CPythonPins, jobs: int) -> str:
    """The shell commands run in the root's work dir, after the source was downloaded there."""
    return "\n".join([
        "set -e",
        f"cd {WORK}",
        "dpkg-source -x ./*.dsc src",  # applies Debian's patches (their security fixes among them)
        "cd src",
        "cp ../Setup.local Modules/Setup.local",
        f"./configure {shlex.join([f'--prefix={pins.prefix}', *pins.configure])}",
        f"make -j{jobs}",
        "make install",
    ])


def install(host: BuildRoot, tarball: Path) -> None:
    """Unpack the prefix into the root; venvs made with another CPython there go away."""
    pins = host.settings.pins.build.python
    shutil.rmtree(host.root / pins.prefix.lstrip("/"), ignore_errors=True)
    shutil.rmtree(host.venvs_dir(), ignore_errors=True)
    proc.run(["tar", "--zstd", "--numeric-owner", "-C", host.root, "-xpf", tarball], what="unpacking CPython")
