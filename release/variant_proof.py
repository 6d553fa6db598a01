"""The variant proof: every llama.cpp CPU variant we ship gives the reference answer, or the build fails.

A portable build ships one `libggml-cpu-<variant>.so` per CPU generation; each machine runs only
the one ggml picks there, so the build host alone would exercise one. Here the frozen tea of the
AppDir runs local-chat.yaml once per variant, forced with TEA_GGML_CPU_VARIANT, at temperature 0,
and must print the functional step's answer:

- natively, for every variant this host can execute (ggml score > 0 here);
- under `qemu-<arch>-static -cpu <model>` (user mode: the inner tea is run directly, qemu does not
  follow exec) for each CPU model in release.toml's [variant_proof], oldest first: each variant is
  proven on the oldest listed CPU that runs it, so an old-CPU variant that picked up a newer
  instruction fails even on a host that has it. TCG has no AVX-512/AMX: those are proven natively
  or not at all.

The scores under each CPU come from `tea doctor --json` run there. The result (which variants were
proven natively, which under emulation on which CPU, which not at all, with seconds) goes into
manifest.json. A failing variant is one line naming it (VerifyError).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import appdir as appdir_module
from . import arch as arches
from . import audit, log, verify
from .appimage import elf_end_offset
from .config import Flavor
from .errors import ConfigError, VerifyError
from .pipeline import BaseStep, Context, code_of

FORCE_ENV = "TEA_GGML_CPU_VARIANT"
VARIANT_GLOB = "libggml-cpu-*.so"
RUN_TIMEOUT = 900.0


@dataclass(frozen=True)
class Machine:
    """Where a variant runs: natively, or under qemu-user emulating `cpu`."""

    cpu: str | None = None
    qemu: str | None = None

    def prefix(self) -> list[str]:
        return [self.qemu, "-cpu", self.cpu] if self.qemu and self.cpu else []

    def describe(self, host_cpu: str = "this host") -> str:
        return f"under qemu -cpu {self.cpu}" if self.cpu else f"natively on {host_cpu}"


@dataclass
class Proof:
    """What ran where, with seconds: the manifest's `cpu_variants` record."""

    shipped: list[str]
    host_cpu: str = ""
    native: dict[str, float] = field(default_factory=dict)
    emulated: dict[str, dict] = field(default_factory=dict)

    def record(self) -> dict:
        proven = set(self.native) | set(self.emulated)
        return {"shipped": self.shipped, "host_cpu": self.host_cpu, "native": self.native,
                "emulated": self.emulated, "unproven": [name for name in self.shipped if name not in proven]}


@dataclass(frozen=True)
class FrozenTea:
    """The frozen tea of an AppDir, run the way AppRun runs it (APPDIR set: the bundled model)."""

    executable: Path
    env: dict[str, str]

    def run(self, machine: Machine, args: list[str], **extra: str) -> subprocess.CompletedProcess:
        return verify.run_tea([*machine.prefix(), str(self.executable)], args, timeout=RUN_TIMEOUT,
                              env={**self.env, **extra})

    def scores(self, machine: Machine) -> tuple[str, dict[str, int]]:
        """(cpu name, {variant: ggml score}) as the tea sees them on `machine`."""
        done = self.run(machine, ["doctor", "--json"])
        report = json.loads(verify.expect(done, f"tea doctor --json {machine.describe()}"))
        return report["cpu"]["name"], {v["name"]: v["score"] for v in report.get("variants", [])}

    def answer(self, machine: Machine, variant: str, host_cpu: str) -> str:
        done = self.run(machine, ["run", str(verify.LOCAL_CHAT), "--input", json.dumps(verify.QUESTION), "--quiet"],
                        **{FORCE_ENV: variant})
        where = f"CPU variant '{variant}' {machine.describe(host_cpu)}"
        if done.returncode < 0:
            raise VerifyError(f"{where} died with {signal_name(-done.returncode)}")
        return str(verify.final_state(done, where).get("answer", ""))


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


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


def check(tea: FrozenTea, machine: Machine, variant: str, reference: str, host_cpu: str) -> float:
    started = time.monotonic()
    answer = tea.answer(machine, variant, host_cpu)
    if answer != reference:
        raise VerifyError(f"CPU variant '{variant}' {machine.describe(host_cpu)} answered {answer[:120]!r}, "
                          f"expected the reference {reference[:120]!r}")
    return round(time.monotonic() - started, 1)


def prove(tea: FrozenTea, variants: list[str], *, arch: str, cpus: list[str], reference: str,
          native: bool = True) -> Proof:
    """Run every variant natively where this host can, then each on the oldest listed emulated CPU that
    runs it. Raises VerifyError naming the first variant that crashes or answers differently."""
    proof = Proof(shipped=variants)
    if native:
        proof.host_cpu, scores = tea.scores(Machine())
        for name in sorted((n for n in variants if scores.get(n, 0) > 0), key=lambda n: -scores[n]):
            proof.native[name] = check(tea, Machine(), name, reference, proof.host_cpu)
    qemu = qemu_for(arch) if cpus else None
    for cpu in cpus:
        machine = Machine(cpu, qemu)
        _, scores = tea.scores(machine)
        for name in sorted((n for n in variants if scores.get(n, 0) > 0 and n not in proof.emulated),
                           key=lambda n: -scores[n]):
            proof.emulated[name] = {"cpu": cpu, "seconds": check(tea, machine, name, reference, proof.host_cpu)}
    return proof


def frozen_tea(root: Path, home: Path, **extra: str) -> FrozenTea:
    """The AppDir's tea in a scrubbed environment, with a throwaway home (nothing remembered)."""
    env = verify.clean_env(APPDIR=str(root), PYTHONDONTWRITEBYTECODE="1", HOME=str(home),
                           XDG_CACHE_HOME=str(home / ".cache"), **extra)
    return FrozenTea(root / "usr" / "bin" / "tea", env)


def prove_appimage(appimage: Path, cpus: list[str], reference: str, workdir: Path) -> Proof:
    """`invoke test-appimage --cpus`: the emulated matrix on an AppImage (unpacked: qemu-user cannot
    follow the runtime's exec into the inner tea)."""
    root = workdir / "squashfs-root"
    done = subprocess.run(["unsquashfs", "-q", "-n", "-o", str(elf_end_offset(appimage)), "-d", str(root),
                           str(appimage)], capture_output=True, text=True)
    if done.returncode != 0:
        raise VerifyError(f"{appimage.name}: unsquashfs could not unpack it: {done.stderr.strip()[-200:]}")
    return prove(frozen_tea(root, workdir / "home"), shipped_variants(root), arch=audit.elf_machine(appimage),
                 cpus=cpus, reference=reference, native=False)


def describe_proof(record: dict) -> str:
    """One line for the log: where each variant was proven, with seconds."""
    native = [f"{name} {seconds} s" for name, seconds in record["native"].items()]
    emulated = [f"{name} on {run['cpu']} {run['seconds']} s" for name, run in record["emulated"].items()]
    return "; ".join(filter(None, [f"natively on {record['host_cpu']}: " + ", ".join(native) if native else "",
                                   "emulated: " + ", ".join(emulated) if emulated else "",
                                   "not proven: " + ", ".join(record["unproven"]) if record["unproven"] else ""]))


def proof_cpus(pins: dict, arch: str) -> list[str]:
    return list(pins.get("variant_proof", {}).get(arch, []))


class VariantProofStep(BaseStep):
    """After the functional step of an LLM flavor: its answer is the reference."""

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"variant-proof-{flavor.name}"
        self.after = (f"appdir-{flavor.name}", f"functional-{flavor.name}")

    def inputs(self, ctx: Context) -> dict:
        return {"code": code_of(verify), "cpus": proof_cpus(ctx.settings.pins, ctx.settings.arch)}

    def run(self, ctx: Context) -> dict:
        settings = ctx.settings
        root = appdir_module.appdir_path(settings, self.flavor)
        reference = ctx.results[f"functional-{self.flavor.name}"]["answer"]
        variants = shipped_variants(root)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="tea-variant-proof-") as home:
            proof = prove(frozen_tea(root, Path(home)), variants, arch=settings.arch, reference=reference,
                          cpus=proof_cpus(settings.pins, settings.arch),
                          native=settings.arch == arches.host_arch())
        record = {**proof.record(), "seconds": round(time.monotonic() - started, 1)}
        log.info(f"{self.name}: {describe_proof(record)}")
        return record
