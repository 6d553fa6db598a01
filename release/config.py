"""Options for one run, resolved once into frozen dataclasses.

Cascade: `release/release.toml` (every pin and default) → task flags → environment
(`TEA_RELEASE_CACHE`, `TEA_RELEASE_OFFLINE`). Nothing downstream reads flags, files or the
environment for configuration again.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import arch as arches
from .download import RemoteFile
from .errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
PINS_FILE = Path(__file__).with_name("release.toml")
PYPROJECT = REPO / "python" / "pyproject.toml"
PACKAGERS = ("auto", "builtin", "linuxdeploy", "appimagetool")


@dataclass(frozen=True)
class Flavor:
    name: str
    appimage_template: str
    llm: bool

    def appimage_name(self, version: str, arch: str) -> str:
        return self.appimage_template.format(version=version, arch=arch)


@dataclass(frozen=True)
class Model:
    name: str
    filename: str
    sha256: str
    size: int
    urls: tuple[str, ...] = ()
    token_env: str | None = None
    python_package: str | None = None
    python_module: str | None = None

    @property
    def source(self) -> str:
        return f"python package {self.python_package}" if self.python_package else self.urls[0]

    def remote_file(self) -> RemoteFile:
        return RemoteFile(self.filename, self.urls, self.sha256 or None, self.size or None, self.token_env)


@dataclass(frozen=True)
class Settings:
    version: str
    arch: str
    flavors: tuple[Flavor, ...]
    model: Model
    packager: str
    build_dir: Path
    dist_dir: Path
    cache_dir: Path
    offline: bool
    require_pins: bool
    asset_size_cap: int
    pins: dict = field(repr=False, compare=False)

    @property
    def arch_dir(self) -> Path:
        return self.build_dir / self.arch

    def flavor_dir(self, flavor: Flavor) -> Path:
        return self.arch_dir / flavor.name

    def appimage_path(self, flavor: Flavor) -> Path:
        return self.dist_dir / flavor.appimage_name(self.version, self.arch)


def load_pins(path: Path = PINS_FILE) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read pins from {path}: {exc}") from None


def project_version(pyproject: Path = PYPROJECT) -> str:
    try:
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read [project].version from {pyproject}: {exc}") from None


def default_cache_dir() -> Path:
    if os.environ.get("TEA_RELEASE_CACHE"):
        return Path(os.environ["TEA_RELEASE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tea-release"


def model_from_pins(pins: dict, name: str) -> Model:
    models = pins["models"]
    if name not in models:
        raise ConfigError(f"unknown model '{name}': choose one of {', '.join(sorted(models))} (release/release.toml)")
    entry = models[name]
    revision = entry.get("revision", "")
    return Model(
        name=name, filename=entry["filename"], sha256=entry.get("sha256", ""), size=entry.get("size", 0),
        urls=tuple(url.format(revision=revision) for url in entry.get("urls", ())),
        token_env=entry.get("token_env"), python_package=entry.get("python_package"),
        python_module=entry.get("python_module"))


def flavors_from_pins(pins: dict, requested: str) -> tuple[Flavor, ...]:
    table = pins["flavors"]
    names = list(table) if requested == "all" else [requested]
    unknown = [name for name in names if name not in table]
    if unknown:
        raise ConfigError(f"unknown flavor '{unknown[0]}': use one of {'|'.join([*table, 'all'])}")
    return tuple(Flavor(name, table[name]["appimage"], bool(table[name]["llm"])) for name in names)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def resolve(*, arch: str | None = None, flavor: str | None = None, model: str | None = None,
            packager: str = "auto", out: str | Path = "dist", build_dir: str | Path = "build",
            cache_dir: str | Path | None = None, offline: bool = False, require_pins: bool = False,
            asset_size_cap: int | None = None, pins_file: Path = PINS_FILE) -> Settings:
    """Resolve every option of a run; raises ConfigError with the fix for a bad value."""
    pins = load_pins(pins_file)
    defaults = pins["release"]
    if packager not in PACKAGERS:
        raise ConfigError(f"unknown packager '{packager}': use one of {'|'.join(PACKAGERS)}")
    return Settings(
        version=project_version(),
        arch=arches.normalize(arch) if arch else arches.host_arch(),
        flavors=flavors_from_pins(pins, flavor or defaults["default_flavor"]),
        model=model_from_pins(pins, model or defaults["default_model"]),
        packager=packager,
        build_dir=Path(build_dir).absolute(), dist_dir=Path(out).absolute(),
        cache_dir=Path(cache_dir).absolute() if cache_dir else default_cache_dir(),
        offline=offline or env_flag("TEA_RELEASE_OFFLINE"),
        require_pins=require_pins,
        asset_size_cap=asset_size_cap or int(defaults["asset_size_cap"]),
        pins=pins)
