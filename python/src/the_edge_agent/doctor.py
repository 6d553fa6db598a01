"""`tea doctor`: what this CPU offers llama.cpp, the CPU variants of a portable build with their
scores, and the variant tea uses (forced, remembered from a check, or not checked yet; `--check`
runs the check a first LLM use would run). `--json` is the same report for programs (the release's
variant proof reads it under emulated CPUs)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from . import cpuid
from .variant_guard import cpuinfo_identity

# The /proc/cpuinfo flags that decide which ggml CPU variant runs (x86 `flags`, arm64 `Features`).
RELEVANT_FEATURES = {
    "x86_64": ("sse4_2", "avx", "f16c", "fma", "bmi2", "avx2", "avx_vnni", "avx512f", "avx512cd", "avx512vl",
               "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"),
    "aarch64": ("asimd", "asimddp", "fphp", "asimdhp", "sve", "sve2", "i8mm", "bf16", "sme"),
}


def cpu_report() -> dict[str, Any]:
    """`cpuid` is what this process's instructions report (under qemu -cpu: the emulated CPU, while
    /proc/cpuinfo, and so `name`, still describes the host)."""
    identity = cpuinfo_identity()
    flags = set((identity.get("flags") or identity.get("Features") or "").split())
    relevant = RELEVANT_FEATURES.get(platform.machine(), ())
    return {"name": identity.get("model name") or identity.get("CPU part", "unknown"), "arch": platform.machine(),
            "cpuid": cpuid.identity(), "kernel": platform.release(), "features": [f for f in relevant if f in flags],
            "missing": [f for f in relevant if f not in flags]}


def variants_report(model: Path | None, check: bool) -> dict[str, Any]:
    """llama-cpp-python's version, the variants with scores, and the selection (with `check`: checked now)."""
    from . import variant_guard
    from .actions.llm_local import import_llama, llama_available, usable_cores
    from .ggml_backends import find_variant_dir, loaded_libggml, scan_variants

    if not llama_available():
        return {"llama_cpp": None}
    llama_cpp = import_llama()
    report: dict[str, Any] = {"llama_cpp": getattr(llama_cpp, "__version__", "unknown"), "variant_dir": None,
                              "variants": [], "selected": None}
    directory = find_variant_dir(Path(llama_cpp.__file__).parent, loaded_libggml())
    if directory is None:
        return report
    variants = scan_variants(directory)
    if check:
        selection = variant_guard.choose(variants, model.resolve(), usable_cores())
    else:
        selection = variant_guard.without_check(variants, model.resolve() if model else None)
    rejected = selection.rejected if selection else {}
    report.update(variant_dir=str(directory), variants=[
        {"name": v.name, "score": v.score, "runnable": v.runnable, "crashed": rejected.get(v.name)} for v in variants])
    if selection:
        report["selected"] = {"name": selection.variant.name, "how": selection.how}
    return report


def report_lines(report: dict[str, Any]) -> list[str]:
    cpu = report["cpu"]
    lines = [f"cpu: {cpu['name']} ({cpu['arch']}, kernel {cpu['kernel']})",
             f"cpu features: {' '.join(cpu['features']) or '-'}" + (f" (lacks: {' '.join(cpu['missing'])})"
                                                                       if cpu["missing"] else ""),
             f"model: {report['model'] or 'none found'}"]
    if report["llama_cpp"] is None:
        return [*lines, "llama-cpp-python: not installed (pip install the_edge_agent[llm-local])"]
    lines.append(f"llama-cpp-python: {report['llama_cpp']}")
    if not report["variant_dir"]:
        return [*lines, "ggml CPU variants: none (CPU backend built in)"]
    lines.append(f"ggml CPU variants in {report['variant_dir']} (ggml's order; score 0: needs what this CPU lacks):")
    for variant in report["variants"]:
        state = f"crashed ({variant['crashed']})" if variant["crashed"] else (
            "runnable" if variant["runnable"] else "not runnable")
        lines.append(f"  {variant['name']:<16} score {variant['score']:>5}  {state}")
    selected = report["selected"]
    lines.append(f"selected: {selected['name']} ({selected['how']})" if selected else "selected: none")
    return lines
