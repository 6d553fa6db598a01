"""Build dependencies: Debian packages, and one build virtualenv per arch and flavor.

llama-cpp-python only ships as source. It is compiled once per (version, CMake flags, arch,
Python) into our own wheel cache — pip's cache is keyed by the sdist alone and would happily hand
back a `-march=native` build — and every later venv installs that wheel in seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

from . import config, cross, log, proc
from .config import Flavor, Settings
from .errors import ConfigError
from .artifacts import Kind
from .pipeline import BaseStep, Context


def missing_apt_packages(packages: list[str]) -> list[str]:
    query = proc.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages], check=False)
    installed = {line.split()[0] for line in query.stdout.splitlines() if line.endswith(" installed")}
    return [name for name in packages if name not in installed]


def root_prefix() -> list[str] | None:
    """How to run a command as root here: directly, through password-less sudo (CI runners), or not at all."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and proc.run(["sudo", "-n", "true"], check=False).returncode == 0:
        return ["sudo", "-n", "-E"]
    return None


def ensure_apt_packages(packages: list[str]) -> list[str]:
    """Install what is missing when root; otherwise stop with the exact command to run."""
    if not shutil.which("dpkg-query"):
        log.warn("not a Debian/Ubuntu system: make sure these are installed: " + " ".join(packages))
        return []
    missing = missing_apt_packages(packages)
    if not missing:
        return []
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    as_root = root_prefix()
    if as_root is None:
        raise ConfigError(f"missing system packages; run: sudo apt-get update && sudo {' '.join(command)}")
    log.info(f"installing system packages: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    proc.run([*as_root, "apt-get", "update", "-q"], what="apt-get update", env=env, stream=True)
    proc.run([*as_root, *command], what="apt-get install", env=env, stream=True)
    return missing


class SystemPackagesStep(BaseStep):
    name = "system-packages"

    def inputs(self, ctx: Context) -> dict:
        return {"apt": apt_packages(ctx.settings)}

    def run(self, ctx: Context) -> dict:
        return {"installed": ensure_apt_packages(apt_packages(ctx.settings))}


def apt_packages(settings: Settings) -> list[str]:
    """The pinned packages, plus the cross toolchain when building a foreign arch."""
    extra = settings.pins.cross_for(settings.arch).toolchain if cross.is_cross(settings) else ()
    return [*settings.pins.apt_packages, *extra]


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def llama_wheel_dir(settings: Settings) -> Path:
    """Where the portable llama-cpp-python wheel for these pins lives in the cache."""
    pins = settings.pins.python
    key_material = json.dumps([pins.llama_cpp_python, pins.llama_cmake_args, settings.arch, python_tag()])
    key = hashlib.sha256(key_material.encode()).hexdigest()[:16]
    return settings.cache_dir / "wheels" / f"llama-cpp-python-{pins.llama_cpp_python}-{key}"


def ensure_llama_wheel(settings: Settings, pip: Path) -> Path:
    """The cached portable wheel; compiled (~15 min on 2 cores) only when missing."""
    wheel_dir = llama_wheel_dir(settings)
    existing = sorted(wheel_dir.glob("llama_cpp_python-*.whl"))
    if existing:
        return existing[0]
    if settings.offline:
        raise ConfigError(f"offline and no llama-cpp-python wheel in {wheel_dir}: run `invoke deps` online once")
    pins = settings.pins.python
    log.info(f"compiling llama-cpp-python {pins.llama_cpp_python} (portable CPU build, "
             f"~15 min on 2 cores, once); log: {proc.current_log()}")
    wheel_dir.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=wheel_dir.parent, prefix=".building-"))
    try:
        proc.run([pip, "wheel", "--no-deps", "--no-cache-dir", "-w", building,
                  f"llama-cpp-python=={pins.llama_cpp_python}"],
                 what="building llama-cpp-python", stream=True,
                 env={"CMAKE_ARGS": " ".join(pins.llama_cmake_args),
                      "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)})
        os.replace(building, wheel_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return ensure_llama_wheel(settings, pip)


def venv_packages(settings: Settings, flavor: Flavor) -> list[str]:
    """Build tools plus the app's runtime dependencies (the app itself is installed per build)."""
    app_deps = tomllib.loads(config.PYPROJECT.read_text())["project"]["dependencies"]
    return [*settings.pins.python.requirements, *app_deps]


def venv_dir(settings: Settings, flavor: Flavor) -> Path:
    """Venvs are cached by what goes into them, so any build dir (a test's tmp one too) reuses them."""
    if cross.is_cross(settings):
        return cross.venv_dir(settings, flavor)
    material = [sys.version, settings.arch, venv_packages(settings, flavor)]
    if flavor.llm:
        material.append(str(llama_wheel_dir(settings)))
    key = hashlib.sha256(json.dumps(material).encode()).hexdigest()[:16]
    return settings.cache_dir / "venvs" / f"{settings.arch}-{'llm' if flavor.llm else 'plain'}-{key}"


def venv_bin(settings: Settings, flavor: Flavor, tool: str) -> Path:
    return venv_dir(settings, flavor) / "bin" / tool


def ensure_venv(settings: Settings, flavor: Flavor) -> Path:
    """Create the venv once (venvs cannot be moved, so it is built in place under a lock)."""
    if cross.is_cross(settings):
        return cross.ensure_venv(settings, flavor)
    target = venv_dir(settings, flavor)
    complete = target / ".complete"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():
            return target
        if settings.offline:
            raise ConfigError(f"offline and the build venv {target} does not exist: run `invoke deps` online once")
        shutil.rmtree(target, ignore_errors=True)
        proc.run([sys.executable, "-m", "venv", target], what="creating the build venv")
        pip = target / "bin" / "pip"
        packages = venv_packages(settings, flavor)
        if flavor.llm:
            packages.append(str(ensure_llama_wheel(settings, pip)))
        proc.run([pip, "install", "-q", *packages], what=f"installing build deps into {target}", stream=True)
        complete.touch()
    return target


class VenvStep(BaseStep):
    """A clean virtualenv per flavor: the plain flavor never even sees llama_cpp."""

    after = ("system-packages",)

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"venv-{flavor.name}"

    def inputs(self, ctx: Context) -> dict:
        return {"venv": str(venv_dir(ctx.settings, self.flavor))}

    def run(self, ctx: Context) -> None:
        # The marker stands for the venv: hashing thousands of site-packages files would cost
        # every rerun more than it protects (the venv's path already names what is in it).
        ctx.register(Kind.VENV, ensure_venv(ctx.settings, self.flavor) / ".complete", flavor=self.flavor.name)
