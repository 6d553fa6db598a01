"""The compatibility cases: one agent written from upstream's documentation per feature, the input it
gets and the part of the final state the documentation promises. The source `tea` runs all of them
(test_compat_language.py), the frozen AppImage a subset (tests/e2e/test_compat_appimage.py)."""

from __future__ import annotations

from pathlib import Path

from tea_helpers import AgentCase

AGENTS = Path(__file__).resolve().parent / "agents"


class Case(AgentCase):
    AGENTS = AGENTS


WHEN_TAKEN = "taken"
CASES = [
    Case("run_returns_dict", "run-inline.yaml", {"input": "hello edge world"},
         {"processed": "HELLO EDGE WORLD", "word_count": 3, "summary": "HELLO EDGE WORLD has 3 words"}),
    Case("run_globals", "run-helpers.yaml", {},
         {"retries": 3, "seen": 3, "encoded": '{"a": 1}', "year": 2024, "parsed": {"k": [1, 2]},
          "secret_length": 6, "threshold": 30}, args=("--secrets", '{"token": "abcdef"}')),
    Case("run_without_return", "run-no-return.yaml", {"n": 16}, {"root": 4.0, "label": "square", "half_root": 2.0},
         absent=("math", "half")),
    Case("run_imports_stdlib", "run-stdlib.yaml", {},
         {"median": 2, "exact": "0.3", "half": "3/4", "pairs": 3, "common": "a", "wrapped": ["one two", "three"],
          "utc": "UTC", "uuid_version": 4}),
    Case("script_and_expression", "script-alias.yaml", {"value": 21, "items": [1]},
         {"doubled": 42, "has_items": True}),
    Case("steps", "steps.yaml", {"input": "form"},
         {"intermediate": "form processed", "echoed": "form processed", "final": "Submitted: form processed"}),
    Case("while_loop", "while-loop.yaml", {}, {"count": 5, "sum": 15, "passes": 3}),
    Case("uses_with_output", "uses-output.yaml", {"raw": '{"cities": ["Porto", "Lyon"]}'},
         {"parsed": {"data": {"cities": ["Porto", "Lyon"]}, "success": True}, "first_city": "Porto",
          "city_count": 2, "missing": "", "text": '{"cities": ["Porto", "Lyon"]}', "success": True}),
    Case("action_params_outputs", "action-params.yaml", {}, {"answer": 42, "ok": True}),
    Case("non_dict_result", "non-dict-result.yaml", {}, {"result": 42}),
    Case("unimplemented_action_not_run", "unimplemented-action.yaml", {}, {"answer": "offline"}, warnings=1),
    Case("implicit_chaining", "implicit-chain.yaml", {}, {"message": "Step C done", "trail": ["a", "b", "c"]}),
    Case("goto_unconditional", "goto-unconditional.yaml", {}, {"initialized": True, "validated": True},
         absent=("this", "ran_after_end")),
    Case("goto_first_rule", "goto-conditional.yaml", {"input_score": 0.95}, {"path": "high"}),
    Case("goto_second_rule", "goto-conditional.yaml", {"input_score": 0.7}, {"path": "medium"}),
    Case("goto_default_rule", "goto-conditional.yaml", {"input_score": 0.1}, {"path": "low"}),
    Case("goto_reads_result_error", "goto-result.yaml", {"fail": True}, {"handled": "error"}),
    Case("goto_reads_result_ok", "goto-result.yaml", {"fail": False}, {"handled": "ok"}),
    Case("goto_loop_succeeds", "goto-loop.yaml", {"succeed_at": 2}, {"attempts": 2, "final": "success"}),
    Case("goto_loop_gives_up", "goto-loop.yaml", {"succeed_at": 9}, {"attempts": 3, "final": "failed"}),
    Case("goto_beats_edges", "goto-precedence.yaml", {}, {"visited": ["a", "c"]}, warnings=1),
    Case("when_all_forms_true", "when-forms.yaml", {"mode": "short", "count": 1, "should_process": True},
         {WHEN_TAKEN: ["template", "expression", "name", "negated", "boolean"]}),
    Case("when_all_forms_false", "when-forms.yaml", {"mode": "long", "count": 0, "should_process": False},
         {WHEN_TAKEN: ["expression", "negated", "skip"]}),
    Case("when_bare_name_false", "when-forms.yaml", {"mode": "long", "count": 1, "should_process": False},
         {WHEN_TAKEN: ["expression", "name", "skip"]}),
    Case("edge_condition_when_true", "edge-condition.yaml", {"input": "good"}, {"outcome": "processed"}),
    Case("edge_condition_when_false", "edge-condition.yaml", {"input": "bad"}, {"outcome": "rejected"}),
    Case("two_matching_edges_first_wins", "edge-order.yaml", {}, {"winner": "first"}),
    Case("parallel_fan_in", "parallel.yaml", {"text": "  two words  "},
         {"combined": {"length": 9, "words": 2, "shout": "TWO WORDS!"},
          "branches": ["analyze_length", "analyze_words", "analyze_upper"], "all_ok": True, "words_via_get": 2,
          "fork_has_no_branch_keys": True, "report": "9 chars, 2 words",
          "branch_keys": [["length"], ["words"], ["shout"]]},
         absent=("length", "words", "shout")),
    Case("templates", "templates.yaml", {"name": "edge"},
         {"missing_alone": None, "missing_in_text": "[]", "missing_is_false": "no", "missing_defaulted": "N/A",
          "passthrough": {"a": 1, "b": [1, 2]}, "as_json": '{"a": 1, "b": [1, 2]}',
          "as_json_alias": '{"a": 1, "b": [1, 2]}', "parsed": {"x": 5}, "not_json_unchanged": "plain",
          "message": "Hello, EDGE!", "secret": "s3cret", "from_env": "on", "items_key": 2,
          "missing_as_json": "null", "from_settings": "tiny-model", "gitlab_style": "Hello and ${unknown}"},
         args=("--secrets-env", "TEA_COMPAT_SECRET_")),
    Case("condition_on_missing_key", "template-condition-missing.yaml", {}, {"path": "default"}),
]
