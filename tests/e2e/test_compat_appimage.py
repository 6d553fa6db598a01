"""Upstream agents run unchanged through the frozen AppImages too: a representative subset of the
compatibility cases (tests/app/compat) through the plain AppImage, the LLM ones through the LLM AppImage
on its bundled model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app_modules import APP_TESTS, load

pytestmark = pytest.mark.slow
language = load(APP_TESTS / "compat" / "test_compat_language.py")
llm = load(APP_TESTS / "compat" / "test_compat_llm.py")
helpers = load(APP_TESTS / "tea_helpers.py")
gguf_metadata = load(APP_TESTS / "gguf_metadata.py")
FROZEN_SUBSET = {"run_globals", "run_without_return", "run_imports_stdlib", "steps", "while_loop",
                 "uses_with_output", "goto_loop_gives_up", "when_all_forms_true", "when_all_forms_false",
                 "edge_condition_when_false", "two_matching_edges_first_wins", "parallel_fan_in", "templates",
                 "unimplemented_action_not_run"}
SUBSET = [case for case in language.CASES if case.id in FROZEN_SUBSET]


def test_the_subset_names_real_cases():
    assert {case.id for case in SUBSET} == FROZEN_SUBSET


@pytest.mark.parametrize("case", SUBSET, ids=[case.id for case in SUBSET])
def test_documented_feature_through_the_plain_appimage(case, plain_appimage):
    language.run_case(case, tea=plain_appimage)


def test_llm_chat_messages_on_the_bundled_model(llm_appimage):
    result = helpers.run_tea("run", "-q", language.CASES[0].path.with_name("llm-hello.yaml"), tea=llm_appimage)
    answer = helpers.final_state(result)["answer"]
    assert (answer["backend"], answer["model"]) == ("local", "gemma-3-270m-q4_k_m.gguf")
    assert answer["content"].strip() and answer["tokens_used"] > 0


def _agent(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_gguf_option_and_the_ggufs_chat_template_in_the_appimage(llm_appimage, tmp_path):
    """--gguf beats the bundled model, and the frozen llama-cpp-python applies that GGUF's own template."""
    templated = tmp_path / "templated.gguf"
    gguf_metadata.add_string(Path(os.environ["TEA_TEST_MODEL"]), templated, "tokenizer.chat_template",
                             llm.BANANA_TEMPLATE)
    agent = _agent(tmp_path, llm.LLM_CALL.replace("Name a colour.", "What is 2+2?").replace("max_tokens: 6", "max_tokens: 12"))
    reply = helpers.final_state(helpers.run_tea("run", "-q", agent, "--gguf", templated, tea=llm_appimage))["reply"]
    assert reply["model"] == "templated.gguf" and "banana" in reply["content"].lower()


def test_plain_appimage_fails_an_llm_node_only_when_it_runs(plain_appimage, tmp_path):
    """backend auto and no llama-cpp-python, no endpoint: the one line names both ways out."""
    agent = _agent(tmp_path, llm.LLM_CALL)
    assert helpers.run_tea("validate", agent, tea=plain_appimage).returncode == 0
    helpers.assert_one_line_error(helpers.run_tea("run", "-q", agent, tea=plain_appimage),
                                  "node 'ask': no LLM backend available", "pip install the_edge_agent[llm-local]",
                                  "OPENAI_API_BASE")
