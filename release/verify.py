"""Checks of a built or downloaded AppImage: smoke (it starts) and functional (it runs every agent of
examples/ and gets the expected state; the LLM ones on its bundled model, the Prolog ones on its
bundled SWI-Prolog).

Every check runs the AppImage twice — through FUSE and with `--appimage-extract-and-run` — in a
scrubbed environment (no TEA_MODEL_PATH, no APPDIR), so the bundled model must be found by the
AppImage itself, exactly as on a user's machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import proc
from .config import REPO
from .errors import VerifyError

EXAMPLES = REPO / "examples"
LOCAL_CHAT = EXAMPLES / "llm" / "local-chat.yaml"
QUESTION = {"question": "What is 2+2?"}
INSTALL_HINT = "llama-cpp-python not installed. Install with: pip install the_edge_agent[llm-local]"
MODES = {"fuse": [], "extract-and-run": ["--appimage-extract-and-run"]}
SCRUBBED = ("TEA_MODEL_PATH", "APPDIR", "APPIMAGE", "APPIMAGE_EXTRACT_AND_RUN", "PYTHONPATH", "PYTHONHOME")


@dataclass(frozen=True)
class Example:
    """An agent of examples/ with its input and the exact values these keys of its final state must have."""

    path: Path
    inputs: dict
    expected: dict


@dataclass(frozen=True)
class LlmExample:
    """An LLM agent of examples/; `reply` picks {answer, backend, model} out of its final state."""

    path: Path
    inputs: dict
    reply: Callable[[dict], dict]


def _chat_result(state: dict) -> dict:
    """hello-world keeps llm.chat's whole result under `answer`."""
    result = state.get("answer") if isinstance(state.get("answer"), dict) else {}
    return {"answer": result.get("content", ""), "backend": result.get("backend"), "model": result.get("model", "")}


PLAIN_EXAMPLES = (
    Example(EXAMPLES / "hello.yaml", {"name": "release"}, {"message": "Hello, release!"}),
    Example(EXAMPLES / "inline-code.yaml", {"text": "To be, or not to be"},
            {"words": 6, "distinct": 4, "top_words": ["to", "be"], "summary": '{"longest": 3, "mean_length": 2.33}'}),
    Example(EXAMPLES / "branching.yaml", {"query": "My bill is wrong"}, {"route": "billing team", "attempts": 2}),
    Example(EXAMPLES / "parallel.yaml", {"text": "Edge agents run anywhere"},
            {"report": "4 words, 21 letters, initials EARA", "branches": ["count_letters", "count_words", "initials"]}),
)
PROLOG_EXAMPLES = (
    Example(EXAMPLES / "prolog" / "simple-prolog-agent.yaml", {"value": 21},
            {"doubled": 42, "result": 52, "category": "medium"}),
    Example(EXAMPLES / "prolog" / "neurosymbolic.yaml", {"ticket": "Please refund the double charge", "received_hour": 20},
            {"category": "billing", "decision": "auto_reply", "respond_within_hours": 12,
             "summary": "billing ticket (0.90): auto_reply within 12 h, because routine request"}),
)
LLM_EXAMPLES = (
    LlmExample(LOCAL_CHAT, QUESTION, lambda state: state),
    LlmExample(EXAMPLES / "llm" / "hello-world.yaml", {}, _chat_result),
)


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


def run_agent(command: list[str], agent: Path, inputs: dict, *, env: dict[str, str] | None = None,
              silent: bool = False) -> dict:
    """The final state; with `silent`, a run that writes anything to stderr (it has --quiet) fails."""
    done = run_tea(command, ["run", str(agent), "--input", json.dumps(inputs), "--quiet"], env=env)
    what = f"{' '.join(command)} run {agent.name}"
    state = final_state(done, what)
    if silent and done.stderr.strip():
        raise VerifyError(f"{what} --quiet wrote to stderr: {done.stderr.strip().splitlines()[0][:200]!r}")
    return state


def final_state(done: subprocess.CompletedProcess, what: str) -> dict:
    """The JSON object a successful `tea run` prints; VerifyError naming `what` otherwise."""
    return parse_state(expect(done, what), what)


def parse_state(output: str, what: str) -> dict:
    """The final state `tea run` printed."""
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


def check_state(state: dict, example: Example, where: str) -> None:
    """The example's final state has the expected values."""
    wrong = {key: state.get(key) for key, value in example.expected.items() if state.get(key) != value}
    if wrong:
        raise VerifyError(f"{where}: {example.path.name} gave {wrong}, expected "
                          f"{ {key: example.expected[key] for key in wrong} }")


def check_plain_examples(command: list[str], where: str, *, prolog: bool) -> list[str]:
    """Every non-LLM example (and with `prolog` every Prolog one) gives its expected final state;
    returns the names checked."""
    examples = PLAIN_EXAMPLES + (PROLOG_EXAMPLES if prolog else ())
    for example in examples:
        check_state(run_agent(command, example.path, example.inputs, silent=True), example, where)
    return [example.path.name for example in examples]


def functional_llm(appimage: Path, model_filename: str | None, reference: list[str] | None = None,
                   reference_env: dict[str, str] | None = None, *, prolog: bool = True) -> dict:
    """Every example runs; the LLM ones answer from the bundled model, identically in every mode and,
    at temperature 0, identically to the source-installed tea on the same model (the freeze changed nothing)."""
    answers: dict[str, dict[str, str]] = {example.path.name: {} for example in LLM_EXAMPLES}
    for mode in MODES:
        command, where = appimage_command(appimage, mode), f"{appimage.name} ({mode})"
        checked = check_plain_examples(command, where, prolog=prolog)
        for example in LLM_EXAMPLES:
            reply = example.reply(run_agent(command, example.path, example.inputs))
            check_llm_state(reply, model_filename, f"{where} {example.path.name}")
            answers[example.path.name][mode] = reply["answer"]
    for example in LLM_EXAMPLES:
        if reference is not None:
            state = run_agent(reference, example.path, example.inputs, env=clean_env(**reference_env))
            answers[example.path.name]["source"] = example.reply(state)["answer"]
        if len(set(answers[example.path.name].values())) != 1:
            raise VerifyError(f"{appimage.name} {example.path.name}: temperature-0 answers differ: "
                              f"{answers[example.path.name]}")
    local_chat = answers[LOCAL_CHAT.name]
    return {"answer": local_chat["fuse"], "compared": sorted(local_chat),
            "checked": checked + [example.path.name for example in LLM_EXAMPLES]}


def functional_plain(appimage: Path, *, prolog: bool = True) -> dict:
    """The plain flavor runs the non-LLM examples and refuses the LLM ones with the documented hint."""
    for mode in MODES:
        command, where = appimage_command(appimage, mode), f"{appimage.name} ({mode})"
        checked = check_plain_examples(command, where, prolog=prolog)
        for example in LLM_EXAMPLES:
            done = run_tea(command, ["run", str(example.path), "--input", json.dumps(example.inputs)])
            if done.returncode == 0 or INSTALL_HINT not in done.stderr:
                raise VerifyError(f"{where}: {example.path.name} must fail with {INSTALL_HINT!r}, "
                                  f"got exit {done.returncode}: {done.stderr.strip()[-200:]!r}")
    return {"checked": checked + ["llm install hint"]}
