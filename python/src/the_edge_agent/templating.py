"""Jinja2 rendering of node parameters, outputs and edge conditions.

A string that is exactly one `{{ expression }}` yields the expression's native value (a dict stays a
dict), anything else renders to a string. Undefined names are errors, never empty strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import jinja2

from .errors import ActionError

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{((?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


@contextmanager
def _one_line_errors(source: str) -> Iterator[None]:
    """Turn Jinja2's exceptions into one-line ActionErrors naming the offending template."""
    try:
        yield
    except jinja2.UndefinedError as error:
        raise ActionError(f"template references a missing key: {error.message}") from None
    except jinja2.TemplateError as error:
        raise ActionError(f"template error in {source.strip()!r}: {error.message}") from None


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """Value of a Jinja2 expression such as `state.count > 2`."""
    with _one_line_errors(expression):
        value = _environment().compile_expression(expression, undefined_to_none=False)(**context)
        if isinstance(value, jinja2.Undefined):
            str(value)  # a StrictUndefined raises its "has no attribute" error when used
        return value


def render_string(text: str, context: dict[str, Any]) -> Any:
    """Render one string; see the module docstring for when the result is not a string."""
    if "{{" not in text and "{%" not in text:
        return text
    single = _SINGLE_EXPRESSION.match(text)
    if single:
        return evaluate(single.group(1), context)
    with _one_line_errors(text):
        return _environment().from_string(text).render(**context)


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render every string inside nested dicts and lists."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    return value
