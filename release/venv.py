"""One build virtualenv per flavor, made by the build host's Python and cached by what goes into it.

The LLM flavor's gets the portable llama-cpp-python wheel (release.llama); the plain flavor's
never even sees llama_cpp.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tomllib
from pathlib import Path

from . import config, hosts, llama
from .artifacts import Kind
from .config import Flavor, Settings
from .errors import ConfigError
from .pipeline import BaseStep, Context


def venv_packages(settings: Settings) -> list[str]:
    """Build tools plus the app's runtime dependencies (the app itself is installed per build)."""
    app_deps = tomllib.loads(config.PYPROJECT.read_text())["project"]["dependencies"]
    return [*settings.pins.python.requirements, *app_deps]


def venv_dir(settings: Settings, host: hosts.BuildHost, flavor: Flavor) -> Path:
    """Venvs are cached by what goes into them, so any build dir (a test's tmp one too) reuses them."""
    wheel_dir = llama.wheel_dir(settings, host) if flavor.llm else ""
    material = [host.identity(), settings.arch, venv_packages(settings), str(wheel_dir)]
    key = hashlib.sha256(json.dumps(material).encode()).hexdigest()[:16]
    return host.venvs_dir() / f"{settings.arch}-{'llm' if flavor.llm else 'plain'}-{key}"


def ensure_venv(settings: Settings, host: hosts.BuildHost, target: Path, wheel: Path | None) -> Path:
    """Create the venv once (venvs cannot be moved, so it is built in place under a lock)."""
    complete = target / ".complete"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():
            return target
        if settings.offline:
            raise ConfigError(f"offline and the build venv {target} does not exist: run `invoke deps` online once")
        shutil.rmtree(target, ignore_errors=True)
        host.run([host.python(), "-m", "venv", host.inside(target)], what="creating the build venv")
        packages = [*venv_packages(settings), *([str(wheel)] if wheel else [])]
        host.run([host.inside(target / "bin" / "pip"), "install", "-q", *packages],
                 what=f"installing build deps into {target.name} ({host.kind})")
        complete.touch()
    return target


class VenvStep(BaseStep):
    """A clean virtualenv per flavor: the plain flavor never even sees llama_cpp."""

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"venv-{flavor.name}"
        self.after = ("build-root", "llama-wheel") if flavor.llm else ("build-root",)

    def inputs(self, ctx: Context) -> dict:
        return {"venv": str(venv_dir(ctx.settings, ctx.host, self.flavor))}

    def run(self, ctx: Context) -> None:
        wheel = ctx.artifacts.get(Kind.WHEEL).path if self.flavor.llm else None
        target = venv_dir(ctx.settings, ctx.host, self.flavor)
        # The marker stands for the venv: hashing thousands of site-packages files would cost
        # every rerun more than it protects (the venv's path already names what is in it).
        ctx.register(Kind.VENV, ensure_venv(ctx.settings, ctx.host, target, wheel) / ".complete",
                     flavor=self.flavor.name)
