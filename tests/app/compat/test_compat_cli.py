"""The upstream CLI surface: -i/--input forms, -q, -o, the legacy `tea FILE` form, inspect, parallel timing."""

from __future__ import annotations

import json

from cases import AGENTS
from tea_helpers import final_state, run_tea

RUN_INLINE = AGENTS / "run-inline.yaml"
GOTO = AGENTS / "goto-conditional.yaml"


def test_input_as_yaml_file_and_json_file(tmp_path):
    (tmp_path / "in.yaml").write_text("input: from yaml file\n")
    (tmp_path / "in.json").write_text('{"input": "from json file"}')
    assert final_state(run_tea("run", "-q", RUN_INLINE, "-i", f"@{tmp_path / 'in.yaml'}"))["word_count"] == 3
    assert final_state(run_tea("run", "-q", RUN_INLINE, "--input", f"@{tmp_path / 'in.json'}"))["word_count"] == 3


def test_output_file_gets_the_state_and_stdout_stays_empty(tmp_path):
    target = tmp_path / "out" / "state.json"
    target.parent.mkdir()
    result = run_tea("run", "-q", RUN_INLINE, "-i", '{"input": "a b"}', "-o", target)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert json.loads(target.read_text())["processed"] == "A B"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]  # no partial file left behind


def test_quiet_short_and_long_flags_silence_progress():
    for flag in ("-q", "--quiet"):
        assert run_tea("run", flag, RUN_INLINE, "-i", '{"input": "x"}').stderr == ""
    assert "tea: [1] process (run)" in run_tea("run", RUN_INLINE, "-i", '{"input": "x"}').stderr


def test_legacy_form_runs_the_agent_with_a_note():
    result = run_tea(GOTO, "-i", '{"input_score": 0.7}')
    assert final_state(result)["path"] == "medium"
    assert f"tea: note: 'tea {GOTO}' is the legacy form of 'tea run {GOTO}'" in result.stderr
    quiet = run_tea(GOTO, "-q", "-i", '{"input_score": 0.7}')
    assert quiet.stderr == "" and final_state(quiet)["path"] == "medium"


def test_inspect_text_lists_nodes_and_flow():
    text = run_tea("inspect", GOTO).stdout
    assert text.startswith("Agent: goto-conditional\n")
    assert "  validate [run]" in text
    assert "  validate -> high_confidence [goto: state.score > 0.9]" in text
    assert "  validate -> low_confidence [goto]" in text
    assert "  low_confidence -> __end__ [next]" in text


def test_inspect_json_is_the_document():
    document = json.loads(run_tea("inspect", "--format", "json", GOTO).stdout)
    assert document["name"] == "goto-conditional"
    assert document["nodes"][0]["goto"][0] == {"if": "state.score > 0.9", "to": "high_confidence"}


def test_inspect_dot_is_a_graphviz_digraph():
    dot = run_tea("inspect", "-f", "dot", AGENTS / "parallel.yaml").stdout
    assert dot.startswith('digraph "parallel" {') and dot.rstrip().endswith("}")
    assert '"prepare" -> "analyze_words" [style=dashed, label="fan-in combine"];' in dot
    assert '"combine" -> "report";' in dot
    assert '"__start__" -> "prepare";' in dot


def test_parallel_branches_run_at_the_same_time(tmp_path):
    """Each branch waits for the other's mark: run one after the other, the first would time out."""
    state = final_state(run_tea("run", "-q", AGENTS / "parallel-concurrent.yaml", "-i", json.dumps({"dir": str(tmp_path)})))
    assert state["both_overlapped"] is True


def test_parallel_progress_names_the_branch():
    result = run_tea("run", AGENTS / "parallel.yaml", "-i", '{"text": "a b"}')
    assert "tea: [analyze_words] [1] analyze_words (run)" in result.stderr
