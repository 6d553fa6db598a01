"""SBOMs, built for real: cyclonedx-py on this test environment, dpkg's database, the CycloneDX
schema that cyclonedx-python-lib ships (validation is offline)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from release import config, sbom
from release.artifacts import Artifact, Kind
from release.errors import BuildError, VerifyError

APPIMAGE_SHA = "ab" * 32


@pytest.fixture(scope="module")
def python_bom(tmp_path_factory) -> dict:
    """cyclonedx-py's SBOM of the environment running these tests (tea is installed in it)."""
    return sbom.python_bom(Path(sys.executable), tmp_path_factory.mktemp("bom") / "python.cdx.json")


@pytest.fixture
def settings(tmp_path):
    return config.resolve(flavor="python-llm", model="gemma-3-270m", packager="builtin", build_dir=tmp_path / "b",
                          out=tmp_path / "d")


def document(settings, python_bom, tmp_path) -> dict:
    appimage = Artifact(Kind.APPIMAGE, tmp_path / "tea-python-llm-0.1.0-x86_64.AppImage", APPIMAGE_SHA, "python-llm",
                        {"unsigned_sha256": "cd" * 32})
    runtime = Artifact(Kind.PACKAGER, tmp_path / "runtime", "ef" * 32, None, {"name": "builtin"})
    model = Artifact(Kind.MODEL, tmp_path / "m.gguf", config.load_pins().models["gemma-3-270m"].sha256)
    (tmp_path / "onedir/_internal").mkdir(parents=True)
    (tmp_path / "onedir/_internal/libllama.so.0.5.0").write_bytes(b"\x7fELF")
    python = sbom.python_components(python_bom)
    extra = [sbom.runtime_component(settings, runtime), sbom.llama_cpp_component(settings, tmp_path / "onedir"),
             sbom.model_component(settings, model)]
    debian = [sbom.debian_component(p) for p in sbom.installed_packages(names=["dpkg", "libc6"])]
    return sbom.assemble(sbom.subject(appimage, settings), python, extra, debian)


def by_name(bom: dict) -> dict[str, dict]:
    return {c["name"].lower(): c for c in bom["components"]}


def test_the_document_is_valid_cyclonedx_and_names_what_ships(settings, python_bom, tmp_path):
    bom = document(settings, python_bom, tmp_path)
    sbom.validate(bom, "test")
    components = by_name(bom)
    assert bom["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": APPIMAGE_SHA}]
    assert components["the_edge_agent"]["scope"] == "required"
    assert components["pyyaml"]["scope"] == components["jinja2"]["scope"] == "required"  # tea's closure
    assert components["invoke"]["scope"] == "excluded"  # installed, but not what tea depends on
    model = components["gemma-3-270m"]
    assert model["type"] == "machine-learning-model" and model["hashes"][0]["content"].startswith("a5fd3b62")
    assert model["licenses"][0]["license"]["name"] == "Gemma Terms of Use"
    llama = components["llama.cpp"]
    assert llama["version"] == "0.5.0" and "-DGGML_NATIVE=OFF" in llama["properties"][0]["value"]
    assert components["tea-appimage-runtime"]["hashes"][0]["content"] == "ef" * 32
    assert components["dpkg"]["purl"].startswith("pkg:deb/debian/dpkg@") and components["dpkg"]["scope"] == "excluded"
    assert not any(r["url"].startswith("file:") for c in bom["components"] for r in c.get("externalReferences", []))


def test_the_graph_links_the_appimage_to_its_parts(settings, python_bom, tmp_path):
    graph = {e["ref"]: e.get("dependsOn", []) for e in document(settings, python_bom, tmp_path)["dependencies"]}
    assert set(graph["appimage"]) == {"the_edge_agent", "tea-appimage-runtime", "llama.cpp", "model:gemma-3-270m"}
    assert any("PyYAML" in ref for ref in graph["the_edge_agent"])


@pytest.mark.parametrize("breakage", [
    lambda b: b.pop("bomFormat"),
    lambda b: b["metadata"]["component"]["hashes"][0].update(alg="SHA-257"),
    lambda b: b["components"][0].update(scope="sometimes"),
])
def test_schema_validation_refuses_a_broken_document(settings, python_bom, tmp_path, breakage):
    bom = copy.deepcopy(document(settings, python_bom, tmp_path))
    breakage(bom)
    with pytest.raises(BuildError, match="not a valid CycloneDX 1.6 document"):
        sbom.validate(bom, "broken")


def test_writing_is_validated_and_reproducible(settings, python_bom, tmp_path):
    bom = document(settings, python_bom, tmp_path)
    first = sbom.write(bom, tmp_path / "a.cdx.json").read_bytes()
    assert sbom.write(bom, tmp_path / "b.cdx.json").read_bytes() == first
    assert json.loads(first)["metadata"]["timestamp"].endswith("Z") and "serialNumber" not in json.loads(first)
    bom["bomFormat"] = "SPDX"
    with pytest.raises(BuildError):
        sbom.write(bom, tmp_path / "c.cdx.json")
    assert not (tmp_path / "c.cdx.json").exists()


def test_check_accepts_only_an_sbom_of_these_bytes(settings, python_bom, tmp_path):
    path = sbom.write(document(settings, python_bom, tmp_path), tmp_path / "x.cdx.json")
    sbom.check_sbom(path, tmp_path / "x.AppImage", APPIMAGE_SHA)
    with pytest.raises(VerifyError, match="describes another file"):
        sbom.check_sbom(path, tmp_path / "x.AppImage", "00" * 32)
    broken = json.loads(path.read_text())
    broken["components"][0]["scope"] = "sometimes"
    path.write_text(json.dumps(broken))
    with pytest.raises(VerifyError, match="not a valid CycloneDX"):
        sbom.check_sbom(path, tmp_path / "x.AppImage", APPIMAGE_SHA)
    path.write_text("{not json")
    with pytest.raises(VerifyError, match="not readable JSON"):
        sbom.check_sbom(path, tmp_path / "x.AppImage", APPIMAGE_SHA)


def test_installed_packages_reads_another_roots_dpkg_database(tmp_path):
    """The interface a separate build root uses: its own dpkg database, not this system's."""
    (tmp_path / "dpkg").mkdir()
    (tmp_path / "dpkg/status").write_text(
        "Package: libfoo1\nStatus: install ok installed\nArchitecture: arm64\nVersion: 1.2-3\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nArchitecture: arm64\nVersion: 0.1\n\n")
    (tmp_path / "dpkg/info").mkdir()
    (tmp_path / "dpkg/updates").mkdir()
    assert sbom.installed_packages(tmp_path / "dpkg") == [sbom.DebianPackage("libfoo1", "1.2-3", "arm64")]


def test_external_packager_names_the_pinned_runtime(settings):
    component = sbom.runtime_component(settings, Artifact(Kind.PACKAGER, Path("/x"), "0" * 64, None,
                                                          {"name": "appimagetool"}))
    pin = settings.pins.tools["appimage-runtime"].for_arch("x86_64")
    assert component["name"] == "type2-runtime" and component["hashes"][0]["content"] == pin.sha256
