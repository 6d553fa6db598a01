"""Never SIGILL: check the CPU backend variant before a user's run depends on it.

ggml picks the variant with the highest `ggml_backend_score()`, which reads CPUID only: a variant can
score highest and still die on its first use (llama-cpp-python 0.3.36's Sapphire Rapids variant,
built by GCC 12, dies with SIGILL in its AMX kernels: GCC drops the stores of its tile
configuration). So on the first LLM use on a machine, tea loads the actual model with the chosen
variant in a child process and evaluates a few tokens (`probe`; mmap keeps that cheap); if the child
dies of a signal, the next variant in ggml's order is checked, and one line says which one is used.

The verdict is remembered in `${XDG_CACHE_HOME:-~/.cache}/tea/cpu-variant/<key>.json`, the key being
the CPU (/proc/cpuinfo identity and flags, kernel release, the variants' scores, which also differ
under emulation), the variant set (names and contents) and the model (AMX kernels run only for some
quantization types). `TEA_GGML_CPU_VARIANT=<name>` forces a variant and skips the check.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cli import CPU_VARIANT_PROBE
from .errors import LlmError, TeaError
from .ggml_backends import (ENV_OVERRIDE, Variant, find_variant_dir, loaded_libggml, register_variant,
                            scan_variants)
from .models import tea_cache_dir

FORCE_ENV = "TEA_GGML_CPU_VARIANT"
CHECK_TIMEOUT = 600.0
RECORD_DIR = "cpu-variant"
# A batch long enough for ggml's batched matrix kernels (AMX tiles take 16-32 rows), then a few
# single-token steps (the decoding kernels): a crash check and a numeric fingerprint, both cheap.
PROBE_PROMPT = ("Check: the quick brown fox jumps over the lazy dog while five boxing wizards jump quickly; "
                "a wizard's job is to vex chumps quickly in fog. Repeat the first three words, then count to five.")
PROBE_DECODE_STEPS = 8
PROBE_CONTEXT = 128
_CPUINFO_IDENTITY = ("vendor_id", "cpu family", "model", "model name", "stepping", "microcode", "flags",
                     "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "CPU revision", "Features")
_registered: list[Selection] = []


@dataclass(frozen=True)
class Selection:
    """The variant in use and why: forced, remembered, checked now, or (doctor only) not checked yet."""

    variant: Variant
    how: str
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """Outcome of one child check: `crash` names the signal; `conclusive` is False when the child
    failed for another reason (a broken model, a timeout): the variant is used but not remembered."""

    crash: str | None = None
    conclusive: bool = True


def cpuinfo_identity(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's identity fields (the same on every core of the machines we target)."""
    identity: dict[str, str] = {}
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return identity
    for line in lines:
        if not line.strip() and identity:
            break
        key, _, value = line.partition(":")
        if key.strip() in _CPUINFO_IDENTITY:
            identity.setdefault(key.strip(), value.strip())
    return identity


def record_key(variants: list[Variant], model: Path) -> str:
    """What a verdict depends on: this CPU and kernel, these variant libraries, this model."""
    material = {
        "cpu": cpuinfo_identity(), "kernel": platform.release(),
        "variants": [[v.name, v.score, hashlib.sha256(v.path.read_bytes()).hexdigest()] for v in variants],
        "model": [model.name, model.stat().st_size],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def record_path(variants: list[Variant], model: Path) -> Path:
    return tea_cache_dir() / RECORD_DIR / f"{record_key(variants, model)}.json"


def read_record(path: Path, candidates: list[Variant]) -> Selection | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    variant = next((v for v in candidates if isinstance(record, dict) and v.name == record.get("variant")), None)
    if variant is None:
        return None
    return Selection(variant, f"remembered from {path}", dict(record.get("rejected") or {}))


def write_record(path: Path, selection: Selection, model: Path) -> None:
    """Best effort (a read-only cache only costs a re-check next time); never half-written."""
    record = {"variant": selection.variant.name, "rejected": selection.rejected, "model": model.name,
              "cpu": cpuinfo_identity().get("model name", platform.machine())}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(partial, path)
    except OSError:
        pass


def child_command(model: Path, threads: int) -> tuple[list[str], dict[str, str]]:
    """This very program (the frozen tea, or this Python with this package) in probe mode."""
    if getattr(sys, "frozen", False):
        return [sys.executable, CPU_VARIANT_PROBE, str(model), str(threads)], {}
    package_root = str(Path(__file__).resolve().parent.parent)
    python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return ([sys.executable, "-m", "the_edge_agent.cli", CPU_VARIANT_PROBE, str(model), str(threads)],
            {"PYTHONPATH": python_path})


def _no_core_dump() -> None:
    """A crash is the expected outcome of a bad variant: no core file in the user's directory."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def check_in_child(variant: Variant, model: Path, threads: int) -> Verdict:
    command, extra_env = child_command(model, threads)
    env = {**os.environ, **extra_env, FORCE_ENV: variant.name, ENV_OVERRIDE: str(variant.path.parent)}
    try:
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=CHECK_TIMEOUT, preexec_fn=_no_core_dump)
    except subprocess.TimeoutExpired:
        return Verdict(conclusive=False)
    if done.returncode < 0:
        return Verdict(crash=_signal_name(-done.returncode))
    return Verdict(conclusive=done.returncode == 0)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def forced_variant(variants: list[Variant], name: str) -> Variant:
    variant = next((v for v in variants if v.name == name), None)
    usable = ", ".join(v.name for v in runnable(variants)) or "none"
    if variant is None:
        raise LlmError(f"{FORCE_ENV}={name}: no such CPU variant (runnable here: {usable})")
    if not variant.runnable:
        raise LlmError(f"{FORCE_ENV}={name}: this CPU lacks instructions that variant needs "
                       f"(ggml score 0; runnable here: {usable})")
    return variant


def runnable(variants: list[Variant]) -> list[Variant]:
    return [variant for variant in variants if variant.runnable]


def forced_selection(variants: list[Variant]) -> Selection | None:
    name = os.environ.get(FORCE_ENV)
    return Selection(forced_variant(variants, name), f"forced by {FORCE_ENV}") if name else None


def without_check(variants: list[Variant], model: Path | None) -> Selection | None:
    """What the next LLM use would start from, running no check (for `tea doctor`)."""
    forced = forced_selection(variants)
    if forced:
        return forced
    candidates = runnable(variants)
    remembered = read_record(record_path(variants, model), candidates) if model else None
    if remembered or not candidates:
        return remembered
    return Selection(candidates[0], "ggml's pick, not checked on this machine yet: tea doctor --check")


def choose(variants: list[Variant], model: Path, threads: int) -> Selection:
    """The variant to register: forced, remembered, or the first that survives a check in a child."""
    forced = forced_selection(variants)
    if forced:
        return forced
    path = record_path(variants, model)
    remembered = read_record(path, runnable(variants))
    if remembered:
        return remembered
    candidates = runnable(variants)
    if not candidates:
        raise LlmError(f"no CPU variant in {variants[0].path.parent} runs on this CPU "
                       f"(all {len(variants)} need instructions it lacks)")
    rejected: dict[str, str] = {}
    for variant in candidates:
        verdict = check_in_child(variant, model, threads)
        if verdict.crash:
            rejected[variant.name] = verdict.crash
            continue
        selection = Selection(variant, "checked on this machine", rejected)
        if verdict.conclusive:
            write_record(path, selection, model)
        if rejected:
            notice(f"CPU variant {describe(rejected)} crashed in a test run; using '{variant.name}' instead "
                   f"(remembered in {path}; {FORCE_ENV}=<name> overrides)")
        return selection
    raise LlmError(f"every CPU variant crashed in a test run on this machine: {describe(rejected)}; "
                   f"run `tea doctor` and report its output")


def describe(rejected: dict[str, str]) -> str:
    return ", ".join(f"'{name}' ({crash})" for name, crash in rejected.items())


def notice(text: str) -> None:
    print(f"tea: {text}", file=sys.stderr, flush=True)


def select_cpu_backend(llama_package: Path, model: Path, threads: int) -> Selection | None:
    """Register the CPU variant to use, once per process; None for a build without variants."""
    if _registered:
        return _registered[0]
    libggml = loaded_libggml()
    directory = find_variant_dir(llama_package, libggml)
    if directory is None:
        return None
    if libggml is None:
        raise LlmError(f"found CPU backends in {directory} but no libggml is loaded to register them")
    selection = choose(scan_variants(directory), model.resolve(), threads)
    register_variant(libggml, selection.variant)
    _registered.append(selection)
    return selection


def probe(args: list[str]) -> int:
    """The child side of `check_in_child` (and the release's numeric check): load the model with the
    forced variant, evaluate PROBE_PROMPT — all but its last PROBE_DECODE_STEPS tokens as one batch (the
    batched matrix kernels), then those token by token (the decoding kernels) — and print, as JSON, the
    log-probability the model gives each of them. Variants agree on these up to rounding; a broken
    kernel does not."""
    from .actions.llm_local import import_llama

    model, threads = Path(args[0]), int(args[1])
    try:
        llama_cpp = import_llama()
        select_cpu_backend(Path(llama_cpp.__file__).parent, model, threads)
        llama = llama_cpp.Llama(model_path=str(model), n_ctx=PROBE_CONTEXT, n_threads=threads, verbose=False)
    except (TeaError, ValueError):
        return 1
    try:
        tokens = llama.tokenize(PROBE_PROMPT.encode())
        llama.eval(tokens[:-PROBE_DECODE_STEPS])
        logprobs = []
        for token in tokens[-PROBE_DECODE_STEPS:]:
            logprobs.append(last_logprob(llama_cpp, llama, token))
            llama.eval([token])
    finally:
        llama.close()
    print(json.dumps({"logprobs": logprobs}))
    return 0


def last_logprob(llama_cpp: Any, llama: Any, token: int) -> float:
    """log softmax(logits of the last evaluated position)[token]."""
    numpy = sys.modules["numpy"]  # llama_cpp's; an import statement would make PyInstaller bundle numpy everywhere
    logits = numpy.ctypeslib.as_array(llama_cpp.llama_get_logits(llama.ctx), shape=(llama.n_vocab(),))
    logits = logits.astype(numpy.float64)
    peak = logits.max()
    return round(float(logits[token] - peak - numpy.log(numpy.exp(logits - peak).sum())), 4)
