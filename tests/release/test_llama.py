"""The llama.cpp wheel's CPU variants: which ggml builds, which the compiler can build, what is dropped
and reported, and the cache key of the wheel."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest

from release import config, hosts, llama
from release.config import CpuVariantPins
from release.errors import BuildError, ConfigError

# The structure of ggml/src/CMakeLists.txt in llama-cpp-python 0.3.36 (abridged, same nesting).
CMAKE_LISTS = """function(ggml_add_cpu_backend_variant tag_name)
    set(GGML_CPU_TAG_NAME ${tag_name})
    if (GGML_SYSTEM_ARCH STREQUAL "x86")
        foreach (feat NATIVE SSE42 AVX)
            set(GGML_${feat} OFF)
        endforeach()
    endif()
    ggml_add_cpu_backend_variant_impl(${tag_name})
endfunction()

if (GGML_CPU_ALL_VARIANTS)
    if (NOT GGML_BACKEND_DL)
        message(FATAL_ERROR "GGML_CPU_ALL_VARIANTS requires GGML_BACKEND_DL")
    endif()
    if (GGML_SYSTEM_ARCH STREQUAL "x86")
        ggml_add_cpu_backend_variant(x64)
        ggml_add_cpu_backend_variant(sse42              SSE42)
        if (NOT MSVC)
            ggml_add_cpu_backend_variant(ivybridge      SSE42 AVX F16C)
        endif()
        ggml_add_cpu_backend_variant(haswell            SSE42 AVX F16C FMA AVX2 BMI2)
        ggml_add_cpu_backend_variant(alderlake          SSE42 AVX F16C FMA AVX2 BMI2 AVX_VNNI)
        if (NOT MSVC)
            # MSVC doesn't support AMX
            ggml_add_cpu_backend_variant(sapphirerapids SSE42 AVX F16C FMA AVX2 BMI2 AVX512 AMX_TILE AMX_INT8)
        endif()
    elseif(GGML_SYSTEM_ARCH STREQUAL "ARM")
        if (CMAKE_SYSTEM_NAME MATCHES "Linux")
            ggml_add_cpu_backend_variant(armv8.0_1)
            ggml_add_cpu_backend_variant(armv8.2_1    DOTPROD)
            ggml_add_cpu_backend_variant(armv9.2_1    DOTPROD FP16_VECTOR_ARITHMETIC SVE MATMUL_INT8 SME)
        elseif (CMAKE_SYSTEM_NAME MATCHES "Android")
            ggml_add_cpu_backend_variant(android_armv8.0_1)
            ggml_add_cpu_backend_variant(android_armv9.2_1    DOTPROD MATMUL_INT8 FP16_VECTOR_ARITHMETIC SVE SME)
        elseif (APPLE)
            ggml_add_cpu_backend_variant(apple_m1             DOTPROD)
        else()
            message(FATAL_ERROR "Unsupported ARM target OS: ${CMAKE_SYSTEM_NAME}")
        endif()
    elseif (GGML_SYSTEM_ARCH STREQUAL "riscv64")
        if (CMAKE_SYSTEM_NAME MATCHES "Linux")
            ggml_add_cpu_backend_variant(riscv64_0)
        endif()
    else()
        message(FATAL_ERROR "GGML_CPU_ALL_VARIANTS not yet supported")
    endif()
elseif (GGML_CPU)
    ggml_add_cpu_backend_variant_impl("")
endif()
"""
X86_PINS = config.resolve().pins.build.variants_for("x86_64")


def names(variants) -> list[str]:
    return [variant.name for variant in variants]


def test_linux_variants_per_arch_skip_other_oses_and_the_function_body():
    assert names(llama.linux_variants(CMAKE_LISTS, "x86_64")) == [
        "x64", "sse42", "ivybridge", "haswell", "alderlake", "sapphirerapids"]
    assert names(llama.linux_variants(CMAKE_LISTS, "aarch64")) == ["armv8.0_1", "armv8.2_1", "armv9.2_1"]
    assert llama.linux_variants(CMAKE_LISTS, "x86_64")[3].features == ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2")


def test_gcc_10_drops_what_it_cannot_build_and_amx_is_never_shipped():
    """The rejections are gcc 10's own words (bullseye's compiler, measured in its build root)."""
    gcc10 = {"-mavxvnni": "gcc: error: unrecognized command-line option '-mavxvnni'",
             "-mamx-tile": "gcc: error: unrecognized command-line option '-mamx-tile'"}
    asked: list[tuple[str, ...]] = []

    def rejects(options: tuple[str, ...]) -> str | None:
        asked.append(options)
        return next((gcc10[o] for o in options if o in gcc10), None)

    shipped, dropped = llama.choose_variants(llama.linux_variants(CMAKE_LISTS, "x86_64"), X86_PINS, rejects)
    assert shipped == ["x64", "sse42", "ivybridge", "haswell"]
    assert dropped == {"alderlake": "the compiler cannot build AVX_VNNI: " + gcc10["-mavxvnni"],
                       "sapphirerapids": X86_PINS.never["sapphirerapids"]}
    assert "ollama PR #9203" in dropped["sapphirerapids"] and "issue 11" in dropped["sapphirerapids"]
    assert len(asked) == len(set(asked))  # each feature is probed once


def test_a_compiler_that_builds_everything_still_never_ships_sapphirerapids():
    shipped, dropped = llama.choose_variants(llama.linux_variants(CMAKE_LISTS, "x86_64"), X86_PINS,
                                             lambda options: None)
    assert "alderlake" in shipped and list(dropped) == ["sapphirerapids"]


def test_never_naming_an_unknown_variant_is_a_config_error():
    pins = CpuVariantPins(features={}, never={"sapphirerapids": "x", "pentium4": "gone"})
    with pytest.raises(ConfigError, match="pentium4"):
        llama.choose_variants(llama.linux_variants(CMAKE_LISTS, "x86_64"), pins, lambda options: None)


def test_the_real_compiler_reports_an_option_it_does_not_know(tmp_path):
    host = hosts.Host(config.resolve(base="host", cache_dir=tmp_path))
    assert host.compiler_rejects(("-mavx2",)) is None
    complaint = host.compiler_rejects(("-mno-such-cpu-feature",))
    assert complaint and "-mno-such-cpu-feature" in complaint and "\n" not in complaint
    assert host.compiler_version().startswith("cc ")


def test_drop_cpu_variants_removes_exactly_those(tmp_path):
    cmake_lists = tmp_path / "CMakeLists.txt"
    cmake_lists.write_text(CMAKE_LISTS)
    llama.drop_cpu_variants(cmake_lists, ["alderlake", "armv9.2_1"])
    remaining = cmake_lists.read_text()
    assert "(alderlake " not in remaining and "(armv9.2_1 " not in remaining
    assert "android_armv9.2_1" in remaining and "(haswell " in remaining
    assert names(llama.linux_variants(remaining, "x86_64")) == ["x64", "sse42", "ivybridge", "haswell", "sapphirerapids"]


def test_drop_cpu_variants_refuses_a_changed_source(tmp_path):
    cmake_lists = tmp_path / "CMakeLists.txt"
    cmake_lists.write_text(CMAKE_LISTS)
    with pytest.raises(BuildError, match="expected to drop CPU variants"):
        llama.drop_cpu_variants(cmake_lists, ["armv9.4_1"])


def make_wheel(path: Path, variants: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in variants:
            archive.writestr(f"bin/libggml-cpu-{name}.so", b"\x7fELF")
        archive.writestr("lib/libggml-base.so", b"\x7fELF")
    return path


def test_the_wheel_must_hold_exactly_the_reported_variants(tmp_path):
    wheel = make_wheel(tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl", ["x64", "haswell"])
    llama.check_wheel_variants(wheel, ["haswell", "x64"])
    with pytest.raises(BuildError, match=r"holds CPU variants \['haswell', 'x64'\], expected \['x64'\]"):
        llama.check_wheel_variants(wheel, ["x64"])


def test_wheel_cache_key_covers_everything_that_changes_the_wheel(tmp_path):
    settings = config.resolve(cache_dir=tmp_path)
    host = hosts.select(settings)
    key = llama.wheel_dir(settings, host)
    assert key == llama.wheel_dir(settings, hosts.select(settings))
    build = settings.pins.build
    others = [
        dataclasses.replace(settings, base="trixie"),  # another root, another compiler
        dataclasses.replace(settings, pins=dataclasses.replace(settings.pins, python=dataclasses.replace(
            settings.pins.python, llama_cmake_args=("-DGGML_NATIVE=OFF",)))),
        dataclasses.replace(settings, pins=dataclasses.replace(settings.pins, build=dataclasses.replace(
            build, cpu_variants={"x86_64": CpuVariantPins(X86_PINS.features, {})}))),
        dataclasses.replace(settings, pins=dataclasses.replace(settings.pins, build=dataclasses.replace(
            build, cpu_variants={"x86_64": CpuVariantPins({**X86_PINS.features, "AVX": ("-mavx", "-mno-x")},
                                                          X86_PINS.never)}))),
        dataclasses.replace(settings, base="host"),
    ]
    keys = {llama.wheel_dir(other, hosts.select(other)) for other in others}
    assert key not in keys and len(keys) == len(others)
