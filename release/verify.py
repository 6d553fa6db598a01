"""Checks of a built or downloaded AppImage: smoke (it starts) and functional (it does its job).

Every check runs the AppImage twice — through FUSE and with `--appimage-extract-and-run` — in a
scrubbed environment (no TEA_MODEL_PATH, no APPDIR), so the bundled model must be found by the
AppImage itself, exactly as on a user's machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from .config import REPO
from .errors import VerifyError

LOCAL_CHAT = REPO / "examples" / "llm" / "local-chat.yaml"
PLAIN_EXAMPLE = REPO / "examples" / "hello.yaml"
QUESTION = {"question": "What is 2+2?"}
INSTALL_HINT = "llama-cpp-python not installed. Install with: pip install the_edge_agent[llm-local]"
MODES = {"fuse": [], "extract-and-run": ["--appimage-extract-and-run"]}
SCRUBBED = ("TEA_MODEL_PATH", "APPDIR", "APPIMAGE", "APPIMAGE_EXTRACT_AND_RUN", "PYTHONPATH", "PYTHONHOME")


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
    return {**env, **extra}


def run_tea(command: list[str], args: list[str], *, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout,
                              env=env or clean_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise VerifyError(f"{' '.join(command)} {' '.join(args)} did not finish in {timeout:.0f} s") from None


def expect(done: subprocess.CompletedProcess, what: str, wanted: str | None = None) -> str:
    output = done.stdout.strip()
    if done.returncode != 0 or (wanted is not None and output != wanted):
        detail = (done.stderr.strip().splitlines() or [""])[-1]
        raise VerifyError(f"{what}: exit {done.returncode}, printed {output[:200]!r}"
                          + (f", expected {wanted!r}" if wanted is not None else "") + (f" ({detail})" if detail else ""))
    return output


def appimage_command(appimage: Path, mode: str) -> list[str]:
    return [str(appimage.absolute()), *MODES[mode]]


def smoke(appimage: Path, version: str) -> dict[str, float]:
    """`--version` and `--impl` answer correctly in every mode; returns seconds per mode."""
    seconds = {}
    for mode in MODES:
        started = time.monotonic()
        command = appimage_command(appimage, mode)
        expect(run_tea(command, ["--version"]), f"{appimage.name} --version ({mode})", f"tea {version}")
        expect(run_tea(command, ["--impl"]), f"{appimage.name} --impl ({mode})", "python")
        seconds[mode] = round(time.monotonic() - started, 2)
    return seconds


def run_agent(command: list[str], agent: Path, inputs: dict, *, env: dict[str, str] | None = None) -> dict:
    done = run_tea(command, ["run", str(agent), "--input", json.dumps(inputs), "--quiet"], env=env)
    return final_state(done, f"{' '.join(command)} run {agent.name}")


def final_state(done: subprocess.CompletedProcess, what: str) -> dict:
    """The JSON object a successful `tea run` prints; VerifyError naming `what` otherwise."""
    output = expect(done, what)
    try:
        state = json.loads(output)
    except ValueError:
        raise VerifyError(f"{what} printed no JSON final state: {output[:200]!r}") from None
    if not isinstance(state, dict):
        raise VerifyError(f"{what}: final state is not a JSON object: {output[:200]!r}")
    return state


def check_llm_state(state: dict, model_filename: str | None, where: str) -> None:
    """backend local, the bundled model (any GGUF when the name is unknown), a non-empty answer."""
    problems = []
    if state.get("backend") != "local":
        problems.append(f"backend is {state.get('backend')!r}, not 'local'")
    used = Path(str(state.get("model", ""))).name
    if used != model_filename if model_filename else not used.endswith(".gguf"):
        problems.append(f"model is {state.get('model')!r}, not the bundled {model_filename or 'GGUF'}")
    if not str(state.get("answer", "")).strip():
        problems.append("the answer is empty")
    if problems:
        raise VerifyError(f"{where}: " + "; ".join(problems))


def functional_llm(appimage: Path, model_filename: str | None, reference: list[str] | None = None,
                   reference_env: dict[str, str] | None = None) -> dict:
    """local-chat.yaml answers from the bundled model, identically in every mode and, at temperature 0,
    identically to the source-installed tea on the same model (the freeze changed nothing)."""
    answers = {}
    for mode in MODES:
        state = run_agent(appimage_command(appimage, mode), LOCAL_CHAT, QUESTION)
        check_llm_state(state, model_filename, f"{appimage.name} ({mode})")
        answers[mode] = state["answer"]
    if reference is not None:
        expected = run_agent(reference, LOCAL_CHAT, QUESTION, env=clean_env(**reference_env))
        answers["source"] = expected["answer"]
    if len(set(answers.values())) != 1:
        raise VerifyError(f"{appimage.name}: temperature-0 answers differ: {answers}")
    return {"answer": answers["fuse"], "compared": sorted(answers)}


def functional_plain(appimage: Path) -> dict:
    """The plain flavor runs a non-LLM agent and refuses LLM work with the documented hint."""
    for mode in MODES:
        run_agent(appimage_command(appimage, mode), PLAIN_EXAMPLE, {"name": "release"})
        done = run_tea(appimage_command(appimage, mode), ["run", str(LOCAL_CHAT), "--input", json.dumps(QUESTION)])
        if done.returncode == 0 or INSTALL_HINT not in done.stderr:
            raise VerifyError(f"{appimage.name} ({mode}): an LLM agent must fail with {INSTALL_HINT!r}, "
                              f"got exit {done.returncode}: {done.stderr.strip()[-200:]!r}")
    return {"checked": ["hello.yaml", "llm install hint"]}
