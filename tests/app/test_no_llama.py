"""AC-13: in a real environment without llama-cpp-python, everything but local LLM calls works; without
janus-swi (SWI-Prolog's binding), everything but Prolog nodes works, and those say how to get it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tea_helpers import EXAMPLES, INSTALL_HINT, PROLOG_INSTALL_HINT, final_state, run_tea

pytestmark = pytest.mark.slow


def shared_dir(tmp_path_factory) -> Path:
    """A directory shared by the xdist workers of this run only (never reused by a later run)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_bare_venv(root: Path, wheelhouse: Path) -> Path:
    """Offline: the package and its two dependencies come from the wheelhouse `invoke test` made."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
                    "--disable-pip-version-check", "--no-index", "--find-links", wheelhouse, "the_edge_agent"],
                   check=True)
    return venv


@pytest.fixture(scope="session")
def bare_tea(tmp_path_factory):
    """`tea` from a fresh venv holding only the package and its two dependencies (built once per run)."""
    wheelhouse = os.environ.get("TEA_TEST_WHEELHOUSE")
    if not wheelhouse:
        pytest.skip("TEA_TEST_WHEELHOUSE is not set: `invoke test` builds the offline wheelhouse these tests use")
    root = shared_dir(tmp_path_factory) / "no-llama"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        venv = root / "venv"
        if not (venv / "bin" / "tea").exists():
            build_bare_venv(root, Path(wheelhouse))
    for module in ("llama_cpp", "janus_swi"):
        check = subprocess.run([venv / "bin" / "python", "-c", f"import {module}"], capture_output=True)
        assert check.returncode != 0, f"{module} must not be importable in the bare environment"
    return venv / "bin" / "tea"


def test_fast_flags_and_validate_work(bare_tea):
    assert run_tea("--version", "--impl", tea=bare_tea).stdout.endswith(" (python)\n")
    assert run_tea("validate", EXAMPLES / "llm" / "local-chat.yaml", tea=bare_tea).returncode == 0


def test_non_llm_agent_runs(bare_tea):
    assert final_state(run_tea("run", "--quiet", EXAMPLES / "hello.yaml", tea=bare_tea))["message"] == "Hello, world!"


def test_local_llm_call_prints_exactly_the_install_hint(bare_tea, gguf_model):
    result = run_tea("run", "--quiet", EXAMPLES / "llm" / "local-chat.yaml", "--input", '{"question": "hi"}',
                     tea=bare_tea, env={"TEA_MODEL_PATH": str(gguf_model)})
    assert (result.returncode, result.stdout, result.stderr) == (1, "", INSTALL_HINT + "\n")


def test_auto_backend_names_both_options(bare_tea, write_agent, monkeypatch):
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    agent = write_agent("nodes:\n  - name: a\n    uses: llm.chat\n    with: {prompt: hi}\n")
    result = run_tea("run", "--quiet", agent, tea=bare_tea)
    assert result.returncode == 1
    assert "pip install the_edge_agent[llm-local]" in result.stderr and "OPENAI_API_BASE" in result.stderr


def test_models_says_llama_is_missing(bare_tea):
    assert "llama-cpp-python: not installed" in run_tea("models", tea=bare_tea).stdout


def test_prolog_node_prints_the_install_hint(bare_tea, write_agent):
    agent = write_agent("nodes:\n  - name: reason\n    language: prolog\n    run: return(answer, 42).\n")
    result = run_tea("run", "--quiet", agent, tea=bare_tea)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"{agent}:2: node 'reason': {PROLOG_INSTALL_HINT}\n"


def test_a_prolog_agent_still_validates(bare_tea):
    assert run_tea("validate", EXAMPLES / "prolog" / "neurosymbolic.yaml", tea=bare_tea).returncode == 0
