"""The run-time guard: a CPU variant that crashes never takes a user's run down (real model, real libraries).

A planted variant library (tests/planted_variant.c) outscores every real variant, so ggml alone would
pick it and die with SIGILL; tea must check it in a child process, skip it with one notice line, give
the right answer, and remember the choice keyed by the CPU, the variant set and the model.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tea_helpers import EXAMPLES, final_state, needs_llama, run_tea
from the_edge_agent.errors import LlmError
from the_edge_agent.ggml_backends import Variant
from the_edge_agent.variant_guard import (FORCE_ENV, cpuinfo_identity, forced_variant, read_record, record_key,
                                          write_record, Selection)

LOCAL_CHAT = EXAMPLES / "llm" / "local-chat.yaml"
QUESTION = '{"question": "What is 2+2?"}'
NOTICE = "tea: CPU variant 'planted' (SIGILL) crashed in a test run; using "


def real_variants() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    return Path(spec.origin).parent.parent / "bin"


def ask(gguf_model: Path, variants: Path, **env: str):
    return run_tea("run", LOCAL_CHAT, "--input", QUESTION, "--quiet",
                   env={"TEA_MODEL_PATH": str(gguf_model), "TEA_GGML_BACKEND_DIR": str(variants), **env})


def records(home: Path) -> list[Path]:
    return sorted((home / ".cache" / "tea" / "cpu-variant").glob("*.json"))


@pytest.fixture(scope="module")
def reference_answer(gguf_model, tmp_path_factory) -> str:
    """The answer with the real variants only (ggml's own pick, checked once in a home of its own)."""
    home = tmp_path_factory.mktemp("reference-home")
    return final_state(run_tea("run", LOCAL_CHAT, "--input", QUESTION, "--quiet",
                               env={"TEA_MODEL_PATH": str(gguf_model), "HOME": str(home),
                                    "XDG_CACHE_HOME": str(home / ".cache")}))["answer"]


# --- run time, real model --------------------------------------------------------------------------

@needs_llama
@pytest.mark.slow
def test_planted_variant_is_skipped_with_one_notice_and_remembered(gguf_model, planted_variant, variant_dir,
                                                                   reference_answer, isolated_home):
    variants = variant_dir(real_variants(), planted_variant)
    first = ask(gguf_model, variants)
    assert final_state(first)["answer"] == reference_answer
    notice = first.stderr.splitlines()
    assert len(notice) == 1 and notice[0].startswith(NOTICE), first.stderr
    assert FORCE_ENV in notice[0]
    [record] = records(isolated_home)
    assert json.loads(record.read_text())["rejected"] == {"planted": "SIGILL"}
    second = ask(gguf_model, variants)  # remembered: no second check, so no second notice
    assert final_state(second)["answer"] == reference_answer and second.stderr == ""


@needs_llama
@pytest.mark.slow
def test_a_changed_variant_set_is_checked_again(gguf_model, planted_variant, variant_dir,
                                               reference_answer, isolated_home, tmp_path):
    variants = variant_dir(real_variants(), planted_variant)
    assert ask(gguf_model, variants).stderr.startswith(NOTICE)
    another = tmp_path / "libggml-cpu-planted2.so"
    shutil.copy(planted_variant, another)
    (variants / another.name).symlink_to(another)
    grown = ask(gguf_model, variants)
    assert final_state(grown)["answer"] == reference_answer
    assert "'planted' (SIGILL)" in grown.stderr and "'planted2' (SIGILL)" in grown.stderr
    assert len(records(isolated_home)) == 2


@needs_llama
def test_forced_variant_skips_the_check(gguf_model, planted_variant, variant_dir, isolated_home):
    variants = variant_dir(real_variants(), planted_variant)
    assert ask(gguf_model, variants, **{FORCE_ENV: "planted"}).returncode == -4  # SIGILL: forced means forced
    assert records(isolated_home) == []
    doctor = run_tea("doctor", "--json", env={"TEA_GGML_BACKEND_DIR": str(variants), FORCE_ENV: "haswell"})
    assert json.loads(doctor.stdout)["selected"] == {"name": "haswell", "how": f"forced by {FORCE_ENV}"}


@needs_llama
def test_forcing_an_unknown_variant_is_one_line(gguf_model):
    result = ask(gguf_model, real_variants(), **{FORCE_ENV: "pentium"})
    assert result.returncode == 1 and "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert f"node 'chat': {FORCE_ENV}=pentium: no such CPU variant (runnable here: " in result.stderr


@needs_llama
def test_doctor_reports_cpu_variants_and_check(gguf_model, planted_variant, variant_dir, isolated_home):
    variants = variant_dir(real_variants(), planted_variant)
    env = {"TEA_MODEL_PATH": str(gguf_model), "TEA_GGML_BACKEND_DIR": str(variants)}
    before = json.loads(run_tea("doctor", "--json", env=env).stdout)
    assert before["variants"][0] == {"name": "planted", "score": 1 << 20, "runnable": True, "crashed": None}
    assert before["selected"]["name"] == "planted" and "not checked" in before["selected"]["how"]
    assert "avx2" in before["cpu"]["features"] + before["cpu"]["missing"]
    checked = run_tea("doctor", "--check", env=env)
    assert checked.returncode == 0, checked.stderr
    assert "planted" in checked.stdout and "crashed (SIGILL)" in checked.stdout
    after = json.loads(run_tea("doctor", "--json", env=env).stdout)
    assert after["selected"]["name"] != "planted" and after["selected"]["how"].startswith("remembered from ")


def test_doctor_check_needs_a_model():
    result = run_tea("doctor", "--check")
    assert result.returncode == 1 and result.stderr.startswith("tea doctor --check needs a model")


# --- the pieces, on real files -----------------------------------------------------------------------

def library(directory: Path, name: str, content: bytes = b"\x7fELF") -> Variant:
    path = directory / f"libggml-cpu-{name}.so"
    path.write_bytes(content)
    return Variant(name, path, 10)


def test_record_key_follows_the_variant_set_and_the_model(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    variants = [library(tmp_path, "haswell"), library(tmp_path, "zen4")]
    key = record_key(variants, model)
    assert record_key(list(variants), model) == key
    assert record_key(variants[:1], model) != key
    variants[1].path.write_bytes(b"\x7fELF changed")
    assert record_key(variants, model) != key
    other = tmp_path / "n.gguf"
    other.write_bytes(b"GGUF")
    assert record_key(variants, other) != record_key(variants, model)


def test_record_round_trip_and_refusals(tmp_path):
    haswell = library(tmp_path, "haswell")
    path = tmp_path / "cache" / "record.json"
    write_record(path, Selection(haswell, "checked", {"planted": "SIGILL"}), tmp_path / "m.gguf")
    remembered = read_record(path, [haswell])
    assert (remembered.variant, remembered.rejected) == (haswell, {"planted": "SIGILL"})
    assert read_record(path, [library(tmp_path, "zen4")]) is None  # a variant no longer runnable here
    path.write_text("not json")
    assert read_record(path, [haswell]) is None
    assert not list(path.parent.glob(".*partial"))


def test_forced_variant_must_exist_and_run_here(tmp_path):
    variants = [library(tmp_path, "haswell"), Variant("zen4", tmp_path / "z", 0)]
    assert forced_variant(variants, "haswell").name == "haswell"
    with pytest.raises(LlmError, match="no such CPU variant"):
        forced_variant(variants, "pentium")
    with pytest.raises(LlmError, match="lacks instructions that variant needs"):
        forced_variant(variants, "zen4")


def test_cpuinfo_identity_reads_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\ncpu MHz\t: 2100.0\n"
                       "flags\t\t: sse4_2 avx2 amx_tile\n\nprocessor\t: 1\nmodel name\t: Other\n")
    assert cpuinfo_identity(cpuinfo) == {"vendor_id": "GenuineIntel", "model name": "Xeon",
                                         "flags": "sse4_2 avx2 amx_tile"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0c\n\n")
    assert cpuinfo_identity(arm) == {"Features": "fp asimd asimddp", "CPU part": "0xd0c"}


@needs_llama
def test_a_broken_model_is_not_blamed_on_the_cpu_variant(tmp_path, isolated_home):
    """The check's child fails without a signal: inconclusive, so the real load reports the real problem."""
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 4096)
    result = ask(broken, real_variants())
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "llama.cpp cannot load this model" in result.stderr and "crashed" not in result.stderr
    assert records(isolated_home) == []
