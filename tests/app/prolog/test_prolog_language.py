"""The Prolog feature suite through the source tea (janus-swi compiled against the release's SWI-Prolog,
installed by tests/runner.py), and the one-line failures of Prolog nodes."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from prolog_cases import CASES, Case
from tea_helpers import assert_one_line_error, final_state, run_tea

needs_prolog = pytest.mark.skipif(importlib.util.find_spec("janus_swi") is None,
                                  reason="janus-swi is not installed here (`invoke test` installs it)")


def run_case(case: Case, tea=None) -> dict:
    """Run one case with `tea` (default: the source tea) and check the promised part of the state."""
    extra = {"tea": tea} if tea else {}
    result = run_tea("run", "-q", case.path, "-i", json.dumps(case.inputs), **extra)
    state = final_state(result)
    assert {key: state.get(key) for key in case.expected} == case.expected
    assert result.stderr == ""
    return state


@needs_prolog
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_documented_feature(case):
    run_case(case)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_agent_validates_without_running_prolog(case):
    result = run_tea("validate", case.path)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


PROLOG_NODE = "name: {name}\n{settings}nodes:\n  - name: node\n    language: prolog\n    run: |\n{code}"


def prolog_agent(write_agent, code: str, settings: str = "", name: str = "failing"):
    """One Prolog node; without settings its node is on line 3 and its code starts on line 6."""
    indented = "".join(f"      {line}\n" for line in code.splitlines())
    return write_agent(PROLOG_NODE.format(name=name, settings=settings, code=indented))


def failure(write_agent, code: str, settings: str = "", env: dict | None = None) -> tuple[str, str]:
    agent = prolog_agent(write_agent, code, settings)
    result = run_tea("run", "-q", agent, env=env)
    assert result.returncode == 1, result.stderr
    return str(agent), assert_one_line_error(result)


@needs_prolog
@pytest.mark.parametrize("code, message", [
    ("state(input, X,\nX = test.", "Prolog syntax error at line 7: Operator expected"),
    ("ok(1).\n\nX = 1,\nX > 2,\nreturn(a, X).", "Prolog query failed at line 8"),
    (":- fail.", "Prolog directive failed at line 6"),
    ("% a comment\nY is foo + 1.", "Prolog error at line 7: is/2: Arithmetic: `foo/0' is not a function"),
    ("return(f(x), 1).", "Prolog error at line 6: Type error: `atomic' expected, found `f(x)' (a compound)"),
], ids=["syntax error", "failed query", "failed directive", "prolog error", "return key not a name"])
def test_a_failing_node_is_one_line_naming_the_agent_line(write_agent, code, message):
    agent, line = failure(write_agent, code)
    assert line == f"{agent}:3: node 'node': {message}"


@needs_prolog
def test_stack_overflow_is_one_line(write_agent):
    code = (":- set_prolog_flag(stack_limit, 20000000).\n"
            "down(N) :- N1 is N + 1, down(N1), true.\ndown(0), true.")
    _, line = failure(write_agent, code)
    assert line.endswith("Prolog error at line 8: Stack limit (19.1Mb) exceeded")


@needs_prolog
def test_a_looping_node_fails_at_its_time_limit(write_agent):
    started = time.monotonic()
    agent, line = failure(write_agent, "loop :- loop.\nloop.", settings="settings:\n  prolog:\n    timeout: 1\n")
    elapsed = time.monotonic() - started
    assert line == (f"{agent}:6: node 'node': Prolog timeout: the node ran longer than 1 s "
                    f"(settings.prolog.timeout)")
    assert 1 <= elapsed < 15


@needs_prolog
def test_a_node_within_its_time_limit_succeeds(write_agent):
    agent = prolog_agent(write_agent, "numlist(1, 200000, L), sum_list(L, S), return(sum, S).",
                         settings="settings:\n  prolog:\n    timeout: 20\n")
    assert final_state(run_tea("run", "-q", agent))["sum"] == 20000100000


def test_the_default_time_limit_is_the_guides_30_seconds(write_agent):
    from the_edge_agent.schema import load_agent

    assert load_agent(prolog_agent(write_agent, "true.")).prolog_timeout == 30.0


@pytest.mark.parametrize("timeout, message", [
    ("0", "settings.prolog.timeout must be a number of seconds above 0"),
    ("-2", "settings.prolog.timeout must be a number of seconds above 0"),
    ("soon", "settings.prolog.timeout has the wrong type (str)"),
    ("true", "settings.prolog.timeout has the wrong type (bool)"),
])
def test_a_bad_time_limit_is_a_load_error(write_agent, timeout, message):
    agent = prolog_agent(write_agent, "true.", settings=f"settings:\n  prolog:\n    timeout: {timeout}\n")
    result = run_tea("run", "-q", agent)
    assert result.returncode == 2
    assert assert_one_line_error(result) == f"{agent}:4:5: {message}"


def test_typed_run_needs_code(write_agent):
    agent = write_agent("nodes:\n  - name: a\n    run:\n      type: prolog\n      value: x\n")
    result = run_tea("validate", agent)
    assert result.returncode == 1
    assert "'run' with type: prolog needs its Prolog code in 'code'" in result.stdout + result.stderr


@needs_prolog
def test_a_swi_home_that_is_not_one_is_one_line(write_agent, tmp_path):
    agent = prolog_agent(write_agent, "return(a, 1).")
    result = run_tea("run", "-q", agent, env={"SWI_HOME_DIR": str(tmp_path)})
    assert assert_one_line_error(result) == (f"{agent}:3: node 'node': SWI_HOME_DIR={tmp_path} is not a "
                                            f"SWI-Prolog home (it has no boot.prc)")
