"""The variant proof: every llama.cpp CPU variant we ship runs and answers right, or the build fails.

A portable build ships one `libggml-cpu-<variant>.so` per CPU generation; each machine runs only
the one ggml picks there, so the build host alone would exercise one. Here the frozen tea of the
AppDir runs local-chat.yaml once per variant and machine, forced with TEA_GGML_CPU_VARIANT, at
temperature 0:

- natively, for every variant this host can execute (ggml score > 0 here);
- under `qemu-<arch>-static -cpu <model>` (user mode: the inner tea is run directly, qemu does not
  follow exec) for each CPU model in release.toml's [variant_proof]: the variant ggml picks on that
  model, i.e. what a real machine of that kind runs, so an old-CPU variant that picked up a newer
  instruction fails even on a host that has it. TCG has no AVX-512/AMX: those are proven natively
  or not at all.

A variant must answer identically on every CPU it runs on, and like the functional step's answer
(the reference) up to rounding (see Prover). The scores under each CPU come from `tea doctor --json`
run there. manifest.json records which variants were proven natively, which under emulation (on
which CPU), which not at all, with seconds. A failing variant is one line naming it (VerifyError).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import arch as arches
from . import audit, log, model, proc, verify, verify_steps
from .appimage import elf_end_offset
from .artifacts import Kind
from .config import Flavor, Settings
from .errors import ConfigError, VerifyError
from .pipeline import BaseStep, Context

FORCE_ENV = "TEA_GGML_CPU_VARIANT"
PROBE_COMMAND = "__check-cpu-variant"  # the_edge_agent.cli.CPU_VARIANT_PROBE
VARIANT_GLOB = "libggml-cpu-*.so"
RUN_TIMEOUT = 900.0
DRIFT_TOLERANCE = 0.5  # nats, mean over the probe's tokens; see Prover


@dataclass(frozen=True)
class Machine:
    """Where a variant runs: natively, or under qemu-user emulating `cpu`."""

    cpu: str | None = None
    qemu: str | None = None

    def prefix(self) -> list[str]:
        return [self.qemu, "-cpu", self.cpu] if self.qemu and self.cpu else []

    def describe(self, host_cpu: str = "this host") -> str:
        return f"under qemu -cpu {self.cpu}" if self.cpu else f"natively on {host_cpu}"


@dataclass(frozen=True)
class FrozenTea:
    """The frozen tea of an AppDir, run the way AppRun runs it (APPDIR set: the bundled model)."""

    executable: Path
    model: Path
    env: dict[str, str]

    def run(self, machine: Machine, args: list[str], **extra: str) -> subprocess.CompletedProcess:
        emulated = self.restarted_bootloader_env() if machine.cpu else {}
        return verify.run_tea([*machine.prefix(), str(self.executable)], args, timeout=RUN_TIMEOUT,
                              env={**self.env, **emulated, **extra})

    def restarted_bootloader_env(self) -> dict[str, str]:
        """PyInstaller's onedir bootloader sets these, then exec()s itself once; qemu-user does not
        follow an exec, so under emulation the restart would run natively. Set up front, they make
        the bootloader go straight to Python inside the emulator."""
        return {"_PYI_ARCHIVE_FILE": str(self.executable), "_PYI_PARENT_PROCESS_LEVEL": "-1",
                "_PYI_LINUX_PROCESS_NAME": self.executable.name,
                "LD_LIBRARY_PATH": str(self.executable.parent / "_internal")}

    def scores(self, machine: Machine) -> tuple[str, dict[str, int]]:
        """(cpu name, {variant: ggml score}) as the tea sees them on `machine`."""
        cpu, _, scores = self.survey(machine)
        return cpu, scores

    def survey(self, machine: Machine) -> tuple[str, str | None, dict[str, int]]:
        """(cpu name, the CPU its own instructions report, {variant: ggml score}) as the tea sees them."""
        done = self.run(machine, ["doctor", "--json"])
        report = json.loads(verify.expect(done, f"tea doctor --json {machine.describe()}"))
        return (report["cpu"]["name"], report["cpu"].get("cpuid"),
                {v["name"]: v["score"] for v in report.get("variants", [])})

    def answer(self, machine: Machine, variant: str, where: str) -> str:
        """local-chat.yaml's answer, exactly as a user runs it, with only `variant`."""
        done = self.run(machine, ["run", str(verify.LOCAL_CHAT), "--input", json.dumps(verify.QUESTION), "--quiet"],
                        **{FORCE_ENV: variant})
        return str(verify.final_state(survived(done, where), where).get("answer", ""))

    def logprobs(self, machine: Machine, variant: str, where: str) -> list[float]:
        """The next-token log-probabilities of tea's variant probe (see the_edge_agent.variant_guard.probe)."""
        done = self.run(machine, [PROBE_COMMAND, str(self.model), str(len(os.sched_getaffinity(0)))],
                        **{FORCE_ENV: variant})
        output = verify.expect(survived(done, where), f"{where}: the variant probe")
        return json.loads(output)["logprobs"]


def survived(done: subprocess.CompletedProcess, where: str) -> subprocess.CompletedProcess:
    if done.returncode < 0:
        raise VerifyError(f"{where} died with {signal_name(-done.returncode)}")
    return done


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def mean_drift(logprobs: list[float], reference: list[float]) -> float:
    """Mean |difference| of two probes' log-probabilities (infinite if they do not line up)."""
    if not reference or len(logprobs) != len(reference):
        return math.inf
    return sum(abs(a - b) for a, b in zip(logprobs, reference)) / len(reference)


@dataclass
class Prover:
    """Runs variants and judges them.

    Natively a variant runs local-chat.yaml as a user would and must give the reference answer (the
    functional step's). A different variant may round differently — SSE, AVX, AVX2 and AVX-512
    kernels sum in different orders, enough to flip a near-tie in greedy decoding — so a different
    answer passes only if the variant's probe (tea's hidden probe: next-token log-probabilities on a
    fixed text, batched then token by token) stays within DRIFT_TOLERANCE of the reference variant's:
    rounding moves these by under 0.1 nats on average (measured across all x86 variants, 270M model);
    a wrong kernel moves them by whole nats.
    Under emulation (TCG is ~30x slower) a variant runs the probe only, and must match its own native
    probe exactly (same code, same numbers) or, where this host cannot run it, the reference probe
    within DRIFT_TOLERANCE.
    """

    tea: FrozenTea
    reference: str
    reference_machine: Machine
    host_cpu: str = "this host"
    verdicts: dict[str, str] = field(default_factory=dict)
    _probes: dict[tuple, list[float]] = field(default_factory=dict)
    _reference_variant: str = ""

    def where(self, machine: Machine, variant: str) -> str:
        return f"CPU variant '{variant}' {machine.describe(self.host_cpu)}"

    def probe(self, tea: FrozenTea, machine: Machine, variant: str) -> list[float]:
        key = (tea.model, machine, variant)
        if key not in self._probes:
            self._probes[key] = tea.logprobs(machine, variant, self.where(machine, variant))
        return self._probes[key]

    def drift_from_reference(self, tea: FrozenTea, machine: Machine, variant: str) -> float:
        """Against the variant ggml picks on the reference machine (the functional step's)."""
        if not self._reference_variant:
            _, scores = tea.scores(self.reference_machine)
            self._reference_variant = max(scores, key=lambda name: scores[name])
        reference = self.probe(tea, self.reference_machine, self._reference_variant)
        return mean_drift(self.probe(tea, machine, variant), reference)

    def check_drift(self, drift: float, what: str) -> str:
        if drift > DRIFT_TOLERANCE:
            raise VerifyError(f"{what}, and its log-probabilities are off by {drift:.2f} nats on average "
                              f"(rounding stays under {DRIFT_TOLERANCE})")
        return f"rounding: mean |d log p| {drift:.3f}"

    def prove_natively(self, variant: str) -> float:
        """local-chat.yaml with only `variant`; seconds taken, or VerifyError naming the variant."""
        started, machine = time.monotonic(), Machine()
        where = self.where(machine, variant)
        answer = self.tea.answer(machine, variant, where)
        if answer == self.reference:
            self.verdicts[variant] = "identical"
        else:
            drift = self.drift_from_reference(self.tea, machine, variant)
            self.verdicts[variant] = self.check_drift(
                drift, f"{where} answered {answer[:120]!r}, not the reference {self.reference[:120]!r}")
        return round(time.monotonic() - started, 1)

    def prove_emulated(self, tea: FrozenTea, machine: Machine, variant: str, native: bool) -> dict:
        """The probe of `variant` on `machine` against its native probe (`native`) or the reference's."""
        started, where = time.monotonic(), self.where(machine, variant)
        emulated = self.probe(tea, machine, variant)
        seconds = round(time.monotonic() - started, 1)
        if native:
            if emulated != self.probe(tea, Machine(), variant):
                raise VerifyError(f"{where} computes other log-probabilities than natively: "
                                  f"the same variant must compute the same on every CPU")
            return {"cpu": machine.cpu, "seconds": seconds, "probe": "identical to native"}
        drift = self.drift_from_reference(tea, machine, variant)
        return {"cpu": machine.cpu, "seconds": seconds, "probe": self.check_drift(drift, f"{where} probe")}


def variant_names(libraries: list[Path]) -> list[str]:
    return sorted(library.name[len("libggml-cpu-"):-len(".so")] for library in libraries)


def shipped_variants(root: Path) -> list[str]:
    """The variants an AppDir ships: all in one directory, or the frozen app would miss some."""
    libraries = list(root.rglob(VARIANT_GLOB))
    directories = {library.parent for library in libraries}
    if len(directories) != 1:
        raise VerifyError(f"{root}: expected the CPU variants ({VARIANT_GLOB}) in one directory, "
                          f"found {len(libraries)} in {len(directories)}")
    return variant_names(libraries)


def qemu_for(arch: str) -> str:
    qemu = shutil.which(f"qemu-{arch}-static")
    if not qemu:
        raise ConfigError(f"qemu-{arch}-static not found: the variant proof emulates older CPUs with it; "
                          f"run: apt-get install qemu-user-static")
    return qemu


def runnable_by_score(variants: list[str], scores: dict[str, int], exclude: set[str] = frozenset()) -> list[str]:
    return sorted((n for n in variants if scores.get(n, 0) > 0 and n not in exclude), key=lambda n: -scores[n])


def prove(tea: FrozenTea, variants: list[str], *, arch: str, cpus: list[str], reference: str,
          native: bool = True, emulated_tea: FrozenTea | None = None) -> dict:
    """Every variant natively where this host can (with `native`), then on each emulated CPU the variant
    ggml picks there (probes with `emulated_tea`, default `tea`). The manifest record; VerifyError
    naming the first failing variant."""
    emulated_tea = emulated_tea or tea
    qemu = qemu_for(arch) if cpus else None
    on_host = arch == arches.host_arch()
    prover = Prover(tea, reference, Machine() if on_host else Machine(cpus[-1], qemu))
    proven_natively: dict[str, float] = {}
    host_scores: dict[str, int] = {}
    host_identity = None
    if native:
        prover.host_cpu, host_identity, host_scores = tea.survey(Machine())
        for name in runnable_by_score(variants, host_scores):
            proven_natively[name] = prover.prove_natively(name)
    emulated: dict[str, dict] = {}
    for cpu in cpus:
        machine = Machine(cpu, qemu)
        _, identity, scores = emulated_tea.survey(machine)
        if native and not emulation_took_effect(host_identity, host_scores, identity, scores):
            raise VerifyError(f"qemu -cpu {cpu} did not take effect: tea saw this host's CPU there")
        picked = runnable_by_score(variants, scores)[:1]  # what a real machine of this model runs
        for name in (n for n in picked if n not in emulated):
            emulated[name] = prover.prove_emulated(emulated_tea, machine, name, host_scores.get(name, 0) > 0)
    proven = set(proven_natively) | set(emulated)
    return {"shipped": variants, "host_cpu": prover.host_cpu, "native": proven_natively, "emulated": emulated,
            "answers": prover.verdicts, "unproven": [name for name in variants if name not in proven]}


def emulation_took_effect(host_identity: str | None, host_scores: dict[str, int], identity: str | None,
                          scores: dict[str, int]) -> bool:
    """Did tea run on the emulated CPU? Its own CPUID/MIDR says so; an emulated model may offer ggml
    exactly the host's features (Haswell on an AVX2-only host), so equal scores prove nothing then.
    Without an identity on both sides, only different scores show it."""
    if host_identity and identity:
        return identity != host_identity
    return scores != host_scores


def frozen_tea(root: Path, home: Path, gguf: Path | None = None) -> FrozenTea:
    """The AppDir's tea in a scrubbed environment with a throwaway home, on its bundled model or `gguf`."""
    env = verify.clean_env(APPDIR=str(root), PYTHONDONTWRITEBYTECODE="1", HOME=str(home),
                           XDG_CACHE_HOME=str(home / ".cache"))
    if gguf is not None:
        return FrozenTea(root / "usr" / "bin" / "tea", gguf, {**env, "TEA_MODEL_PATH": str(gguf)})
    bundled = sorted((root / "usr" / "share" / "models").glob("*.gguf"))
    if not bundled:
        raise VerifyError(f"{root}: no bundled model in usr/share/models to prove the CPU variants on")
    return FrozenTea(root / "usr" / "bin" / "tea", bundled[0], env)


def emulation_model(settings: Settings) -> Path | None:
    """The small pinned model emulated runs use instead of a larger release model (TCG runs ~30x slower
    than native; a Q4_K_M model of any size exercises the same kernels), or None for the release model."""
    name = settings.pins.variant_proof.emulated_model
    if not name or name == settings.model.name:
        return None
    return model.fetch_model(dataclasses.replace(settings, model=settings.pins.model(name)))


def prove_appimage(appimage: Path, cpus: list[str], reference: str, workdir: Path) -> dict:
    """`invoke test-appimage --cpus`: the emulated matrix on an AppImage (unpacked: qemu-user cannot
    follow the runtime's exec into the inner tea)."""
    root = workdir / "squashfs-root"
    proc.run(["unsquashfs", "-q", "-n", "-o", elf_end_offset(appimage), "-d", root, appimage],
             what=f"unpacking {appimage.name}", error=VerifyError)
    return prove(frozen_tea(root, workdir / "home"), shipped_variants(root), arch=audit.elf_machine(appimage),
                 cpus=cpus, reference=reference, native=False)


def describe_proof(record: dict) -> str:
    """One line for the log: where each variant was proven, with seconds."""
    native = [f"{name} {seconds} s" for name, seconds in record["native"].items()]
    emulated = [f"{name} on {run['cpu']} {run['seconds']} s" for name, run in record["emulated"].items()]
    on_model = f" ({record['emulated_model']})" if record.get("emulated_model") else ""
    return "; ".join(filter(None, [f"natively on {record['host_cpu']}: " + ", ".join(native) if native else "",
                                   f"emulated{on_model}: " + ", ".join(emulated) if emulated else "",
                                   "not proven: " + ", ".join(record["unproven"]) if record["unproven"] else ""]))


def proof_cpus(settings: Settings) -> list[str]:
    return list(settings.pins.variant_proof.cpus.get(settings.arch, ()))


class VariantProofStep(BaseStep):
    """After the functional step of an LLM flavor: its answer is the reference."""

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"variant-proof-{flavor.name}"
        self.after = (f"appdir-{flavor.name}", f"functional-{flavor.name}")

    def inputs(self, ctx: Context) -> dict:
        return {"cpus": proof_cpus(ctx.settings), "emulated_model": ctx.settings.pins.variant_proof.emulated_model}

    def run(self, ctx: Context) -> dict:
        settings = ctx.settings
        root = ctx.artifacts.get(Kind.APPDIR, self.flavor.name).path
        reference = verify_steps.read_report(ctx, "functional", self.flavor.name)["answer"]
        variants, cpus = shipped_variants(root), proof_cpus(settings)
        native, small = settings.arch == arches.host_arch(), emulation_model(settings)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="tea-variant-proof-") as work:
            tea = frozen_tea(root, Path(work))
            record = prove(tea, variants, arch=settings.arch, reference=reference, cpus=cpus, native=native,
                           emulated_tea=frozen_tea(root, Path(work), small) if small else tea)
        if small:
            record["emulated_model"] = small.name
        record["seconds"] = round(time.monotonic() - started, 1)
        log.info(f"{self.name}: {describe_proof(record)}")
        return verify_steps.write_report(ctx, "variant-proof", self.flavor, record)
