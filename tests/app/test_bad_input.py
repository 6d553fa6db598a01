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
    "no_nodes": ("name: x\nnodez: []\n", ["agent.yaml:", "'nodes' must be a non-empty list"]),
    "duplicate_key": ("nodes:\n  - name: a\n    name: b\n    uses: state.set\n", ["agent.yaml:3:5", "duplicate key"]),
    "edge_to_nowhere": ("nodes:\n  - name: a\n    uses: state.set\nedges:\n  - from: a\n    to: b\n",
                        ["agent.yaml:6:5", "unknown node 'b'"]),
    "goto_to_nowhere": ("nodes:\n  - name: a\n    uses: state.set\n    goto: c\n", ["agent.yaml:4:5", "unknown node 'c'"]),
    "bad_backend": ("settings:\n  llm:\n    backend: cloud\nnodes:\n  - name: a\n    uses: state.set\n",
                    ["agent.yaml:3:5", "backend"]),
    "python_syntax": ("nodes:\n  - name: a\n    run: |\n      x = 1\n      return {'x': (x}\n",
                      ["agent.yaml:3:5", "Python syntax error at line 5"]),
    "bad_when": ("nodes:\n  - name: a\n  - name: b\nedges:\n  - from: a\n    to: b\n    when: \"{{ state.x == }}\"\n",
                 ["agent.yaml:7:5", "is not a valid expression"]),
    "bad_goto_if": ("nodes:\n  - name: a\n    goto:\n      - if: \"state.x >\"\n        to: a\n",
                    ["agent.yaml:4:9", "is not a valid expression"]),
    "two_bodies": ("nodes:\n  - name: a\n    run: return {}\n    uses: state.set\n",
                   ["agent.yaml:4:5", "use only one of 'run' and 'uses'"]),
    "loop_without_limit": ("nodes:\n  - name: a\n    type: while_loop\n    condition: state.go\n    body:\n"
                           "      - run: return {}\n", ["agent.yaml:3:5", "max_iterations"]),
    "parallel_without_fan_in": ("nodes:\n  - name: a\n  - name: b\nedges:\n  - from: a\n    to: b\n"
                                "    parallel: true\n", ["agent.yaml:", "needs 'fan_in:'"]),
}

#: Loaded with one located warning each; `validate --strict` fails on them.
WARNED_AGENTS = {
    "unknown_top_key": ("name: x\nconfig:\n  raise_exceptions: true\nnodes:\n  - name: a\n",
                        "agent.yaml:2:1: warning: unknown key 'config'"),
    "unknown_node_key": ("nodes:\n  - name: a\n    uses: state.set\n    retries: 3\n",
                         "agent.yaml:4:5: warning: unknown key 'retries'"),
    "typo_suggestion": ("nodes:\n  - name: a\n    uses: state.set\n    output_ky: x\n", "did you mean 'output_key'?"),
    "unknown_action": ("nodes:\n  - name: a\n    uses: web.scrape\n",
                       "agent.yaml:3:5: warning: node 'a': action 'web.scrape' is not available"),
    "unknown_param": ("nodes:\n  - name: a\n    uses: llm.chat\n    with: {prompt: x, temprature: 0}\n",
                      "agent.yaml:4:23: warning: llm.chat: unknown parameter 'temprature'"),
    "unchecked_state_type": ("state_schema:\n  n: integer\nnodes:\n  - name: a\n",
                             "agent.yaml:2:3: warning: state_schema.n: type 'integer' is not checked"),
    "unknown_setting": ("settings:\n  auth: {provider: none}\nnodes:\n  - name: a\n",
                        "agent.yaml:2:3: warning: unknown key 'auth' in settings"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_AGENTS))
def test_invalid_agent_fails_run_with_its_location(name, write_agent):
    text, fragments = BROKEN_AGENTS[name]
    result = run_tea("run", "--quiet", write_agent(text))
    assert_one_line_error(result, *fragments)
    assert result.returncode == 2


@pytest.mark.parametrize("name", sorted(BROKEN_AGENTS))
def test_invalid_agent_fails_validate_as_upstream(name, write_agent):
    """Exit 1, the problem on stderr (one line), `FAIL: FILE (1 error(s))` on stdout."""
    text, fragments = BROKEN_AGENTS[name]
    agent = write_agent(text)
    result = run_tea("validate", agent)
    assert_one_line_error(result, *fragments)
    assert result.returncode == 1
    assert result.stdout == f"FAIL: {agent} (1 error(s))\n"


@pytest.mark.parametrize("name", sorted(WARNED_AGENTS))
def test_ignored_key_is_one_warning_and_strict_fails(name, write_agent):
    text, fragment = WARNED_AGENTS[name]
    agent = write_agent(text)
    relaxed = run_tea("validate", agent)
    assert relaxed.returncode == 0, relaxed.stderr
    assert relaxed.stdout.startswith(f"OK: {agent} (1 nodes,")
    assert len(relaxed.stderr.splitlines()) == 1 and fragment in relaxed.stderr
    strict = run_tea("validate", "--strict", agent)
    assert strict.returncode == 1
    assert strict.stdout == f"FAIL: {agent} (1 warning(s), --strict)\n"
    assert fragment in strict.stderr


def test_run_prints_load_warnings_unless_quiet(write_agent):
    agent = write_agent(WARNED_AGENTS["unknown_top_key"][0])
    assert WARNED_AGENTS["unknown_top_key"][1] in run_tea("run", agent).stderr
    quiet = run_tea("run", "-q", agent)
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize("text, fragments", [
    ("nodes:\n  - name: a\n    uses: web.scrape\n",
     ["agent.yaml:2: node 'a'", "action 'web.scrape' is not available in this tea"]),
    ("nodes:\n  - name: a\n    run: |\n      x = 0\n      return {'y': 1 / x}\n",
     ["agent.yaml:2: node 'a'", "run: ZeroDivisionError: division by zero (line 5)"]),
    ("nodes:\n  - name: a\n    run: |\n      return 42\n    language: lua\n",
     ["node 'a'", "Lua code (language: lua) is not supported by this tea"]),
    ("nodes:\n  - name: a\n    type: dynamic_parallel\n    items: '{{ state.x }}'\n",
     ["node 'a'", "type: dynamic_parallel is not supported by this tea"]),
    ("nodes:\n  - name: a\n    steps:\n      - name: inner\n        run: \"raise ValueError('no')\"\n",
     ["node 'a'", "step 'inner'", "run: ValueError: no"]),
    ("nodes:\n  - name: a\n    goto:\n      - if: state.never\n        to: a\n",
     ["after node 'a'", "no goto rule matched"]),
    ("nodes:\n  - name: a\n    uses: state.set\n    with:\n      x: \"{{ 'a' + 1 }}\"\n",
     ["node 'a'", "template error", "TypeError"]),
], ids=["unknown_action", "exception", "lua", "dynamic_parallel", "in_a_step", "no_goto_match", "type_error"])
def test_failing_node_is_one_line(text, fragments, write_agent):
    result = run_tea("run", "--quiet", write_agent(text))
    assert_one_line_error(result, *fragments)
    assert result.returncode == 1


def test_missing_agent_file(tmp_path):
    assert_one_line_error(run_tea("run", tmp_path / "nope.yaml"), "nope.yaml", "no such agent file")


def test_template_looking_into_a_missing_key(write_agent):
    """A missing key alone is None (tests/app/compat); going further into it is an error."""
    agent = write_agent("nodes:\n  - name: a\n    uses: state.set\n    with:\n      x: '{{ state.missing.deep }}'\n")
    line = assert_one_line_error(run_tea("run", "--quiet", agent), "node 'a'", "missing key")
    assert "'missing'" in line


@pytest.mark.parametrize("given, fragment", [
    ("{not json", "--input is not JSON"),
    ("[1, 2]", "must be a JSON object, got list"),
    ('{"times": "three"}', "input 'times' must be int"),
    ("@/nonexistent/in.json", "cannot read"),
    ("@{dir}/list.yaml", "--input must be a JSON object, got list"),
    ("@{dir}/broken.yml", "--input is not YAML at line 2"),
])
def test_bad_input_option(given, fragment, tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "broken.yml").write_text("a: [1,\n")
    result = run_tea("run", "--quiet", EXAMPLES / "hello.yaml", "-i", given.replace("{dir}", str(tmp_path)))
    assert_one_line_error(result, fragment)
    assert result.returncode == 2


@pytest.mark.parametrize("args, fragment", [
    (["--secrets", "{oops"], "--secrets is not JSON"),
    (["--secrets", "@/nonexistent/s.json"], "--secrets @/nonexistent/s.json: cannot read"),
    (["--gguf", "/nonexistent/model.gguf"], "--gguf /nonexistent/model.gguf: no such file"),
    (["-o", "/nonexistent/dir/out.json"], "--output /nonexistent/dir/out.json: cannot write"),
])
def test_bad_run_option(args, fragment):
    result = run_tea("run", "--quiet", EXAMPLES / "hello.yaml", *args)
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
