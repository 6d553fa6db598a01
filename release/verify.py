"""Checks of a built or downloaded AppImage: smoke (it starts) and functional (it does its job).

Every check runs the AppImage twice — through FUSE and with `--appimage-extract-and-run` — in a
scrubbed environment (no TEA_MODEL_PATH, no APPDIR), so the bundled model must be found by the
AppImage itself, exactly as on a user's machine.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from . import proc
from .config import REPO
from .errors import VerifyError

LOCAL_CHAT = REPO / "examples" / "llm" / "local-chat.yaml"
PLAIN_EXAMPLE = REPO / "examples" / "hello.yaml"
QUESTION = {"question": "What is 2+2?"}
INSTALL_HINT = "llama-cpp-python not installed. Install with: pip install the_edge_agent[llm-local]"
MODES = {"fuse": [], "extract-and-run": ["--appimage-extract-and-run"]}
Runner = Callable[[list[str]], subprocess.CompletedProcess]  # runs the AppImage with these arguments
SCRUBBED = ("TEA_MODEL_PATH", "APPDIR", "APPIMAGE", "APPIMAGE_EXTRACT_AND_RUN", "PYTHONPATH", "PYTHONHOME")


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
    return {**env, **extra}


def run_tea(command: list[str], args: list[str], *, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return proc.run([*command, *args], what=Path(command[0]).name, env=env or clean_env(), clean_env=True,
                    timeout=timeout, check=False, error=VerifyError)


def expect(done: subprocess.CompletedProcess, what: str, wanted: str | None = None) -> str:
    output = done.stdout.strip()
    if done.returncode != 0 or (wanted is not None and output != wanted):
        detail = (done.stderr.strip().splitlines() or [""])[-1]
        raise VerifyError(f"{what}: exit {done.returncode}, printed {output[:200]!r}"
                          + (f", expected {wanted!r}" if wanted is not None else "") + (f" ({detail})" if detail else ""))
    return output


def appimage_command(appimage: Path, mode: str) -> list[str]:
    return [str(appimage.absolute()), *MODES[mode]]


def runners(appimage: Path) -> dict[str, Runner]:
    """Run the AppImage with given arguments, one way per mode, on this machine."""
    return {mode: functools.partial(run_tea, appimage_command(appimage, mode)) for mode in MODES}


def smoke_with(run: Runner, where: str, version: str) -> None:
    """`--version` and `--impl` answer exactly."""
    expect(run(["--version"]), f"{where} --version", f"tea {version}")
    expect(run(["--impl"]), f"{where} --impl", "python")


def smoke(appimage: Path, version: str) -> dict[str, float]:
    """smoke_with in every mode; returns seconds per mode."""
    seconds = {}
    for mode, run in runners(appimage).items():
        started = time.monotonic()
        smoke_with(run, f"{appimage.name} ({mode})", version)
        seconds[mode] = round(time.monotonic() - started, 2)
    return seconds


def agent_state(run: Runner, where: str, agent: str, inputs: dict) -> dict:
    """The final state `tea run <agent> --quiet` prints as JSON."""
    output = expect(run(["run", agent, "--input", json.dumps(inputs), "--quiet"]), f"{where} run {Path(agent).name}")
    try:
        state = json.loads(output)
    except ValueError:
        raise VerifyError(f"{where}: run {Path(agent).name} printed no JSON final state: {output[:200]!r}") from None
    if not isinstance(state, dict):
        raise VerifyError(f"{where}: run {Path(agent).name}: final state is not a JSON object: {output[:200]!r}")
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


def llm_answer(run: Runner, where: str, model_filename: str | None, agent: str = str(LOCAL_CHAT)) -> str:
    """local-chat.yaml's answer from the bundled model."""
    state = agent_state(run, where, agent, QUESTION)
    check_llm_state(state, model_filename, where)
    return state["answer"]


def same_answers(answers: dict[str, str], what: str) -> str:
    """At temperature 0 every run gives the one answer; returns it."""
    if len(set(answers.values())) != 1:
        raise VerifyError(f"{what}: temperature-0 answers differ: {answers}")
    return next(iter(answers.values()))


def functional_llm(appimage: Path, model_filename: str | None, reference: list[str] | None = None,
                   reference_env: dict[str, str] | None = None) -> dict:
    """local-chat.yaml answers from the bundled model, identically in every mode and, at temperature 0,
    identically to the source-installed tea on the same model (the freeze changed nothing)."""
    answers = {mode: llm_answer(run, f"{appimage.name} ({mode})", model_filename)
               for mode, run in runners(appimage).items()}
    if reference is not None:
        source = functools.partial(run_tea, reference, env=clean_env(**(reference_env or {})))
        answers["source"] = agent_state(source, "the source tea", str(LOCAL_CHAT), QUESTION)["answer"]
    return {"answer": same_answers(answers, appimage.name), "compared": sorted(answers)}


def plain_with(run: Runner, where: str, hello: str = str(PLAIN_EXAMPLE), local_chat: str = str(LOCAL_CHAT)) -> None:
    """The plain flavor runs a non-LLM agent and refuses LLM work with the documented hint."""
    agent_state(run, where, hello, {"name": "release"})
    done = run(["run", local_chat, "--input", json.dumps(QUESTION)])
    if done.returncode == 0 or INSTALL_HINT not in done.stderr:
        raise VerifyError(f"{where}: an LLM agent must fail with {INSTALL_HINT!r}, "
                          f"got exit {done.returncode}: {done.stderr.strip()[-200:]!r}")


def functional_plain(appimage: Path) -> dict:
    for mode, run in runners(appimage).items():
        plain_with(run, f"{appimage.name} ({mode})")
    return {"checked": ["hello.yaml", "llm install hint"]}


def refused_with(run: Runner, where: str, message: str) -> None:
    """Below its glibc floor the AppImage says exactly `message` on stderr and fails: no loader error."""
    done = run(["--version"])
    if done.returncode == 0 or done.stderr.strip() != message or done.stdout.strip():
        raise VerifyError(f"{where}: expected exit != 0 and only {message!r} on stderr, got exit "
                          f"{done.returncode}, stderr {done.stderr.strip()[-200:]!r}, stdout {done.stdout.strip()[:80]!r}")
