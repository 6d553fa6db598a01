"""The variant proof: every shipped CPU variant runs and answers right, natively and on emulated CPUs.

The real tests run the frozen tea of the AppDir `invoke test` built (TEA_TEST_BUILD) with the real
270M model, natively and under qemu-user; a planted variant library (tests/planted_variant.c) that
dies with SIGILL must fail the step with one line naming it.
"""

from __future__ import annotations

import os
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


def test_an_emulated_cpu_is_told_by_its_own_identity_even_with_the_hosts_scores():
    """An AVX2-only host emulating Haswell: ggml scores the same, CPUID differs, the emulation took effect."""
    scores = {"haswell": 64, "sse42": 5, "x64": 1}
    assert variant_proof.emulation_took_effect("AuthenticAMD AMD EPYC", scores,
                                               "GenuineIntel Intel Core Processor (Haswell)", dict(scores))
    assert not variant_proof.emulation_took_effect("AuthenticAMD AMD EPYC", scores, "AuthenticAMD AMD EPYC",
                                                   {"sse42": 5, "x64": 1})
    assert not variant_proof.emulation_took_effect(None, scores, None, dict(scores))
    assert variant_proof.emulation_took_effect(None, scores, "GenuineIntel", {"sse42": 5, "x64": 1})
