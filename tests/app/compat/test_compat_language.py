"""Upstream agents run unchanged: each documented feature, run through the source `tea` (cases.py)."""

from __future__ import annotations

import json

import pytest

from cases import CASES, Case
from tea_helpers import final_state, run_tea

CASE_ENV = {"TEA_COMPAT_SETTING": "on", "TEA_COMPAT_SECRET_API_KEY": "s3cret"}


def run_case(case: Case, tea=None) -> dict:
    """Run one case with `tea` (default: the source tea) and check the documented part of the state."""
    extra = {"tea": tea} if tea else {}
    result = run_tea("run", "-q", case.path, "-i", json.dumps(case.inputs), *case.args, env=CASE_ENV, **extra)
    state = final_state(result)
    assert {key: state.get(key) for key in case.expected} == case.expected
    assert not [key for key in case.absent if key in state]
    assert result.stderr == ""
    return state


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_documented_feature(case):
    run_case(case)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_agent_validates_with_only_its_expected_warnings(case):
    result = run_tea("validate", case.path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {case.path} (")
    assert len(result.stderr.splitlines()) == case.warnings, result.stderr
