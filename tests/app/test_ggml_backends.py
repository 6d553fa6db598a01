"""Finding the CPU variant libraries of a portable llama.cpp build (pure path logic, real files)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from the_edge_agent.errors import LlmError
from the_edge_agent.ggml_backends import ENV_OVERRIDE, find_variant_dir, loaded_libggml


def site_packages(root: Path, variants_in: str | None) -> Path:
    """A fake site-packages with llama_cpp/lib and optionally the variants in `variants_in`."""
    (root / "llama_cpp" / "lib").mkdir(parents=True)
    if variants_in:
        (root / variants_in).mkdir(parents=True, exist_ok=True)
        (root / variants_in / "libggml-cpu-haswell.so").write_bytes(b"\x7fELF")
    return root / "llama_cpp"


def test_pip_layout_site_packages_bin(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    package = site_packages(tmp_path, "bin")
    assert find_variant_dir(package, package / "lib" / "libggml.so.0") == tmp_path / "bin"


def test_variants_next_to_libggml(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    package = site_packages(tmp_path, "llama_cpp/lib")
    assert find_variant_dir(package, None) == package / "lib"


def test_non_portable_build_needs_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    assert find_variant_dir(site_packages(tmp_path, None), None) is None


def test_override_wins_and_must_hold_variants(tmp_path, monkeypatch):
    package = site_packages(tmp_path / "site", "bin")
    override = tmp_path / "elsewhere"
    site_packages(override, "bin")
    monkeypatch.setenv(ENV_OVERRIDE, str(override / "bin"))
    assert find_variant_dir(package, None) == override / "bin"
    monkeypatch.setenv(ENV_OVERRIDE, str(tmp_path))
    with pytest.raises(LlmError, match=ENV_OVERRIDE):
        find_variant_dir(package, None)


def test_loaded_libggml_is_read_from_the_memory_map(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r--p 00000000 08:01 1 /site/llama_cpp/lib/libggml-base.so\n"
        "7f01-7f02 r-xp 00000000 08:01 2 /site/llama_cpp/lib/libggml.so.0\n"
        "7f02-7f03 rw-p 00000000 00:00 0\n"
    )
    assert loaded_libggml(maps) == Path("/site/llama_cpp/lib/libggml.so.0")
    maps.write_text("7f02-7f03 rw-p 00000000 00:00 0 [heap]\n")
    assert loaded_libggml(maps) is None


def test_frozen_app_looks_in_its_bundle_first(tmp_path, monkeypatch):
    """PyInstaller onedir: `_internal/bin` (or next to libllama) beats the package's own dirs."""
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    bundle = tmp_path / "tea" / "_internal"
    package = site_packages(bundle, "bin")
    site_packages(tmp_path / "other", "bin")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "tea" / "tea"))
    assert find_variant_dir(tmp_path / "other" / "llama_cpp", None) == bundle / "bin"
    (bundle / "bin" / "libggml-cpu-haswell.so").unlink()
    (package / "lib" / "libggml-cpu-haswell.so").write_bytes(b"\x7fELF")
    assert find_variant_dir(tmp_path / "other" / "llama_cpp", None) == package / "lib"
