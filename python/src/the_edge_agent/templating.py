"""Jinja2 templates in agent files: node parameters, outputs, inline code and conditions.

The names a template sees are built by `engine.template_scope` (state, variables, secrets, env and,
after an action ran, its result). A key missing from one of those mappings behaves like None: it is
false, `| default(...)` replaces it, evaluated on its own it yields None and printed it is empty;
looking further into it (`state.missing.key`) or using a name that does not exist is an error.
A string that is exactly one `{{ expression }}` yields the expression's native value (a dict stays a
dict); anything else renders to a string. Templates run in Jinja2's sandbox. After Jinja2, `${ name }`
(GitLab CI style) is replaced by the variable `name`, when there is one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import jinja2
import markupsafe
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import htmlsafe_json_dumps

from .errors import ActionError

_GITLAB_VARIABLE = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{((?:(?!\{\{|\}\}|\{%).)*)\}\}\s*$", re.DOTALL)
#: Dict methods a template may still call on a mapping when no key of that name exists.
_MAPPING_METHODS = frozenset({"get", "keys", "values", "items"})


class Missing(jinja2.Undefined):
    """A key absent from a mapping: None-like (false, empty, equal to None), not to be looked into."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Missing)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = jinja2.Undefined.__hash__


class _AgentEnvironment(SandboxedEnvironment):
    """Keys win over dict methods (`state.items` is the state's `items`), missing keys are `Missing`."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and not attribute.startswith("__"):
            if attribute in obj:
                return obj[attribute]
            if attribute not in _MAPPING_METHODS:
                return Missing(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping) and isinstance(argument, str) and argument not in obj:
            return Missing(obj=obj, name=argument)
        return super().getitem(obj, argument)


def _fromjson(value: Any) -> Any:
    """Parse a JSON string; anything that is not JSON passes through unchanged."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _sha256(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = _AgentEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["json"] = lambda value: json.dumps(plain(value), ensure_ascii=False)
    env.filters["tojson"] = lambda value, indent=None: markupsafe.Markup(htmlsafe_json_dumps(plain(value), indent=indent))
    env.filters["fromjson"] = _fromjson
    env.filters["sha256"] = _sha256
    return env


@lru_cache(maxsize=512)
def _compiled_expression(expression: str) -> Any:
    return _environment().compile_expression(expression, undefined_to_none=False)


@lru_cache(maxsize=512)
def _compiled_template(text: str) -> jinja2.Template:
    return _environment().from_string(text)


@contextmanager
def _one_line_errors(source: str) -> Iterator[None]:
    """Turn Jinja2's exceptions into one-line ActionErrors naming the offending template."""
    try:
        yield
    except jinja2.UndefinedError as error:
        raise ActionError(f"template references a missing key in {source.strip()!r}: {error.message}") from None
    except jinja2.TemplateError as error:
        raise ActionError(f"template error in {source.strip()!r}: {error.message}") from None
    except Exception as error:  # noqa: BLE001 - e.g. a TypeError comparing a string with a number
        raise ActionError(f"template error in {source.strip()!r}: {type(error).__name__}: {error}") from None


def check_syntax(text: str) -> str | None:
    """The Jinja2 syntax error in `text` (a template or a bare expression), or None: for load time."""
    single = _SINGLE_EXPRESSION.match(text)
    try:
        if single or ("{{" not in text and "{%" not in text):
            _compiled_expression(single.group(1) if single else text)
        else:
            _compiled_template(text)
    except jinja2.TemplateSyntaxError as error:
        return error.message or "invalid syntax"
    return None


def plain(value: Any) -> Any:
    """`Missing` becomes None, also inside lists and dicts, so results stay JSON-serialisable."""
    if isinstance(value, jinja2.Undefined):
        return None
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict) and type(value) is dict:
        return {key: plain(item) for key, item in value.items()}
    return value


def evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    """Value of a Jinja2 expression such as `state.count > 2`."""
    with _one_line_errors(expression):
        value = _compiled_expression(expression)(**scope)
        if isinstance(value, jinja2.StrictUndefined):
            str(value)  # raises the "is undefined" error of an unknown name
        return plain(value)


def has_markup(text: str) -> bool:
    return "{{" in text or "{%" in text or "${" in text


def _gitlab_variables(text: str, variables: Mapping[str, Any]) -> str:
    return _GITLAB_VARIABLE.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in variables else m.group(0), text)


def render_string(text: str, scope: Mapping[str, Any]) -> Any:
    """Render one string; see the module docstring for when the result is not a string."""
    if not has_markup(text):
        return text
    single = _SINGLE_EXPRESSION.match(text)
    return evaluate(single.group(1), scope) if single else render_text(text, scope)


def render_text(text: str, scope: Mapping[str, Any]) -> str:
    """Render `text` as a whole to a string, even when it is one expression (inline code is text)."""
    if not has_markup(text):
        return text
    with _one_line_errors(text):
        rendered = _compiled_template(text).render(**scope) if "{{" in text or "{%" in text else text
    return _gitlab_variables(rendered, scope.get("variables") or {})


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render every string inside nested dicts and lists."""
    if isinstance(value, str):
        return render_string(value, scope)
    if isinstance(value, dict):
        return {key: render(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, scope) for item in value]
    return value
