"""Actions that need no LLM: they make non-LLM agents useful and keep the engine testable.

The json.* and file.* actions return upstream's shapes: `{..., "success": true}`, or
`{"success": false, "error": ...}` (with a warning) when the text is not JSON or the file cannot be used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..context import RunContext
from . import ActionSpec


def _failed(ctx: RunContext, action: str, error: str) -> dict[str, Any]:
    ctx.warn(f"{action} failed: {error}")
    return {"success": False, "error": error}


def state_set(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Return the (rendered) parameters, which the engine merges into the state."""
    return dict(params)


def json_parse(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """`{data}`; text that is not JSON gives `default` when one is set, else the error shape."""
    try:
        return {"data": json.loads(params["text"]), "success": True}
    except (TypeError, json.JSONDecodeError) as error:
        if params.get("default") is not None:
            return {"data": params["default"], "success": True}
        return _failed(ctx, "json.parse", f"text is not JSON: {error}")


def json_stringify(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    try:
        text = json.dumps(params["data"], indent=params.get("indent"), sort_keys=bool(params.get("sort_keys")),
                          ensure_ascii=False)
    except (TypeError, ValueError) as error:
        return _failed(ctx, "json.stringify", str(error))
    return {"text": text, "success": True}


def file_read(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    path = Path(params["path"])
    try:
        return {"content": path.read_text(encoding=params.get("encoding") or "utf-8"), "success": True}
    except (OSError, UnicodeDecodeError, LookupError) as error:
        return _failed(ctx, "file.read", f"cannot read {path}: {getattr(error, 'strerror', None) or error}")


def file_write(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Write through a temporary name so a crash never leaves half a file behind."""
    path = Path(params["path"])
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(str(params["content"]), encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        return _failed(ctx, "file.write", f"cannot write {path}: {error.strerror}")
    return {"path": str(path), "success": True}


ACTIONS = {
    "state.set": ActionSpec(state_set),
    "json.parse": ActionSpec(json_parse, frozenset({"text", "strict", "default"}), frozenset({"text"})),
    "json.stringify": ActionSpec(json_stringify, frozenset({"data", "indent", "sort_keys"}), frozenset({"data"})),
    "file.read": ActionSpec(file_read, frozenset({"path", "encoding"}), frozenset({"path"})),
    "file.write": ActionSpec(file_write, frozenset({"path", "content"}), frozenset({"path", "content"})),
}
