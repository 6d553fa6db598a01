"""The variant proof: every shipped CPU variant runs and answers right, natively and on emulated CPUs.

The real tests run the frozen tea of the AppDir `invoke test` built (TEA_TEST_BUILD) with the real
270M model, natively and under qemu-user; a planted variant library (tests/planted_variant.c) that
dies with SIGILL must fail the step with one line naming it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from release import appdir, config, variant_proof, verify_steps
from release.artifacts import Kind
from release.errors import VerifyError
from release.pipeline import Context
from release.variant_proof import Machine, Prover, mean_drift, runnable_by_score, shipped_variants


def built_appdir() -> Path:
    build = os.environ.get("TEA_TEST_BUILD")
    if not build:
        pytest.skip("TEA_TEST_BUILD is not set: these tests run the AppDir `invoke test` built")
    return Path(build) / "x86_64" / "python-llm" / "AppDir"


def appdir_with(target: Path, *extra: Path) -> Path:
    """A copy of the built LLM AppDir (hard links where possible) with `extra` variant libraries added."""
    appdir.link_tree(built_appdir(), target)
    variant_dir = next(target.rglob("libggml-cpu-x64.so")).parent
    for library in extra:
        (variant_dir / library.name).symlink_to(library)
    return target


@pytest.mark.slow
def test_planted_variant_fails_the_step_with_one_line_naming_it(planted_variant, tmp_path):
    settings = config.resolve(arch="x86_64", flavor="python-llm", model="gemma-3-270m",
                              build_dir=tmp_path / "build", out=tmp_path / "dist", cache_dir=tmp_path / "cache")
    flavor = settings.flavors[0]
    ctx = Context(settings)
    ctx.register(Kind.APPDIR, appdir_with(appdir.appdir_path(settings, flavor), planted_variant), flavor=flavor.name)
    verify_steps.write_report(ctx, "functional", flavor, {"answer": "anything"})
    with pytest.raises(VerifyError) as failure:
        variant_proof.VariantProofStep(flavor).run(ctx)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("CPU variant 'planted' natively on ") and message.endswith("died with SIGILL")


@pytest.mark.slow
def test_emulation_reaches_the_inner_tea(tmp_path):
    """qemu-user stops at an exec: the frozen tea must see the emulated CPU, not this host's."""
    tea = variant_proof.frozen_tea(built_appdir(), tmp_path)
    _, scores = tea.scores(Machine("Westmere", variant_proof.qemu_for("x86_64")))
    assert runnable_by_score(list(scores), scores) == ["sse42", "x64"]


class LeakyTea(variant_proof.FrozenTea):
    """A frozen tea whose bootloader restart escapes qemu (as it does without the restart environment)."""

    def restarted_bootloader_env(self) -> dict[str, str]:
        return {}


@pytest.mark.slow
def test_an_emulation_that_did_not_take_effect_fails_the_proof(tmp_path):
    tea = variant_proof.frozen_tea(built_appdir(), tmp_path)
    leaky = LeakyTea(tea.executable, tea.model, tea.env)
    with pytest.raises(VerifyError, match="qemu -cpu Westmere did not take effect"):
        variant_proof.prove(leaky, ["zen4"], arch="x86_64", cpus=["Westmere"], reference="")


@pytest.mark.slow
def test_the_variant_picked_on_an_emulated_cpu_computes_as_natively(tmp_path):
    tea = variant_proof.frozen_tea(built_appdir(), tmp_path)
    reference = tea.answer(Machine(), "haswell", "haswell natively")
    record = variant_proof.prove(tea, ["haswell", "sandybridge"], arch="x86_64", cpus=["SandyBridge"],
                                 reference=reference)
    assert set(record["native"]) == {"haswell", "sandybridge"} and record["answers"]["haswell"] == "identical"
    assert record["emulated"]["sandybridge"]["cpu"] == "SandyBridge"
    assert record["emulated"]["sandybridge"]["probe"] == "identical to native"
    assert record["unproven"] == []


def test_shipped_variants_must_sit_in_one_directory(tmp_path):
    for where in ("a", "b"):
        (tmp_path / where).mkdir()
        (tmp_path / where / f"libggml-cpu-{where}.so").write_bytes(b"")
    with pytest.raises(VerifyError, match="in one directory"):
        shipped_variants(tmp_path)
    (tmp_path / "b" / "libggml-cpu-b.so").unlink()
    assert shipped_variants(tmp_path) == ["a"]


def test_runnable_by_score_is_ggml_order_without_the_unrunnable():
    scores = {"x64": 1, "haswell": 64, "zen4": 0, "sse42": 5}
    assert runnable_by_score(list(scores), scores) == ["haswell", "sse42", "x64"]
    assert runnable_by_score(list(scores), scores, exclude={"sse42"}) == ["haswell", "x64"]


def test_mean_drift():
    assert mean_drift([-1.0, -2.0], [-1.5, -2.0]) == 0.25
    assert mean_drift([-1.0], [-1.0, -2.0]) == float("inf")
    assert mean_drift([], []) == float("inf")


@dataclass
class ScriptedTea:
    """Answers and probe log-probabilities per (cpu, variant): the judging rules, without a model."""

    answers: dict[tuple[str | None, str], str]
    probes: dict[tuple[str | None, str], list[float]]
    model: Path = Path("model.gguf")

    def answer(self, machine: Machine, variant: str, where: str) -> str:
        return self.answers[machine.cpu, variant]

    def logprobs(self, machine: Machine, variant: str, where: str) -> list[float]:
        return self.probes[machine.cpu, variant]

    def scores(self, machine: Machine) -> tuple[str, dict[str, int]]:
        return "cpu", {"zen4": 2, "sse42": 1}


def scripted(answers=None, probes=None) -> tuple[Prover, ScriptedTea]:
    tea = ScriptedTea(answers or {}, probes or {})
    return Prover(tea, reference="4", reference_machine=Machine()), tea


def test_a_different_answer_passes_only_within_rounding_of_the_reference():
    prover, _ = scripted({(None, "zen4"): "4", (None, "sse42"): "4.", (None, "x64"): "five"},
                         {(None, "zen4"): [-1.0, -2.0], (None, "sse42"): [-1.1, -2.1], (None, "x64"): [-4.0, -6.0]})
    prover.prove_natively("zen4")
    prover.prove_natively("sse42")
    assert prover.verdicts == {"zen4": "identical", "sse42": "rounding: mean |d log p| 0.100"}
    with pytest.raises(VerifyError, match=r"CPU variant 'x64' natively on this host answered 'five', not the "
                                          r"reference '4', and .* off by 3.50 nats"):
        prover.prove_natively("x64")


def test_an_emulated_variant_must_compute_exactly_what_it_computes_natively():
    prover, tea = scripted(probes={(None, "sse42"): [-1.0, -2.0], ("Westmere", "sse42"): [-1.0, -2.0],
                                   ("SandyBridge", "sse42"): [-1.0, -2.0001]})
    result = prover.prove_emulated(tea, Machine("Westmere", "qemu"), "sse42", native=True)
    assert result["cpu"] == "Westmere" and result["probe"] == "identical to native"
    with pytest.raises(VerifyError, match="'sse42' under qemu -cpu SandyBridge computes other log-probabilities"):
        prover.prove_emulated(tea, Machine("SandyBridge", "qemu"), "sse42", native=True)


def test_without_a_native_run_an_emulated_probe_is_held_to_the_reference():
    prover, tea = scripted(probes={(None, "zen4"): [-1.0, -2.0], ("cortex-a53", "sse42"): [-1.2, -2.2],
                                   ("max", "sse42"): [-3.0, -2.0]})
    assert prover.prove_emulated(tea, Machine("cortex-a53", "qemu"), "sse42", native=False)["probe"] == \
        "rounding: mean |d log p| 0.200"
    with pytest.raises(VerifyError, match="off by 1.00 nats"):
        prover.prove_emulated(tea, Machine("max", "qemu"), "sse42", native=False)


# --- prove()'s decisions on a recorded machine: no AppDir, no model, no qemu -------------------------

HOST_SCORES = {"haswell": 64, "sandybridge": 32, "sse42": 8, "x64": 1, "zen4": 0}
CPU_SCORES = {"Westmere": {"sse42": 8, "x64": 1}, "SandyBridge": {"sandybridge": 32, "sse42": 8, "x64": 1}}
PROBE = [-1.25, -0.5, -3.0]


@dataclass(frozen=True)
class RecordedTea(variant_proof.FrozenTea):
    """A frozen tea that answers each command the way the real one did on each machine, through the
    seam every run goes through (FrozenTea.run), with the scores of `host` natively and of
    `emulated[cpu]` under qemu, and the CPU's own identity (`tea doctor --json`'s cpuid: qemu's
    model under emulation). A variant the machine cannot execute dies with SIGILL; an emulated run
    without the bootloader's restart environment escapes qemu and sees this host, as the real one
    does. `probes[(cpu, variant)]` overrides the probe (default PROBE)."""

    host: dict = dataclasses.field(default_factory=lambda: dict(HOST_SCORES))
    emulated: dict = dataclasses.field(default_factory=lambda: dict(CPU_SCORES))
    probes: dict = dataclasses.field(default_factory=dict)
    answer_text: str = "4"

    def run(self, machine: Machine, args: list[str], **extra: str) -> subprocess.CompletedProcess:
        escaped = machine.cpu and "_PYI_ARCHIVE_FILE" not in self.restarted_bootloader_env()
        cpu = None if escaped else machine.cpu
        scores = self.host if cpu is None else self.emulated[cpu]
        variant = extra.get(variant_proof.FORCE_ENV)
        if variant is not None and scores.get(variant, 0) <= 0:
            return subprocess.CompletedProcess(args, -signal.SIGILL, "", "")
        if args[:2] == ["doctor", "--json"]:
            out = {"cpu": {"name": "host CPU", "cpuid": f"GenuineIntel QEMU {cpu}" if cpu else "AuthenticAMD host"},
                   "variants": [{"name": n, "score": s} for n, s in scores.items()]}
        elif args[0] == variant_proof.PROBE_COMMAND:
            out = {"logprobs": self.probes.get((cpu, variant), PROBE)}
        else:
            out = {"answer": self.answer_text}
        return subprocess.CompletedProcess(args, 0, json.dumps(out), "")


class EscapingTea(RecordedTea):
    def restarted_bootloader_env(self) -> dict[str, str]:
        return {}


@pytest.fixture
def qemu(tmp_path, monkeypatch) -> None:
    """qemu-x86_64-static on PATH (never run: the recorded tea answers for it)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "qemu-x86_64-static").write_text("#!/bin/sh\nexit 99\n")
    (tmp_path / "bin" / "qemu-x86_64-static").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(variant_proof.arches, "host_arch", lambda: "x86_64")


def recorded(cls=RecordedTea, **fields) -> RecordedTea:
    return cls(Path("/appdir/usr/bin/tea"), Path("/appdir/model.gguf"), {}, **fields)


def test_prove_runs_every_runnable_variant_natively_and_the_picked_one_per_emulated_cpu(qemu):
    record = variant_proof.prove(recorded(), sorted(HOST_SCORES), arch="x86_64", cpus=["Westmere", "SandyBridge"],
                                 reference="4")
    assert set(record["native"]) == {"haswell", "sandybridge", "sse42", "x64"}
    assert set(record["answers"].values()) == {"identical"}
    assert {name: run["cpu"] for name, run in record["emulated"].items()} == {"sse42": "Westmere",
                                                                             "sandybridge": "SandyBridge"}
    assert {run["probe"] for run in record["emulated"].values()} == {"identical to native"}
    assert record["unproven"] == ["zen4"] and record["host_cpu"] == "host CPU"


def test_an_emulation_that_did_not_take_effect_fails_the_proof_fast(qemu):
    with pytest.raises(VerifyError, match="^qemu -cpu Westmere did not take effect"):
        variant_proof.prove(recorded(EscapingTea), sorted(HOST_SCORES), arch="x86_64", cpus=["Westmere"],
                            reference="4")


def test_an_emulated_cpu_that_scores_like_this_host_is_no_failure(qemu):
    """Haswell under qemu on an AVX2-only host (an AMD EPYC here) scores the variants like the host:
    the warm-up release failed on it; tea's own CPUID tells the emulation apart."""
    tea = recorded(emulated={**CPU_SCORES, "Haswell": HOST_SCORES})
    record = variant_proof.prove(tea, sorted(HOST_SCORES), arch="x86_64", cpus=["Haswell"], reference="4")
    assert record["emulated"]["haswell"] == {**record["emulated"]["haswell"], "cpu": "Haswell",
                                             "probe": "identical to native"}


def test_an_emulated_variant_within_rounding_but_not_equal_to_its_native_run_fails(qemu):
    """Rounding excuses another variant, never the same code on another CPU."""
    tea = recorded(probes={("Westmere", "sse42"): [-1.25, -0.5, -3.01]})
    with pytest.raises(VerifyError, match="'sse42' under qemu -cpu Westmere computes other log-probabilities"):
        variant_proof.prove(tea, sorted(HOST_SCORES), arch="x86_64", cpus=["Westmere"], reference="4")


def test_a_variant_this_host_cannot_run_is_held_to_the_reference_on_its_emulated_cpu(qemu):
    """On a host without AVX the emulated SandyBridge's variant is proven against the host's best
    variant, within rounding: it never runs natively (it would die)."""
    host = {"sse42": 8, "x64": 1, "sandybridge": 0}
    tea = recorded(host=host, probes={("SandyBridge", "sandybridge"): [-1.3, -0.5, -3.0]})
    record = variant_proof.prove(tea, sorted(host), arch="x86_64", cpus=["SandyBridge"], reference="4")
    assert set(record["native"]) == {"sse42", "x64"} and record["unproven"] == []
    assert record["emulated"]["sandybridge"]["probe"] == "rounding: mean |d log p| 0.017"
    far = recorded(host=host, probes={("SandyBridge", "sandybridge"): [-3.0, -2.5, -3.0]})
    with pytest.raises(VerifyError, match="'sandybridge' under qemu -cpu SandyBridge probe, and .* off by 1.25"):
        variant_proof.prove(far, sorted(host), arch="x86_64", cpus=["SandyBridge"], reference="4")


def test_a_variant_that_dies_natively_fails_the_proof_naming_it(qemu):
    class Dies(RecordedTea):
        """sse42 scores on this host, yet dies there (an instruction it should not use)."""

        def run(self, machine, args, **extra):
            if extra.get(variant_proof.FORCE_ENV) == "sse42" and not machine.cpu:
                return subprocess.CompletedProcess(args, -signal.SIGILL, "", "")
            return super().run(machine, args, **extra)

    with pytest.raises(VerifyError, match=r"^CPU variant 'sse42' natively on host CPU died with SIGILL$"):
        variant_proof.prove(recorded(Dies, host={"sse42": 8, "x64": 1}), ["sse42", "x64"], arch="x86_64", cpus=[],
                            reference="4")


def test_an_emulated_cpu_is_told_by_its_own_identity_even_with_the_hosts_scores():
    """An AVX2-only host emulating Haswell: ggml scores the same, CPUID differs, the emulation took effect."""
    scores = {"haswell": 64, "sse42": 5, "x64": 1}
    assert variant_proof.emulation_took_effect("AuthenticAMD AMD EPYC", scores,
                                               "GenuineIntel Intel Core Processor (Haswell)", dict(scores))
    assert not variant_proof.emulation_took_effect("AuthenticAMD AMD EPYC", scores, "AuthenticAMD AMD EPYC",
                                                   {"sse42": 5, "x64": 1})
    assert not variant_proof.emulation_took_effect(None, scores, None, dict(scores))
    assert variant_proof.emulation_took_effect(None, scores, "GenuineIntel", {"sse42": 5, "x64": 1})
