"""Every user mistake: one stderr line naming the problem, a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest

from tea_helpers import EXAMPLES, assert_one_line_error, needs_llama, run_tea

CHAT = """
name: chat
settings:
  llm:
    backend: local
nodes:
  - name: ask
    uses: llm.chat
    with:
      prompt: hi
      max_tokens: 4
"""

BROKEN_AGENTS = {
    "malformed_yaml": ("name: x\nnodes:\n  - name: a\n    uses: [state.set\n", ["invalid YAML", "agent.yaml:"]),
    "not_a_mapping": ("- just\n- a list\n", ["agent.yaml:1:1", "must be a YAML mapping"]),
    "unknown_top_key": ("name: x\nnodez: []\n", ["agent.yaml:2:1", "unknown key 'nodez'"]),
    "unknown_node_key": ("nodes:\n  - name: a\n    uses: state.set\n    retries: 3\n",
                         ["agent.yaml:4:5", "unknown key 'retries'"]),
    "unknown_action": ("nodes:\n  - name: a\n    uses: web.scrape\n", ["agent.yaml:3:5", "unknown action 'web.scrape'"]),
    "unknown_param": ("nodes:\n  - name: a\n    uses: llm.chat\n    with: {prompt: x, temprature: 0}\n",
                      ["agent.yaml:4:5", "unknown parameter 'temprature'"]),
    "duplicate_key": ("nodes:\n  - name: a\n    name: b\n    uses: state.set\n", ["agent.yaml:3:5", "duplicate key"]),
    "edge_to_nowhere": ("nodes:\n  - name: a\n    uses: state.set\nedges:\n  - from: a\n    to: b\n",
                        ["agent.yaml:6:5", "unknown node 'b'"]),
    "goto_to_nowhere": ("nodes:\n  - name: a\n    uses: state.set\n    goto: c\n", ["agent.yaml:4:5", "unknown node 'c'"]),
    "bad_state_type": ("state_schema:\n  n: integer\nnodes:\n  - name: a\n    uses: state.set\n",
                       ["agent.yaml:2:3", "unknown type 'integer'"]),
    "bad_backend": ("settings:\n  llm:\n    backend: cloud\nnodes:\n  - name: a\n    uses: state.set\n",
                    ["agent.yaml:3:5", "backend"]),
}


@pytest.mark.parametrize("name", sorted(BROKEN_AGENTS))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_invalid_agent_is_reported_with_its_location(command, name, write_agent):
    text, fragments = BROKEN_AGENTS[name]
    args = ["run", "--quiet"] if command == "run" else ["validate"]
    result = run_tea(*args, write_agent(text))
    assert_one_line_error(result, *fragments)
    assert result.returncode == 2


def test_missing_agent_file(tmp_path):
    assert_one_line_error(run_tea("run", tmp_path / "nope.yaml"), "nope.yaml", "no such agent file")


def test_template_with_a_missing_key(write_agent):
    agent = write_agent("nodes:\n  - name: a\n    uses: state.set\n    with:\n      x: '{{ state.missing }}'\n")
    line = assert_one_line_error(run_tea("run", "--quiet", agent), "node 'a'", "missing key")
    assert "'missing'" in line


@pytest.mark.parametrize("given, fragment", [
    ("{not json", "--input is not JSON"),
    ("[1, 2]", "must be a JSON object, got list"),
    ('{"times": "three"}', "input 'times' must be int"),
    ("@/nonexistent/in.json", "cannot read"),
])
def test_bad_input_option(given, fragment):
    result = run_tea("run", "--quiet", EXAMPLES / "hello.yaml", "--input", given)
    assert_one_line_error(result, fragment)
    assert result.returncode == 2


@needs_llama
def test_missing_model_lists_every_place_looked(write_agent, tmp_path):
    result = run_tea("run", "--quiet", write_agent(CHAT), env={"TEA_MODEL_PATH": str(tmp_path / "gone.gguf")})
    line = assert_one_line_error(result, "no GGUF model found")
    for place in ("TEA_MODEL_PATH=", "gone.gguf (missing)", "params.model_path", "settings.llm.model_path",
                  "$APPDIR/usr/share/models", "tea/models"):
        assert place in line


@needs_llama
def test_file_that_is_not_gguf(write_agent, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html>not a model</html>")
    result = run_tea("run", "--quiet", write_agent(CHAT), env={"TEA_MODEL_PATH": str(fake)})
    assert_one_line_error(result, "model.gguf: not a GGUF model")


@needs_llama
def test_truncated_gguf(write_agent, tmp_path, gguf_model):
    truncated = tmp_path / "truncated.gguf"
    with gguf_model.open("rb") as source:
        truncated.write_bytes(source.read(1 << 20))
    result = run_tea("run", "--quiet", write_agent(CHAT), env={"TEA_MODEL_PATH": str(truncated)})
    assert_one_line_error(result, "truncated.gguf: llama.cpp cannot load this model")
