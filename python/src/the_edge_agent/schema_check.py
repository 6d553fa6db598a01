"""Located errors and warnings while an agent file is validated: every message names file:line:column.

Errors stop loading (AgentError). Warnings are for what this tea ignores or cannot run (unknown keys,
actions it does not implement): the agent still loads, `tea validate --strict` turns them into errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import AgentError
from .conditions import syntax_problem
from .yaml_loader import Located


class Checker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.warnings: list[str] = []

    def _where(self, mapping: Any, key: str | None) -> str:
        line, column = mapping.where(key) if isinstance(mapping, Located) else (0, 0)
        return f"{self.path}:{line}:{column}"

    def fail(self, mapping: Any, key: str | None, message: str) -> AgentError:
        return AgentError(f"{self._where(mapping, key)}: {message}")

    def warn(self, mapping: Any, key: str | None, message: str) -> None:
        self.warnings.append(f"{self._where(mapping, key)}: warning: {message}")

    def unknown_keys(self, mapping: Located, known: Iterable[str], what: str) -> None:
        """One warning per key this tea does not know, with the closest known key as a hint."""
        known = sorted(known)
        for key in mapping:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.warn(mapping, key, f"unknown key '{key}' in {what} is ignored{hint}")

    def mapping(self, value: Any, parent: Any, key: str | None, what: str) -> Located:
        if not isinstance(value, Located):
            raise self.fail(parent, key, f"{what} must be a mapping")
        return value

    def typed(self, mapping: Located, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = mapping.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and bool not in _kinds(kind)):
            raise self.fail(mapping, key, f"{what}.{key} has the wrong type ({type(value).__name__})")
        return value

    def one_of(self, mapping: Located, keys: tuple[str, ...], what: str) -> str | None:
        """The one key of `keys` present in `mapping` (None if none); two at once is an error."""
        present = [key for key in keys if key in mapping]
        if len(present) > 1:
            raise self.fail(mapping, present[1], f"{what}: use only one of '{present[0]}' and '{present[1]}'")
        return present[0] if present else None

    def condition(self, mapping: Located, key: str, value: Any) -> Any:
        """A condition must be a boolean or a Jinja2 expression/template that parses."""
        if value is None or isinstance(value, bool):
            return value
        if not isinstance(value, str):
            raise self.fail(mapping, key, f"'{key}' must be a string or a boolean")
        problem = syntax_problem(value)
        if problem:
            raise self.fail(mapping, key, f"'{key}: {value}' is not a valid expression: {problem}")
        return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
