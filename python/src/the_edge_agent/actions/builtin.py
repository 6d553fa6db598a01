"""Actions that need no LLM: they make non-LLM agents useful and keep the engine testable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..context import RunContext
from ..errors import ActionError
from . import ActionSpec


def state_set(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Return the (rendered) parameters, which the engine merges into the state."""
    return dict(params)


def json_parse(params: dict[str, Any], ctx: RunContext) -> Any:
    try:
        return json.loads(params["text"])
    except (TypeError, json.JSONDecodeError) as error:
        raise ActionError(f"json.parse: text is not JSON: {error}") from None


def file_read(params: dict[str, Any], ctx: RunContext) -> dict[str, str]:
    path = Path(params["path"])
    try:
        return {"content": path.read_text(encoding="utf-8")}
    except OSError as error:
        raise ActionError(f"file.read: cannot read {path}: {error.strerror}") from None


def file_write(params: dict[str, Any], ctx: RunContext) -> dict[str, str]:
    """Write through a temporary name so a crash never leaves half a file behind."""
    path = Path(params["path"])
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(str(params["content"]), encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        raise ActionError(f"file.write: cannot write {path}: {error.strerror}") from None
    return {"path": str(path)}


ACTIONS = {
    "state.set": ActionSpec(state_set),
    "json.parse": ActionSpec(json_parse, frozenset({"text"}), frozenset({"text"})),
    "file.read": ActionSpec(file_read, frozenset({"path"}), frozenset({"path"})),
    "file.write": ActionSpec(file_write, frozenset({"path", "content"}), frozenset({"path", "content"})),
}
