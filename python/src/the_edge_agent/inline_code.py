"""`run:` inline Python, with the semantics upstream agents rely on.

Code that contains a `return` runs as the body of a function and its return value is the node's
result; code without one runs as a module and its public local names are the result. Jinja2 markup
in the code is rendered first. Line numbers in errors are those of the agent file.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import CodeType, TracebackType
from typing import Any

from .errors import ActionError

FUNCTION = "__tea_run__"
#: Names bound only when the code mentions them, as upstream does: name -> (module, attribute, mentions).
#: A module that is not installed binds None.
ON_MENTION = {"datetime": ("datetime", None, ("datetime",)), "requests": ("requests", None, ("requests",)),
              "OpenAI": ("openai", "OpenAI", ("OpenAI", "openai"))}


@dataclass(frozen=True)
class CompiledCode:
    code: CodeType
    returns: bool
    filename: str


def _has_return(tree: ast.Module) -> bool:
    """A `return` at the code's own level (not one inside a def or lambda of the code)."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Return):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))
    return False


@lru_cache(maxsize=256)
def compile_code(source: str, filename: str, first_line: int) -> CompiledCode:
    """Compile once; raises SyntaxError whose lineno is the agent file's line."""
    source = textwrap.dedent(source)
    try:
        module = ast.parse(source, filename)
    except SyntaxError as error:
        error.lineno = (error.lineno or 1) + first_line - 1
        raise
    if not _has_return(module):
        ast.increment_lineno(module, first_line - 1)
        return CompiledCode(compile(module, filename, "exec"), False, filename)
    wrapped = ast.parse(f"def {FUNCTION}():\n" + textwrap.indent(source, "    ") + "\n    pass\n", filename)
    ast.increment_lineno(wrapped, first_line - 2)
    return CompiledCode(compile(wrapped, filename, "exec"), True, filename)


def syntax_error(source: str, filename: str, first_line: int) -> tuple[int, str] | None:
    """(agent file line, message) of a syntax error in `source`, or None: checked at load time."""
    try:
        compile_code(source, filename, first_line)
    except SyntaxError as error:
        return error.lineno or first_line, error.msg
    return None


def _public_locals(names: Mapping[str, Any]) -> dict[str, Any]:
    """Without `return`, the result is what the code assigned: not its imports, functions or classes."""
    return {key: value for key, value in names.items() if not key.startswith("_")
            and not (inspect.ismodule(value) or inspect.isfunction(value) or inspect.isclass(value))}


def _on_mention(source: str) -> dict[str, Any]:
    bound = {}
    for name, (module_name, attribute, mentions) in ON_MENTION.items():
        if any(word in source for word in mentions):
            try:
                module = __import__(module_name)
            except ImportError:
                bound[name] = None
                continue
            bound[name] = getattr(module, attribute, None) if attribute else module
    return bound


def _failing_line(traceback: TracebackType | None, filename: str) -> int | None:
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == filename:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def run_code(source: str, filename: str, first_line: int, names: dict[str, Any]) -> Any:
    """Run the code with `names` bound (state, variables, ...); errors become one-line ActionErrors."""
    import json

    try:
        compiled = compile_code(source, filename, first_line)
    except SyntaxError as error:
        raise ActionError(f"run: syntax error at line {error.lineno}: {error.msg}") from None
    scope = {"__builtins__": builtins, "__name__": "__tea_inline__", "json": json, **_on_mention(source), **names}
    local: dict[str, Any] = {}
    try:
        exec(compiled.code, scope, scope if compiled.returns else local)
        return scope[FUNCTION]() if compiled.returns else _public_locals(local)
    except Exception as error:  # noqa: BLE001 - the user's code may raise anything: report it in one line
        line = _failing_line(sys.exc_info()[2], filename)
        where = f" (line {line})" if line else ""
        raise ActionError(f"run: {type(error).__name__}: {error}{where}") from None
