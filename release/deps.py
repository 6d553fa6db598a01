"""Build dependencies: Debian packages, and one build virtualenv per arch and flavor.

llama-cpp-python only ships as source. It is compiled once per (version, CMake flags, arch,
Python) into our own wheel cache — pip's cache is keyed by the sdist alone and would happily hand
back a `-march=native` build — and every later venv installs that wheel in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import log, proc
from .config import Flavor, Settings
from .errors import ConfigError
from .pipeline import BaseStep, Context


def missing_apt_packages(packages: list[str]) -> list[str]:
    query = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
                           capture_output=True, text=True)
    installed = {line.split()[0] for line in query.stdout.splitlines() if line.endswith(" installed")}
    return [name for name in packages if name not in installed]


def ensure_apt_packages(packages: list[str]) -> list[str]:
    """Install what is missing when root; otherwise stop with the exact command to run."""
    if not shutil.which("dpkg-query"):
        log.warn("not a Debian/Ubuntu system: make sure these are installed: " + " ".join(packages))
        return []
    missing = missing_apt_packages(packages)
    if not missing:
        return []
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        raise ConfigError(f"missing system packages; run: sudo apt-get update && sudo {' '.join(command)}")
    log.info(f"installing system packages: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    proc.run(["apt-get", "update", "-q"], what="apt-get update", env=env)
    proc.run(command, what="apt-get install", env=env)
    return missing


class SystemPackagesStep(BaseStep):
    name = "system-packages"

    def inputs(self, ctx: Context) -> dict:
        return {"apt": ctx.settings.pins["apt"]["packages"]}

    def run(self, ctx: Context) -> dict:
        return {"installed": ensure_apt_packages(ctx.settings.pins["apt"]["packages"])}


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def llama_wheel_dir(settings: Settings) -> Path:
    """Where the portable llama-cpp-python wheel for these pins lives in the cache."""
    python_pins = settings.pins["python"]
    key_material = json.dumps([python_pins["llama_cpp_python"], python_pins["llama_cmake_args"],
                               settings.arch, python_tag()])
    key = hashlib.sha256(key_material.encode()).hexdigest()[:16]
    return settings.cache_dir / "wheels" / f"llama-cpp-python-{python_pins['llama_cpp_python']}-{key}"


def ensure_llama_wheel(settings: Settings, pip: Path) -> Path:
    """The cached portable wheel; compiled (~15 min on 2 cores) only when missing."""
    wheel_dir = llama_wheel_dir(settings)
    existing = sorted(wheel_dir.glob("llama_cpp_python-*.whl"))
    if existing:
        return existing[0]
    if settings.offline:
        raise ConfigError(f"offline and no llama-cpp-python wheel in {wheel_dir}: run `invoke deps` online once")
    python_pins = settings.pins["python"]
    log.info(f"compiling llama-cpp-python {python_pins['llama_cpp_python']} (portable CPU build, "
             f"~15 min on 2 cores, once); log: {settings.arch_dir / 'llama-wheel.log'}")
    wheel_dir.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=wheel_dir.parent, prefix=".building-"))
    try:
        proc.run([pip, "wheel", "--no-deps", "--no-cache-dir", "-w", building,
                  f"llama-cpp-python=={python_pins['llama_cpp_python']}"],
                 what="building llama-cpp-python", log_file=settings.arch_dir / "llama-wheel.log",
                 env={"CMAKE_ARGS": " ".join(python_pins["llama_cmake_args"]),
                      "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)})
        os.replace(building, wheel_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return ensure_llama_wheel(settings, pip)


def venv_dir(settings: Settings, flavor: Flavor) -> Path:
    return settings.flavor_dir(flavor) / "venv"


def venv_bin(settings: Settings, flavor: Flavor, tool: str) -> Path:
    return venv_dir(settings, flavor) / "bin" / tool


class VenvStep(BaseStep):
    """A clean virtualenv per flavor: the plain flavor never even sees llama_cpp."""

    after = ("system-packages",)

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"venv-{flavor.name}"

    def inputs(self, ctx: Context) -> dict:
        python_pins = ctx.settings.pins["python"]
        return {"python": sys.version, "pins": python_pins if self.flavor.llm else python_pins["requirements"]}

    def outputs(self, ctx: Context) -> list[Path]:
        return [venv_bin(ctx.settings, self.flavor, "pyinstaller")]

    def run(self, ctx: Context) -> dict:
        settings, target = ctx.settings, venv_dir(ctx.settings, self.flavor)
        shutil.rmtree(target, ignore_errors=True)
        proc.run([sys.executable, "-m", "venv", target], what="creating the build venv")
        pip = venv_bin(settings, self.flavor, "pip")
        packages = list(settings.pins["python"]["requirements"])
        if self.flavor.llm:
            packages.append(str(ensure_llama_wheel(settings, pip)))
        proc.run([pip, "install", "-q", *packages], what=f"installing build deps into {target}",
                 log_file=settings.arch_dir / f"{self.name}.log")
        return {"venv": str(target)}
