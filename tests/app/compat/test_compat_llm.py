"""The LLM actions as upstream documents them, on the real 270M GGUF through llama-cpp-python."""

from __future__ import annotations

import pytest

from cases import AGENTS
from gguf_metadata import add_string
from tea_helpers import assert_one_line_error, final_state, needs_llama, run_tea

pytestmark = needs_llama

LLM_CALL = """
name: llm-call
settings: {llm: {backend: auto, n_ctx: 512}}
nodes:
  - name: ask
    uses: llm.call
    with:
      model: gpt-4o-mini
      provider: auto
      messages:
        - {role: user, content: "Name a colour."}
      max_tokens: 6
      temperature: 0
    output: reply
"""
LLM_STREAM = LLM_CALL.replace("uses: llm.call", "uses: llm.stream")
API_AGENT = LLM_CALL.replace("backend: auto", "backend: api")
#: A chat template that ignores the conversation: its answers can only come from this template.
BANANA_TEMPLATE = ("{{ bos_token }}<start_of_turn>user\nReply with only the word banana.<end_of_turn>\n"
                   "<start_of_turn>model\n")


def test_llm_chat_with_messages_returns_upstreams_shape(gguf_model):
    state = final_state(run_tea("run", "-q", AGENTS / "llm-hello.yaml", env={"TEA_MODEL_PATH": str(gguf_model)}))
    answer = state["answer"]
    assert set(answer) == {"content", "model", "tokens_used", "usage", "backend"}
    assert answer["content"].strip() and (answer["backend"], answer["model"]) == ("local", gguf_model.name)
    assert answer["tokens_used"] == answer["usage"]["total_tokens"] > answer["usage"]["completion_tokens"] > 0


def test_llm_call_with_model_and_provider_uses_the_local_model(gguf_model, write_agent):
    reply = final_state(run_tea("run", "-q", write_agent(LLM_CALL), env={"TEA_MODEL_PATH": str(gguf_model)}))["reply"]
    assert (reply["backend"], reply["model"]) == ("local", gguf_model.name) and reply["content"].strip()


def test_llm_stream_shows_tokens_and_counts_chunks(gguf_model, write_agent):
    result = run_tea("run", write_agent(LLM_STREAM), env={"TEA_MODEL_PATH": str(gguf_model)})
    reply = final_state(result)["reply"]
    assert reply["streamed"] is True and reply["chunk_count"] > 0
    assert reply["content"] and reply["content"] in result.stderr


def test_gguf_option_beats_model_path_and_implies_local(gguf_model, write_agent, isolated_home):
    (isolated_home / "m.gguf").symlink_to(gguf_model)
    (isolated_home / "from-env.gguf").symlink_to(gguf_model)
    env = {"TEA_MODEL_PATH": str(isolated_home / "from-env.gguf")}
    for given in ("~/m.gguf", "$HOME/m.gguf"):
        reply = final_state(run_tea("run", "-q", write_agent(API_AGENT), "--gguf", given, env=env))["reply"]
        assert (reply["backend"], reply["model"]) == ("local", "m.gguf")


def test_backend_option_overrides_settings(gguf_model, write_agent, monkeypatch):
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    agent = write_agent(LLM_CALL)
    forced = run_tea("run", "-q", agent, "--gguf", gguf_model, "--backend", "api")
    assert_one_line_error(forced, "backend 'api' needs settings.llm.api_base")
    local = final_state(run_tea("run", "-q", agent, "--backend", "local", env={"TEA_MODEL_PATH": str(gguf_model)}))
    assert local["reply"]["backend"] == "local"


@pytest.fixture(scope="module")
def templated_model(gguf_model, tmp_path_factory):
    """The 270M GGUF (which has no chat template of its own) with BANANA_TEMPLATE in its metadata."""
    target = tmp_path_factory.mktemp("templated") / "templated.gguf"
    add_string(gguf_model, target, "tokenizer.chat_template", BANANA_TEMPLATE)
    return target


def test_the_ggufs_own_chat_template_is_applied(gguf_model, templated_model, write_agent):
    agent = write_agent(LLM_CALL.replace("Name a colour.", "What is 2+2?").replace("max_tokens: 6", "max_tokens: 12"))
    plain = final_state(run_tea("run", "-q", agent, "--gguf", gguf_model))["reply"]["content"]
    templated = final_state(run_tea("run", "-q", agent, "--gguf", templated_model))["reply"]["content"]
    assert "banana" in templated.lower() and "banana" not in plain.lower()


def test_failed_local_generation_returns_upstreams_error_shape(gguf_model, write_agent):
    too_long = LLM_CALL.replace("n_ctx: 512", "n_ctx: 64").replace('"Name a colour."', "\"{{ 'word ' * 200 }}\"")
    result = run_tea("run", write_agent(too_long), env={"TEA_MODEL_PATH": str(gguf_model)})
    reply = final_state(result)["reply"]
    assert reply["success"] is False and reply["error"].startswith("local generation failed")
    assert "warning: LLM call failed: local generation failed" in result.stderr
