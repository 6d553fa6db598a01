"""Local inference end to end: the real gemma-3-270m GGUF through llama-cpp-python."""

from __future__ import annotations

from pathlib import Path

from tea_helpers import EXAMPLES, final_state, needs_llama, run_tea

pytestmark = needs_llama
LOCAL_CHAT = EXAMPLES / "llm" / "local-chat.yaml"
QUESTION = '{"question": "What is 2+2?"}'

TWO_CALLS = """
name: two-calls
settings: {llm: {backend: auto, n_ctx: 512}}
nodes:
  - {name: first, uses: llm.call, output: first,
     with: {messages: [{role: user, content: Name a colour.}], temperature: 0, seed: 1, max_tokens: 8}}
  - {name: second, uses: llm.call, output: second,
     with: {messages: [{role: user, content: Name an animal.}], temperature: 0, seed: 1, max_tokens: 8}}
"""


def ask(gguf_model, *extra: str):
    return run_tea("run", LOCAL_CHAT, "--input", QUESTION, *extra, env={"TEA_MODEL_PATH": str(gguf_model)})


def test_local_chat_answers_on_the_local_backend(gguf_model):
    result = ask(gguf_model)
    state = final_state(result)
    assert state["backend"] == "local"
    assert state["model"] == gguf_model.name
    assert state["answer"].strip()
    assert "Exception ignored" not in result.stderr and "TypeError" not in result.stderr


def test_temperature_zero_is_deterministic(gguf_model):
    assert final_state(ask(gguf_model, "--quiet"))["answer"] == final_state(ask(gguf_model, "--quiet"))["answer"]


def test_stream_prints_the_tokens_on_stderr(gguf_model):
    result = ask(gguf_model, "--quiet", "--stream")
    answer = final_state(result)["answer"]
    assert answer and answer in result.stderr


def test_model_found_in_appdir(gguf_model, tmp_path):
    models = tmp_path / "AppDir" / "usr" / "share" / "models"
    models.mkdir(parents=True)
    (models / "bundled.gguf").symlink_to(gguf_model)
    result = run_tea("run", "--quiet", LOCAL_CHAT, "--input", QUESTION, env={"APPDIR": str(tmp_path / "AppDir")})
    assert final_state(result)["model"] == "bundled.gguf"


def test_llm_call_twice_with_auto_backend(gguf_model, write_agent):
    result = run_tea("run", "--quiet", write_agent(TWO_CALLS), env={"TEA_MODEL_PATH": str(gguf_model)})
    state = final_state(result)
    for key in ("first", "second"):
        assert state[key]["backend"] == "local"
        assert state[key]["usage"]["completion_tokens"] > 0
        assert set(state[key]) == {"content", "usage", "model", "backend", "tokens_used"}


def test_models_reports_the_registered_cpu_variants(gguf_model):
    lines = run_tea("models", env={"TEA_MODEL_PATH": str(gguf_model)}).stdout.splitlines()
    assert f"model: {gguf_model}" in lines
    assert lines[-2].startswith("llama-cpp-python: importable (0.3")
    variants = lines[-1].removeprefix("ggml CPU variants: ")
    assert list(Path(variants).glob("libggml-cpu-*.so")), lines[-1]
