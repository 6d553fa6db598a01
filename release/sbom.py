"""The sbom step: one CycloneDX 1.6 JSON per AppImage, `dist/<name>.cdx.json`.

What it lists, and where that comes from:
- the Python distributions, from the build venv by cyclonedx-bom (`cyclonedx-py environment`, a
  maintained generator), with tea itself (python/pyproject.toml) as their root: the dependency
  closure of tea, plus PyInstaller, whose bootloader starts the frozen app, is `required`; the
  other build tools of the venv are `excluded` (used to build, not shipped);
- llama.cpp, as built into llama-cpp-python, with the pinned CMake flags;
- the model: name, source, sha256 and licence from release.toml;
- the AppImage runtime: ours (with its sha256) or the pinned one an external packager used;
- the Debian packages of the build root (`excluded`: they built the binaries).
The AppImage itself, with its sha256, is the SBOM's subject (`metadata.component`). The document
is validated against the CycloneDX schema before it is written, and is reproducible: no random
serial number, and SOURCE_DATE_EPOCH as its timestamp.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from . import checksums, deps, freeze, proc
from .artifacts import Artifact, Kind
from .config import PYPROJECT, Flavor, Settings
from .errors import BuildError, VerifyError
from .pipeline import BaseStep, Context
from .squashfs import source_date_epoch

SPEC_VERSION = "1.6"
SUFFIX = ".cdx.json"
SHIPPED_BUILD_TOOLS = ("pyinstaller",)  # its bootloader is the frozen app's entry point
RUNTIME_NAME = "tea-appimage-runtime"
DPKG_STATUS = Path("/var/lib/dpkg/status")  # the build root's package database: a change reruns the step


def sbom_path(appimage: Path) -> Path:
    return appimage.with_name(appimage.name + SUFFIX)


@dataclass(frozen=True, order=True)
class DebianPackage:
    name: str
    version: str
    arch: str


def installed_packages(admindir: Path | None = None, names: Iterable[str] = ()) -> list[DebianPackage]:
    """The Debian packages installed in a root (its dpkg database; this system's by default)."""
    root = ["--admindir", str(admindir)] if admindir else []
    done = proc.run(["dpkg-query", *root, "-W", "-f", "${db:Status-Status}\\t${Package}\\t${Version}\\t${Architecture}\\n",
                     *names], check=False)
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    return sorted(DebianPackage(*row[1:]) for row in rows if len(row) == 4 and row[0] == "installed")


def debian_component(package: DebianPackage) -> dict:
    purl = f"pkg:deb/debian/{package.name}@{package.version}?arch={package.arch}"
    return {"type": "library", "bom-ref": purl, "name": package.name, "version": package.version, "purl": purl,
            "scope": "excluded", "properties": [{"name": "tea:role", "value": "build root"}]}


def python_bom(python: Path, out: Path) -> dict:
    """cyclonedx-py's SBOM of the venv behind `python`, with tea (pyproject.toml) as its root."""
    command = [Path(sys.executable).with_name("cyclonedx-py"), "environment", "--output-reproducible",
               "--sv", SPEC_VERSION, "--pyproject", PYPROJECT, "-o", out, python]
    proc.run(command, what="cyclonedx-py", env={"SOURCE_DATE_EPOCH": str(source_date_epoch())})
    return json.loads(out.read_text())


def closure(dependencies: list[dict], roots: Iterable[str]) -> set[str]:
    edges = {entry["ref"]: entry.get("dependsOn", []) for entry in dependencies}
    seen, todo = set(), list(roots)
    while todo:
        ref = todo.pop()
        if ref not in seen:
            seen.add(ref)
            todo += edges.get(ref, [])
    return seen


def python_components(bom: dict) -> tuple[dict, list[dict], list[dict]]:
    """(tea's component, every distribution with its scope, the dependency graph)."""
    app = {**bom["metadata"]["component"], "bom-ref": "the_edge_agent", "type": "application", "scope": "required"}
    graph = [{**entry, "ref": "the_edge_agent"} if entry["ref"] == "root-component" else entry
             for entry in bom.get("dependencies", [])]
    shipped = closure(graph, ["the_edge_agent"])
    components = []
    for component in bom.get("components", []):
        if component["name"] == app["name"]:
            continue  # tea itself, when the environment has it installed: it is `app`
        required = component["bom-ref"] in shipped or component["name"].lower() in SHIPPED_BUILD_TOOLS
        references = [r for r in component.get("externalReferences", []) if not r["url"].startswith("file:")]
        components.append({**component, "externalReferences": references,
                           "scope": "required" if required else "excluded"})
    return app, components, graph


def llama_cpp_component(settings: Settings, onedir: Path) -> dict:
    """llama.cpp as llama-cpp-python vendors and builds it: version from the library's soname."""
    libraries = sorted(p.name for p in onedir.rglob("libllama.so.*.*.*"))
    version = libraries[0].removeprefix("libllama.so.") if libraries else "unknown"
    flags = " ".join(settings.pins.python.llama_cmake_args)
    return {"type": "library", "bom-ref": "llama.cpp", "name": "llama.cpp", "version": version, "scope": "required",
            "licenses": [{"license": {"id": "MIT"}}],
            "description": f"built from llama-cpp-python {settings.pins.python.llama_cpp_python}'s vendored source",
            "externalReferences": [{"type": "vcs", "url": "https://github.com/ggml-org/llama.cpp"}],
            "properties": [{"name": "tea:cmake_args", "value": flags}]}


def with_build_flags(components: list[dict], settings: Settings) -> list[dict]:
    flags = {"name": "tea:cmake_args", "value": " ".join(settings.pins.python.llama_cmake_args)}
    return [{**c, "properties": [*c.get("properties", []), flags]} if c["name"] == "llama_cpp_python" else c
            for c in components]


def model_component(settings: Settings, model: Artifact) -> dict:
    pin = settings.model
    source = [{"type": "distribution", "url": url} for url in pin.urls] or \
        [{"type": "distribution", "url": f"https://pypi.org/project/{pin.python_package.split('==')[0]}/",
          "comment": f"python package {pin.python_package}"}]
    license_ = {"name": pin.license or "unknown", **({"url": pin.license_url} if pin.license_url else {})}
    return {"type": "machine-learning-model", "bom-ref": f"model:{pin.name}", "name": pin.name,
            "version": pin.filename, "scope": "required", "hashes": [{"alg": "SHA-256", "content": model.digest}],
            "licenses": [{"license": license_}], "externalReferences": source}


def runtime_component(settings: Settings, packager: Artifact) -> dict:
    """The runtime at the front of the file: ours, or the pinned type2-runtime of an external packager."""
    name = packager.extra["name"]
    if name == "builtin":
        return {"type": "application", "bom-ref": RUNTIME_NAME, "name": RUNTIME_NAME, "version": "1.0",
                "scope": "required", "hashes": [{"alg": "SHA-256", "content": packager.digest}],
                "description": "static AppImage type-2 runtime (release/runtime), squashfuse and libfuse3 linked in"}
    pin = settings.pins.tools["appimage-runtime"].for_arch(settings.arch)
    return {"type": "application", "bom-ref": "appimage-runtime", "name": "type2-runtime",
            "version": settings.pins.tools["appimage-runtime"].version, "scope": "required",
            **({"hashes": [{"alg": "SHA-256", "content": pin.sha256}]} if pin.sha256 else {}),
            "externalReferences": [{"type": "distribution", "url": pin.urls[0]}],
            "properties": [{"name": "tea:packager", "value": name}]}


def subject(appimage: Artifact, settings: Settings) -> dict:
    return {"type": "application", "bom-ref": "appimage", "name": appimage.path.name.rsplit(f"-{settings.version}", 1)[0],
            "version": settings.version, "hashes": [{"alg": "SHA-256", "content": appimage.digest}],
            "properties": [{"name": "tea:file", "value": appimage.path.name},
                           {"name": "tea:unsigned_sha256", "value": appimage.extra["unsigned_sha256"]}]}


def assemble(subject_: dict, python: dict, extra: list[dict], debian: list[dict]) -> dict:
    """The document: subject → tea, runtime, model, llama.cpp; tea → its Python closure."""
    app, components, graph = python
    top = ["the_edge_agent", *(c["bom-ref"] for c in extra)]
    graph = [*graph, {"ref": "appimage", "dependsOn": top}, *({"ref": c["bom-ref"]} for c in [*extra, *debian])]
    if any(c["bom-ref"] == "llama.cpp" for c in extra):
        graph = [{**e, "dependsOn": [*e.get("dependsOn", []), "llama.cpp"]} if e["ref"].startswith("llama_cpp_python")
                 else e for e in graph]
    return {"$schema": f"http://cyclonedx.org/schema/bom-{SPEC_VERSION}.schema.json", "bomFormat": "CycloneDX",
            "specVersion": SPEC_VERSION, "version": 1,
            "metadata": {"timestamp": timestamp(), "component": subject_},
            "components": [app, *components, *extra, *debian], "dependencies": graph}


def timestamp() -> str:
    return datetime.fromtimestamp(source_date_epoch(), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache
def schema_validator():
    """The strict CycloneDX schema shipped in cyclonedx-python-lib (offline), checking every format
    but IRIs: jsonschema's IRI checker (a lark grammar) costs ~0.15 s per URL, a minute per SBOM."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from jsonschema import FormatChecker

    validator = JsonStrictValidator(SchemaVersion.from_version(SPEC_VERSION))._validator
    formats = [name for name in validator.FORMAT_CHECKER.checkers if not name.startswith("iri")]
    return validator.evolve(format_checker=FormatChecker(formats))


def validate(bom: dict, origin: str) -> None:
    error = next(iter(schema_validator().iter_errors(bom)), None)
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top)"
        raise BuildError(f"{origin} is not a valid CycloneDX {SPEC_VERSION} document: at {where}: {error.message[:200]}")


def check_sbom(path: Path, appimage: Path, sha256: str) -> None:
    """A downloaded SBOM must be valid CycloneDX and describe exactly this AppImage."""
    try:
        bom = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"{path.name} is not readable JSON: {exc}") from None
    try:
        validate(bom, path.name)
    except BuildError as exc:
        raise VerifyError(str(exc)) from None
    described = [h["content"] for h in bom["metadata"].get("component", {}).get("hashes", [])]
    if described != [sha256]:
        raise VerifyError(f"{path.name} describes another file (sha256 {described[:1]}), not {appimage.name}: "
                          f"refusing it")


def write(bom: dict, out: Path) -> Path:
    validate(bom, out.name)
    return checksums.write_text_atomic(out, json.dumps(bom, indent=1, sort_keys=True) + "\n")


class SbomStep(BaseStep):
    """The SBOM of the AppImage the appimage step just made (after it: it names the file's sha256)."""

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"sbom-{flavor.name}"
        self.after = (f"appimage-{flavor.name}", f"venv-{flavor.name}", f"freeze-{flavor.name}", "packager") + \
            (("model",) if flavor.llm else ())

    def inputs(self, ctx: Context) -> dict:
        return {"pins": ctx.settings.pins.python, "model": ctx.settings.model if self.flavor.llm else None,
                "epoch": source_date_epoch(), "build_root": DPKG_STATUS}

    def run(self, ctx: Context) -> dict:
        settings, flavor = ctx.settings, self.flavor
        appimage = ctx.artifacts.get(Kind.APPIMAGE, flavor.name)
        work = settings.flavor_dir(flavor) / "sbom"
        work.mkdir(parents=True, exist_ok=True)
        python = python_components(python_bom(deps.venv_bin(settings, flavor, "python"), work / "python.cdx.json"))
        extra = [runtime_component(settings, ctx.artifacts.get(Kind.PACKAGER))]
        if flavor.llm:
            python = (python[0], with_build_flags(python[1], settings), python[2])
            extra += [llama_cpp_component(settings, freeze.onedir(settings, flavor)),
                      model_component(settings, ctx.artifacts.get(Kind.MODEL))]
        debian = [debian_component(package) for package in installed_packages()]
        bom = assemble(subject(appimage, settings), python, extra, debian)
        out = write(bom, sbom_path(appimage.path))
        ctx.register(Kind.SBOM, out, flavor=flavor.name, appimage=appimage.path.name)
        return {"sbom": out.name, "components": len(bom["components"])}
