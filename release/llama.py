"""The portable llama-cpp-python wheel, compiled by and for the build host.

llama-cpp-python only ships as source. Its portable build (GGML_CPU_ALL_VARIANTS) makes one
`libggml-cpu-<variant>.so` per CPU generation, picked at run time. Before compiling, each
variant of the target arch (ggml/src/CMakeLists.txt) is checked: its features' compiler options
(release.toml [build.cpu_variants]) are tried with the build's compiler, and a variant that the
compiler rejects, or that is never shipped, is removed from the CMakeLists. What is shipped and
what is dropped (with the reason) goes to the build log, into `variants.json` beside the wheel
and into manifest.json. The wheel is cached under a key of everything that changes it — pip's
own cache is keyed by the sdist alone and would hand back another build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import hosts, log, proc
from .artifacts import Kind
from .config import CpuVariantPins, Settings
from .errors import BuildError, ConfigError
from .pipeline import BaseStep, Context

CMAKE_LISTS = "vendor/llama.cpp/ggml/src/CMakeLists.txt"
REPORT = "variants.json"
GGML_ARCH = {"x86_64": "x86", "aarch64": "ARM"}  # GGML_SYSTEM_ARCH of each arch
_VARIANT = re.compile(r"^\s*ggml_add_cpu_backend_variant\(\s*(?P<name>[\w.]+)(?P<features>[^)]*)\)")
_BRANCH = re.compile(r"^\s*(?P<word>if|elseif|else|endif)\s*\((?P<condition>.*)\)\s*$", re.IGNORECASE)
_OTHER_OS = re.compile(r"Android|APPLE|WIN32|EMSCRIPTEN|^\s*MSVC\s*$")


@dataclass(frozen=True)
class Variant:
    name: str
    features: tuple[str, ...]


def linux_variants(cmake_text: str, arch: str) -> list[Variant]:
    """The variants GGML_CPU_ALL_VARIANTS builds for `arch` on Linux: the calls inside the branch of
    `GGML_SYSTEM_ARCH STREQUAL "<arch>"`, leaving out nested branches of other OSes (Android, Apple)."""
    variants: list[Variant] = []
    branches: list[str] = []  # the condition of the branch we are in, per nesting level
    for line in cmake_text.splitlines():
        branch = _BRANCH.match(line)
        if branch:
            word, condition = branch["word"].lower(), branch["condition"]
            if word == "if":
                branches.append(condition)
            elif word == "endif" and branches:
                branches.pop()
            elif branches:
                branches[-1] = condition if word == "elseif" else f"NOT ({branches[-1]})"
            continue
        call = _VARIANT.match(line)
        if call and _in_arch(branches, arch) and not any(_OTHER_OS.search(c) for c in branches):
            variants.append(Variant(call["name"], tuple(call["features"].split())))
    return variants


def _in_arch(branches: list[str], arch: str) -> bool:
    wanted = re.compile(rf'^\s*GGML_SYSTEM_ARCH\s+STREQUAL\s+"{GGML_ARCH[arch]}"\s*$')
    return any(wanted.match(condition) for condition in branches)


def choose_variants(variants: list[Variant], pins: CpuVariantPins,
                    rejects: Callable[[tuple[str, ...]], str | None]) -> tuple[list[str], dict[str, str]]:
    """(shipped, dropped name -> reason). `rejects(options)` is the compiler's complaint, or None."""
    complaints: dict[str, str | None] = {}
    shipped, dropped = [], {}
    for variant in variants:
        if variant.name in pins.never:
            dropped[variant.name] = pins.never[variant.name]
            continue
        for feature in variant.features:
            options = pins.features.get(feature, ())
            if options and feature not in complaints:
                complaints[feature] = rejects(options)
        failed = next((f for f in variant.features if complaints.get(f)), None)
        if failed:
            dropped[variant.name] = f"the compiler cannot build {failed}: {complaints[failed]}"
        else:
            shipped.append(variant.name)
    unknown = sorted(set(pins.never) - {v.name for v in variants})
    if unknown:
        raise ConfigError(f"[build.cpu_variants] never names variants ggml does not build: {', '.join(unknown)}")
    return shipped, dropped


def drop_cpu_variants(cmake_lists: Path, names: list[str]) -> None:
    """Remove exactly these variants' ggml_add_cpu_backend_variant lines."""
    lines = cmake_lists.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not ((m := _VARIANT.match(line)) and m["name"] in names)]
    if len(lines) - len(kept) != len(names):
        raise BuildError(f"{cmake_lists}: expected to drop CPU variants {names}, dropped {len(lines) - len(kept)}")
    cmake_lists.write_text("".join(kept))


def wheel_dir(settings: Settings, host: hosts.BuildHost) -> Path:
    """Where the wheel for these pins and this build host lives in the cache."""
    pins, variants = settings.pins.python, settings.pins.build.variants_for(settings.arch)
    material = [pins.llama_cpp_python, pins.llama_cmake_args, settings.arch, host.identity(),
                variants.features, variants.never]
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    return settings.cache_dir / "wheels" / f"llama-cpp-python-{pins.llama_cpp_python}-{key}"


def ensure_wheel(settings: Settings, host: hosts.BuildHost) -> tuple[Path, dict]:
    """The cached wheel and its variants report; compiled (~15 min on 2 cores) only when missing."""
    target = wheel_dir(settings, host)
    wheels = sorted(target.glob("llama_cpp_python-*.whl"))
    if wheels:
        return wheels[0], json.loads((target / REPORT).read_text())
    if settings.offline:
        raise ConfigError(f"offline and no llama-cpp-python wheel in {target}: run `invoke deps` online once")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".building-") as work:
        build(settings, host, Path(work))
        os.replace(Path(work) / "wheel", target)
    return ensure_wheel(settings, host)


def build(settings: Settings, host: hosts.BuildHost, work: Path) -> None:
    version = settings.pins.python.llama_cpp_python
    log.info(f"compiling llama-cpp-python {version} for {settings.arch} in the {host.kind} (portable CPU build, "
             f"~15 min on 2 cores, once); log: {proc.current_log()}")
    source = fetch_sdist(version, work)
    variants = linux_variants((source / CMAKE_LISTS).read_text(), settings.arch)
    shipped, dropped = choose_variants(variants, settings.pins.build.variants_for(settings.arch),
                                       host.compiler_rejects)
    report = {"shipped": shipped, "dropped": dropped, "compiler": host.compiler_version()}
    log.info(f"CPU variants: shipping {', '.join(shipped)}; dropped: "
             + ("; ".join(f"{name} ({why})" for name, why in dropped.items()) or "none"))
    drop_cpu_variants(source / CMAKE_LISTS, list(dropped))
    out = work / "wheel"
    host.build_wheel(source, out, {"CMAKE_ARGS": " ".join(settings.pins.python.llama_cmake_args),
                                   "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)})
    check_wheel_variants(next(out.glob("llama_cpp_python-*.whl")), shipped)
    (out / REPORT).write_text(json.dumps(report, indent=1) + "\n")


def fetch_sdist(version: str, work: Path) -> Path:
    proc.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", work,
              f"llama-cpp-python=={version}"], what="downloading the llama-cpp-python sdist")
    with tarfile.open(next(work.glob("llama_cpp_python-*.tar.gz"))) as sdist:
        sdist.extractall(work / "src", filter="data")
    return next((work / "src").iterdir())


def check_wheel_variants(wheel: Path, shipped: list[str]) -> None:
    """The wheel holds exactly the variants the report says it ships."""
    with zipfile.ZipFile(wheel) as archive:
        found = sorted(m.group(1) for name in archive.namelist()
                       if (m := re.fullmatch(r"bin/libggml-cpu-([\w.]+)\.so", name)))
    if found != sorted(shipped):
        raise BuildError(f"{wheel.name} holds CPU variants {found}, expected {sorted(shipped)}")


class WheelStep(BaseStep):
    """The portable wheel for the LLM flavor, built for this run's build host."""

    name = "llama-wheel"
    after = ("build-root",)

    def inputs(self, ctx: Context) -> dict:
        return {"wheel": str(wheel_dir(ctx.settings, ctx.host))}

    def run(self, ctx: Context) -> dict:
        wheel, report = ensure_wheel(ctx.settings, ctx.host)
        ctx.register(Kind.WHEEL, wheel, cpu_variants=report)
        return {"cpu_variants": report}
