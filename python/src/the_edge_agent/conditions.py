"""Whether an edge's `when:`/`condition:` or a goto rule's `if:` holds.

Every documented form: a YAML boolean; the words True/False (any case); a bare state key (`approved`)
or its negation (`!approved`), read from the state; a `{{ ... }}` template; any other Jinja2
expression (`state.count > 2`, where state keys are also bare names). A template that renders to
text is false when the text is empty, "false", "0", "no" or "none".
"""

from __future__ import annotations

from typing import Any

from .agent import Condition
from .errors import ActionError
from .templating import check_syntax, evaluate, render_string

FALSE_TEXT = frozenset({"", "false", "0", "no", "none"})
WORDS = {"true": True, "false": False}


def literal(condition: Condition) -> bool | None:
    """The fixed truth of an absent, boolean or True/False condition; None when it must be evaluated."""
    if condition is None:
        return True
    if isinstance(condition, bool):
        return condition
    return WORDS.get(condition.strip().lower())


def _negated_name(text: str) -> str | None:
    return text[1:].strip() if text.startswith("!") and text[1:].strip().isidentifier() else None


def syntax_problem(condition: str) -> str | None:
    """Why `condition` cannot be evaluated, found at load time; None when it is fine."""
    text = condition.strip()
    if literal(text) is not None or text.isidentifier() or _negated_name(text):
        return None
    return check_syntax(text)


def _truth(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_TEXT
    return bool(value)


def holds(condition: Condition, scope: dict[str, Any]) -> bool:
    """Evaluate against `scope` (from `RunContext.scope`): `scope["state"]` is the state."""
    fixed = literal(condition)
    if fixed is not None:
        return fixed
    text = condition.strip()
    state = scope["state"]
    negated = _negated_name(text)
    if negated:
        return not state.get(negated)
    if text.isidentifier():
        return bool(state.get(text))
    if "{{" in text or "{%" in text:
        return _truth(render_string(text, scope))
    return bool(evaluate(text, {**state, **scope}))


def holds_or_warn(condition: Condition, scope: dict[str, Any], warn: Any) -> bool:
    """A condition that fails to evaluate (e.g. compares a missing key with a number) is false, with a
    warning naming it: the run goes on along the other edges, as upstream's does."""
    try:
        return holds(condition, scope)
    except ActionError as error:
        warn(f"condition {condition!r} is false: {error}")
        return False
