"""The build host protocol, what a build host reports about itself, and what all of them share."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

from ..config import Settings
from ..floor import Floor


Runner = Callable[..., subprocess.CompletedProcess]  # proc.run's signature: argv, what=, stream=, check=


@dataclass(frozen=True)
class Description:
    """What a build host is, for the build log, the audit and manifest.json."""

    kind: str          # "host", "build root" or "emulated build root"
    base: str          # the Debian suite, or "host"
    distribution: str  # PRETTY_NAME of its /etc/os-release
    python: str        # the CPython that is frozen into the AppImages
    floor: Floor       # the glibc and libstdc++ it provides: the most an AppImage may need

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Description:
        return cls(**{**data, "floor": Floor(**data["floor"])})

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        partial.replace(path)
        return path


class BuildHost(Protocol):
    settings: Settings
    kind: str
    strip: str  # the binutils strip for the target arch

    def packages(self) -> tuple[str, ...]:
        """Host packages it needs besides [apt] packages (a cross toolchain)."""

    def identity(self) -> list[str]:
        """What distinguishes its builds from another host's: part of venv and wheel cache keys."""

    def prepare(self) -> Description:
        """Make it ready (root, CPython, emulation); idempotent, fast when already done."""

    def python(self) -> str:
        """The interpreter that makes venvs, as the build environment names it."""

    def venvs_dir(self) -> Path:
        """Host path of the directory its venvs live in."""

    @property
    def system_root(self) -> Path:
        """Host path of its file system's root: its apt sources, its dpkg database."""

    def inside(self, path: Path) -> str:
        """A host path as the build environment sees it."""

    def command(self, argv: Sequence[str]) -> list[str]:
        """A host argv running `argv` in the build environment with the caller's environment."""

    def run(self, argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None,
            stream: bool = True, check: bool = True) -> subprocess.CompletedProcess:
        """Run a build command there (logged by release.proc; with `check`, BuildError on failure)."""

    def compiler_rejects(self, options: Sequence[str]) -> str | None:
        """Why the C compiler that builds llama.cpp refuses these options (None: it takes them)."""

    def compiler_version(self) -> str:
        """That compiler and its version, e.g. "gcc 10.2.1"."""

    def build_wheel(self, source: Path, out: Path, env: Mapping[str, str]) -> None:
        """`pip wheel` a source tree into `out`, compiled by and for this host."""

    def runtime_compiler(self, out_dir: Path) -> str | None:
        """A `cc` for the static AppImage runtime (None: this machine's `cc`)."""


def distribution(root: Path) -> str:
    """PRETTY_NAME of the system in `root` ("Debian GNU/Linux 11 (bullseye)")."""
    for name in ("etc/os-release", "usr/lib/os-release"):
        try:
            lines = (root / name).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip('"')
    return "unknown"


def compiler_rejects(run: Runner, cc: str, options: Sequence[str]) -> str | None:
    """Compile an empty file with `options` (`run`: where); gcc refuses an -m/-march it does not
    know, and its last error line says why."""
    done = run([cc, *options, "-x", "c", "-c", "-o", "/dev/null", "/dev/null"],
               what=f"probing {cc} {' '.join(options)}", stream=False, check=False)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]


def compiler_version(run: Runner, cc: str) -> str:
    done = run([cc, "-dumpfullversion"], what=f"{cc} -dumpfullversion", stream=False, check=False)
    return f"{cc} {done.stdout.strip() or 'missing'}"


def pip_wheel(host: BuildHost, source: Path, out: Path, env: Mapping[str, str]) -> None:
    """`pip wheel` with the host's Python, through a throwaway venv (the base Python has no pip)."""
    venv = out.with_name(f"{out.name}-venv")
    host.run([host.python(), "-m", "venv", host.inside(venv)], what="creating a venv for pip wheel")
    host.run([host.inside(venv / "bin" / "pip"), "wheel", "--no-deps", "--no-cache-dir", "-w", host.inside(out),
              host.inside(source)], what=f"building the {source.name} wheel", env=env)


class CompilesHere:
    """What a host whose own compiler builds for the target shares (all but an emulated root):
    llama.cpp is built by pip inside it, the static runtime by this machine's `cc`."""

    cc = "cc"
    run: Runner

    def compiler_rejects(self, options: Sequence[str]) -> str | None:
        return compiler_rejects(self.run, self.cc, options)

    def compiler_version(self) -> str:
        return compiler_version(self.run, self.cc)

    def build_wheel(self, source: Path, out: Path, env: Mapping[str, str]) -> None:
        pip_wheel(self, source, out, env)

    def runtime_compiler(self, out_dir: Path) -> str | None:
        return None  # static: this machine's `cc` makes the same runtime for any base
