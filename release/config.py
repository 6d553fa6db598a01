"""Options for one run, resolved once into frozen dataclasses.

Cascade: `release/release.toml` (every pin and every default) → task flags → environment
(`TEA_RELEASE_CACHE`, `TEA_RELEASE_OFFLINE`, the signing key in `TEA_RELEASE_SIGNING_KEY`). The pins file is parsed and validated here, once, into
typed `Pins`; a bad entry is one line naming its key. Nothing downstream reads flags, files or the
environment for configuration again.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import arch as arches
from . import gpg, proc
from .download import RemoteFile
from .errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
PINS_FILE = Path(__file__).with_name("release.toml")
PYPROJECT = REPO / "python" / "pyproject.toml"
PACKAGERS = ("auto", "builtin", "linuxdeploy", "appimagetool")
OFFLINE_ENV = "TEA_RELEASE_OFFLINE"
DIST_DIR = "dist"    # default --out
BUILD_DIR = "build"  # default --build-dir
_SHA256 = re.compile(r"[0-9a-f]{64}")
VERSION_GLOB = "[0-9]*"
UPDATE_TRANSPORTS = {"gh-releases-zsync": 5, "zsync": 2}  # AppImage update information: transport → fields
UPDATE_INFORMATION_MAX = 1023  # the runtime's .upd_info section is 1024 bytes, NUL-terminated


@dataclass(frozen=True)
class Flavor:
    name: str
    appimage_template: str
    llm: bool
    prolog: bool = False  # SWI-Prolog and janus-swi bundled

    def appimage_name(self, version: str, arch: str) -> str:
        return self.appimage_template.format(version=version, arch=arch)

    @property
    def product(self) -> str:
        """The name users know it by: the AppImage's name before its version (tea-python-llm)."""
        return self.appimage_template.split("-{version}", 1)[0]


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
    license: str = ""      # the model's licence (for the SBOM)
    license_url: str = ""

    @property
    def source(self) -> str:
        return f"python package {self.python_package}" if self.python_package else self.urls[0]

    def remote_file(self) -> RemoteFile:
        return RemoteFile(self.filename, self.urls, self.sha256 or None, self.size or None, self.token_env)


@dataclass(frozen=True)
class PythonPins:
    """The build venv: tools, and the portable llama-cpp-python build."""

    requirements: tuple[str, ...]
    llama_cpp_python: str
    llama_cmake_args: tuple[str, ...]


@dataclass(frozen=True)
class SwiplPins:
    """SWI-Prolog for `language: prolog` nodes: which Debian source package, and how it is built."""

    source: str
    suite: str
    minimum: str
    cmake_args: tuple[str, ...]
    build_tools: tuple[str, ...]  # pip requirements of the build (CMake), pinned


@dataclass(frozen=True)
class Tool:
    """An external packaging tool, one pinned download per arch."""

    name: str
    version: str
    downloads: dict[str, RemoteFile]

    def for_arch(self, arch: str) -> RemoteFile:
        if arch not in self.downloads:
            raise ConfigError(f"no pin for {self.name} on {arch}: add [tools.{self.name}.{arch}] url/sha256 "
                              f"to {PINS_FILE.name}")
        return self.downloads[arch]


@dataclass(frozen=True)
class CrossPins:
    """Building `arch` on a host of another arch (release/hosts/emulated.py)."""

    toolchain: tuple[str, ...]
    runtime_suite: str
    runtime_packages: tuple[str, ...]


@dataclass(frozen=True)
class CPythonPins:
    """The CPython built inside the build root from a Debian source package (release/cpython.py)."""

    source: str
    suite: str
    prefix: str
    configure: tuple[str, ...]
    setup_local: tuple[str, ...]


@dataclass(frozen=True)
class CpuVariantPins:
    """ggml feature -> the compiler options it needs; variant -> why it is never shipped."""

    features: dict[str, tuple[str, ...]]
    never: dict[str, str]


@dataclass(frozen=True)
class BuildPins:
    """The build root: its Debian base, its packages, its CPython, the CPU variants of llama.cpp."""

    base: str
    packages: tuple[str, ...]
    python: CPythonPins
    cpu_variants: dict[str, CpuVariantPins]

    def variants_for(self, arch: str) -> CpuVariantPins:
        return self.cpu_variants.get(arch, CpuVariantPins({}, {}))


@dataclass(frozen=True)
class SystemsPins:
    """Suites of the systems check, oldest first; `emulated` for an arch run under qemu."""

    suites: tuple[str, ...]
    emulated: tuple[str, ...]


@dataclass(frozen=True)
class VariantProofPins:
    """[variant_proof]: emulated CPU models per arch, and the small model emulated runs use."""

    cpus: dict[str, tuple[str, ...]]
    emulated_model: str | None


@dataclass(frozen=True)
class Pins:
    """Everything release.toml says, validated."""

    default_model: str
    default_flavor: str
    asset_size_cap: int
    flavors: dict[str, Flavor]
    models: dict[str, Model]
    python: PythonPins
    swipl: SwiplPins
    apt_packages: tuple[str, ...]
    tools: dict[str, Tool]
    cross: dict[str, CrossPins]
    build: BuildPins
    systems: SystemsPins
    variant_proof: VariantProofPins
    update_information: str = ""  # template: {appimage} is the flavor's file name as a glob

    def flavor_selection(self, requested: str) -> tuple[Flavor, ...]:
        names = list(self.flavors) if requested == "all" else [requested]
        unknown = [name for name in names if name not in self.flavors]
        if unknown:
            raise ConfigError(f"unknown flavor '{unknown[0]}': use one of {'|'.join([*self.flavors, 'all'])}")
        return tuple(self.flavors[name] for name in names)

    def model(self, name: str) -> Model:
        if name not in self.models:
            raise ConfigError(f"unknown model '{name}': choose one of {', '.join(sorted(self.models))} "
                              f"({PINS_FILE.name})")
        return self.models[name]

    def cross_for(self, arch: str) -> CrossPins:
        if arch not in self.cross:
            raise ConfigError(f"no [cross.{arch}] table in {PINS_FILE.name}: cannot build {arch} on this host")
        return self.cross[arch]


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
    pins: Pins
    base: str                 # the build root's Debian suite, or "host" (this machine itself)
    systems: tuple[str, ...]  # suites of the systems check
    signing_key: gpg.SigningKey | None = None  # None: the release is not signed
    version_date: int = 0  # when the version was set (provenance.version_epoch): the AppStream release date

    @property
    def arch_dir(self) -> Path:
        return self.build_dir / self.arch

    @property
    def release_date(self) -> str:
        """The AppStream release date: the day the version was set (UTC)."""
        return datetime.fromtimestamp(self.version_date, tz=timezone.utc).strftime("%Y-%m-%d")

    def flavor_dir(self, flavor: Flavor) -> Path:
        return self.arch_dir / flavor.name

    def appimage_path(self, flavor: Flavor) -> Path:
        return self.dist_dir / flavor.appimage_name(self.version, self.arch)

    def update_information(self, flavor: Flavor) -> str:
        """What the flavor's AppImage embeds in `.upd_info`: its file name of any version (one
        starting with a digit, so `tea-python-*` cannot match `tea-python-llm-*`) and this arch."""
        return self.pins.update_information.format(appimage=flavor.appimage_name(VERSION_GLOB, self.arch))


# --- reading release.toml ------------------------------------------------------------------------

class _Table:
    """One TOML table with typed getters; every error names the key as `[table] key`."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{PINS_FILE.name}: [{where}] must be a table")
        self.data, self.where = data, where

    def _bad(self, key: str, wanted: str) -> ConfigError:
        return ConfigError(f"{PINS_FILE.name}: [{self.where}] {key} must be {wanted}, "
                           f"got {self.data.get(key)!r}")

    def table(self, key: str) -> _Table:
        if key not in self.data:
            raise ConfigError(f"{PINS_FILE.name}: missing table [{self._join(key)}]")
        return _Table(self.data[key], self._join(key))

    def subtables(self, key: str) -> dict[str, _Table]:
        tables = self.data.get(key, {})
        if not isinstance(tables, dict):
            raise self._bad(key, "a table of tables")
        return {name: _Table(value, self._join(f"{key}.{name}")) for name, value in tables.items()}

    def allow(self, *keys: str) -> _Table:
        """A misspelt key would silently fall back to a default: refuse keys we do not read."""
        unknown = sorted(set(self.data) - set(keys))
        if unknown:
            raise ConfigError(f"{PINS_FILE.name}: [{self.where}] has unknown key(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(keys)}")
        return self

    def _join(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or (default is None and not value):
            raise self._bad(key, "a non-empty string")
        return value

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self._bad(key, "a non-negative integer")
        return value

    def flag(self, key: str) -> bool:
        value = self.data.get(key)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def strings(self, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = self.data.get(key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise self._bad(key, "a list of strings")
        return tuple(value)

    def sha256(self, key: str) -> str:
        value = self.text(key, "")
        if value and not _SHA256.fullmatch(value):
            raise self._bad(key, 'empty (not pinned yet) or 64 lower-case hex digits')
        return value

    def url(self, key: str) -> str:
        value = self.text(key)
        if not value.startswith(("https://", "http://")):
            raise self._bad(key, "an http(s) URL")
        return value


def _flavor(name: str, table: _Table) -> Flavor:
    table.allow("appimage", "llm", "prolog")
    return Flavor(name, table.text("appimage"), table.flag("llm"), table.flag("prolog"))


def _model(name: str, table: _Table) -> Model:
    table.allow("filename", "revision", "urls", "sha256", "size", "token_env", "python_package", "python_module",
                "license", "license_url")
    revision = table.text("revision", "")
    urls = tuple(url.format(revision=revision) for url in table.strings("urls", ()))
    package = table.data.get("python_package")
    if not urls and not package:
        raise ConfigError(f"{PINS_FILE.name}: [{table.where}] needs urls or python_package")
    return Model(name=name, filename=table.text("filename"), sha256=table.sha256("sha256"),
                 size=table.integer("size", 0), urls=urls, token_env=table.data.get("token_env"),
                 python_package=table.text("python_package") if package else None,
                 python_module=table.text("python_module") if package else None,
                 license=table.text("license", ""), license_url=table.text("license_url", ""))


def _tool(name: str, table: _Table) -> Tool:
    """[tools.<name>] holds `version`; each sub-table [tools.<name>.<arch>] one pinned download."""
    version = table.text("version")
    downloads = {}
    for arch in (key for key, value in table.data.items() if isinstance(value, dict)):
        entry = table.table(arch).allow("url", "sha256", "size")
        url = entry.url("url")
        filename = f"{name}-{version}-{arch}-{url.rsplit('/', 1)[-1]}"
        downloads[arch] = RemoteFile(filename, (url,), entry.sha256("sha256") or None, entry.integer("size", 0) or None)
    return Tool(name, version, downloads)


def _cpu_variants(table: _Table) -> CpuVariantPins:
    table.allow("features", "never")
    features = _Table(table.data.get("features", {}), f"{table.where}.features")
    never = _Table(table.data.get("never", {}), f"{table.where}.never")
    return CpuVariantPins({name: features.strings(name) for name in features.data},
                          {name: never.text(name) for name in never.data})


def _build(table: _Table) -> BuildPins:
    table.allow("base", "packages", "python", "cpu_variants")
    python = table.table("python").allow("source", "suite", "prefix", "configure", "setup_local")
    if not python.text("prefix").startswith("/"):
        raise python._bad("prefix", "an absolute path")
    return BuildPins(
        base=base_name(table.text("base"), f"{PINS_FILE.name}: [build] base"),
        packages=table.strings("packages"),
        python=CPythonPins(python.text("source"), python.text("suite"), python.text("prefix"),
                           python.strings("configure"), python.strings("setup_local", ())),
        cpu_variants={arches.normalize(arch): _cpu_variants(t) for arch, t in table.subtables("cpu_variants").items()})


_SUITE = re.compile(r"[a-z][a-z0-9-]*")


def base_name(value: str, where: str = "--base") -> str:
    """`host`, or a Debian suite name as debootstrap spells it (bullseye, bookworm, trixie...)."""
    if not _SUITE.fullmatch(value or ""):
        raise ConfigError(f"{where} must be 'host' or a Debian suite such as bullseye, got {value!r}")
    return value


def suite_list(value: str | tuple[str, ...], where: str = "--systems") -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",")) if isinstance(value, str) else tuple(value)
    for name in names:
        if name == "host" or not _SUITE.fullmatch(name):
            raise ConfigError(f"{where} must name Debian suites such as bullseye,bookworm,trixie, got {name!r}")
    return names


def parse_tools(data: dict) -> dict[str, Tool]:
    """The [tools] table: one `Tool` per name."""
    return {name: _tool(name, table) for name, table in _Table({"tools": data}, "").subtables("tools").items()}


def _update_information(release: _Table) -> str:
    """[release] update_information: empty (none), or `transport|field|...` of a known transport."""
    template = release.text("update_information", "")
    if not template:
        return ""
    fields = template.split("|")
    try:
        example = template.format(appimage="tea-python-llm-" + VERSION_GLOB + "-aarch64.AppImage")
    except (KeyError, IndexError, ValueError):
        raise release._bad("update_information", "a template whose only placeholder is {appimage}") from None
    if UPDATE_TRANSPORTS.get(fields[0]) != len(fields) or len(example.encode()) > UPDATE_INFORMATION_MAX:
        raise release._bad("update_information", "gh-releases-zsync|OWNER|REPO|TAG|FILE.zsync or zsync|URL, "
                           f"at most {UPDATE_INFORMATION_MAX} bytes")
    return template


def parse_pins(data: dict) -> Pins:
    """release.toml as typed pins; ConfigError naming the key for anything malformed."""
    top = _Table(data, "")
    release, python, apt = top.table("release"), top.table("python"), top.table("apt")
    flavors = {name: _flavor(name, t) for name, t in top.subtables("flavors").items()}
    swipl = top.table("swipl").allow("source", "suite", "minimum", "cmake_args", "build_tools")
    models = {name: _model(name, t) for name, t in top.subtables("models").items()}
    pins = Pins(
        default_model=release.text("default_model"), default_flavor=release.text("default_flavor"),
        asset_size_cap=release.integer("asset_size_cap"), flavors=flavors, models=models,
        python=PythonPins(python.strings("requirements"), python.text("llama_cpp_python"),
                          python.strings("llama_cmake_args")),
        swipl=SwiplPins(swipl.text("source"), swipl.text("suite"), swipl.text("minimum"), swipl.strings("cmake_args"),
                        swipl.strings("build_tools")),
        apt_packages=apt.strings("packages"),
        tools=parse_tools(data.get("tools", {})),
        cross={arch: CrossPins(t.allow("toolchain", "runtime_suite", "runtime_packages").strings("toolchain"),
                               base_name(t.text("runtime_suite"), f"{PINS_FILE.name}: [{t.where}] runtime_suite"),
                               t.strings("runtime_packages"))
               for arch, t in top.subtables("cross").items()},
        build=_build(top.table("build")),
        systems=SystemsPins(suite_list(top.table("systems").allow("suites", "emulated").strings("suites"),
                                       f"{PINS_FILE.name}: [systems] suites"),
                            suite_list(top.table("systems").strings("emulated"),
                                       f"{PINS_FILE.name}: [systems] emulated")),
        variant_proof=_variant_proof(_Table(data.get("variant_proof", {}), "variant_proof")),
        update_information=_update_information(release))
    pins.model(pins.default_model)
    pins.flavor_selection(pins.default_flavor)
    if pins.variant_proof.emulated_model:
        pins.model(pins.variant_proof.emulated_model)
    return pins


def _variant_proof(table: _Table) -> VariantProofPins:
    cpus = {arch: table.strings(arch) for arch, value in table.data.items() if arch != "emulated_model"}
    return VariantProofPins(cpus, table.text("emulated_model", "") or None)


def load_pins(path: Path = PINS_FILE) -> Pins:
    try:
        return parse_pins(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read pins from {path}: {exc}") from None


def project_version(pyproject: Path = PYPROJECT) -> str:
    try:
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read [project].version from {pyproject}: {exc}") from None


def version_epoch(pyproject: Path = PYPROJECT) -> int:
    """When the version was set: the commit time of the last change to pyproject.toml. The same on
    every rebuild of a commit (unlike the build time); outside git, SOURCE_DATE_EPOCH or the file's
    modification time, both stable for one source tree."""
    if shutil.which("git"):
        done = proc.run(["git", "log", "-1", "--format=%ct", "--", pyproject.name], cwd=pyproject.parent,
                        check=False)
        if done.returncode == 0 and done.stdout.strip().isdigit():
            return int(done.stdout.strip())
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    return int(pyproject.stat().st_mtime)


def default_cache_dir() -> Path:
    if os.environ.get("TEA_RELEASE_CACHE"):
        return Path(os.environ["TEA_RELEASE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tea-release"


def offline_mode(flag: bool = False) -> bool:
    """The one meaning of offline: the flag, or TEA_RELEASE_OFFLINE set to 1/true/yes/on."""
    return flag or os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def resolve(*, arch: str | None = None, flavor: str | None = None, model: str | None = None,
            packager: str | None = None, out: str | Path | None = None, build_dir: str | Path | None = None,
            cache_dir: str | Path | None = None, offline: bool = False, require_pins: bool = False,
            asset_size_cap: int | None = None, base: str | None = None, systems: str | None = None,
            pins_file: Path = PINS_FILE) -> Settings:
    """Resolve every option of a run; None means "the default". Raises ConfigError with the fix."""
    pins = load_pins(pins_file)
    packager = packager or "auto"
    if packager not in PACKAGERS:
        raise ConfigError(f"unknown packager '{packager}': use one of {'|'.join(PACKAGERS)}")
    arch = arches.normalize(arch) if arch else arches.host_arch()
    return Settings(
        version=project_version(),
        arch=arch,
        flavors=pins.flavor_selection(flavor or pins.default_flavor),
        model=pins.model(model or pins.default_model),
        packager=packager,
        build_dir=Path(build_dir or BUILD_DIR).absolute(), dist_dir=Path(out or DIST_DIR).absolute(),
        cache_dir=Path(cache_dir).absolute() if cache_dir else default_cache_dir(),
        offline=offline_mode(offline),
        require_pins=require_pins,
        asset_size_cap=asset_size_cap or pins.asset_size_cap,
        pins=pins,
        base=base_name(base) if base else pins.build.base,
        systems=suite_list(systems) if systems else default_systems(pins, arch),
        signing_key=gpg.key_from_environment(),
        version_date=version_epoch())


def default_systems(pins: Pins, arch: str) -> tuple[str, ...]:
    """Every pinned suite natively; the short list when `arch` runs emulated on this host."""
    return pins.systems.suites if arch == arches.host_arch() else pins.systems.emulated
