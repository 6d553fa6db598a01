"""Nodes and steps of an agent file: what runs (`run`, `uses`, `steps`, a while loop), its output, its goto."""

from __future__ import annotations

from typing import Any

from .actions import action_specs
from .agent import (END, START, ActionBody, Body, CodeBody, ExpressionBody, GotoRule, LoopBody, Node, PrologBody,
                    Step, StepsBody, UnsupportedBody)
from .inline_code import syntax_error
from .templating import has_markup
from .schema_check import Checker
from .yaml_loader import Located

BODY_KEYS = ("run", "script", "uses", "action", "steps")
STEP_KEYS = {"name", "description", "run", "script", "language", "uses", "action", "with", "params", "output",
             "outputs", "output_key", "steps", "type", "condition", "max_iterations", "body"}
NODE_KEYS = STEP_KEYS | {"goto", "fan_in"}
OUTPUT_KEYS = ("output", "outputs", "output_key")
MAX_LOOP_ITERATIONS = 1000
#: Node kinds upstream documents that this tea does not run: they load, and fail only if they run.
UNSUPPORTED_TYPES = {"dynamic_parallel": "type: dynamic_parallel"}
UNSUPPORTED_LANGUAGES = {"lua": "Lua code (language: lua)"}
LANGUAGES = ("python", "prolog")
PROLOG_MARKERS = ("% prolog", "%prolog")


def parse_nodes(check: Checker, document: Located) -> tuple[Node, ...]:
    raw = document.get("nodes")
    if not isinstance(raw, list) or not raw:
        raise check.fail(document, "nodes", "'nodes' must be a non-empty list")
    nodes = tuple(_node(check, item) for item in raw)
    names = [node.name for node in nodes]
    for item, node in zip(raw, nodes):
        if names.count(node.name) > 1:
            raise check.fail(item, "name", f"duplicate node name '{node.name}'")
        unknown = [rule.target for rule in node.goto if rule.target not in names and rule.target != END]
        if unknown:
            raise check.fail(item, "goto", f"node '{node.name}': goto to unknown node '{unknown[0]}'")
    return nodes


def _node(check: Checker, item: Any) -> Node:
    item = check.mapping(item, None, None, "a node")
    name = check.typed(item, "name", str, "node")
    if not name or name in (START, END):
        raise check.fail(item, "name", "every node needs a 'name' (not __start__/__end__)")
    step = _step(check, item, NODE_KEYS, f"node '{name}'", name)
    fan_in = check.typed(item, "fan_in", (bool, str), "node")  # a node name on dynamic_parallel nodes
    return Node(name, step.body, step.output, step.line, _goto(check, item), fan_in is True)


def _step(check: Checker, item: Located, known: set[str], what: str, name: str) -> Step:
    body = _body(check, item, what)
    if not isinstance(body, UnsupportedBody):
        check.unknown_keys(item, known, what)
    output_key = check.one_of(item, OUTPUT_KEYS, what)
    output = check.typed(item, output_key, (str, dict), "node") if output_key else None
    return Step(name, body, output, item.mark[0])


def _body(check: Checker, item: Located, what: str) -> Body:
    kind = item.get("type")
    if kind == "while_loop":
        return _loop(check, item, what)
    if kind is not None:
        return UnsupportedBody(UNSUPPORTED_TYPES.get(kind, f"type: {kind}"))
    language = str(item.get("language") or "python").lower()
    if language not in LANGUAGES:
        return UnsupportedBody(UNSUPPORTED_LANGUAGES.get(language, f"language: {language}"))
    key = check.one_of(item, BODY_KEYS, what)
    if key in ("run", "script"):
        return _code(check, item, key, language)
    if key in ("uses", "action"):
        return _action(check, item, key, what)
    if key == "steps":
        return StepsBody(_steps(check, item, "steps", what))
    return None


def _first_line(mapping: Located, key: str, source: str) -> int:
    """The agent file's line of the code's first line (a block scalar starts below its key)."""
    return mapping.where(key)[0] + (1 if "\n" in source.strip() or source.endswith("\n") else 0)


def _code(check: Checker, item: Located, key: str, language: str) -> Body:
    source = item[key]
    if isinstance(source, Located):
        return _typed_run(check, source, key)
    if not isinstance(source, str):
        raise check.fail(item, key, f"'{key}' must be {language.capitalize()} code (a string)")
    if source.lstrip().startswith(("-- lua", "--lua")):
        return UnsupportedBody(UNSUPPORTED_LANGUAGES["lua"])
    line = _first_line(item, key, source)
    if language == "prolog" or source.lstrip().startswith(PROLOG_MARKERS):
        return PrologBody(source, line)
    if not has_markup(source):  # with templates, the code exists only once rendered
        problem = syntax_error(source, str(check.path), line)
        if problem:
            raise check.fail(item, key, f"Python syntax error at line {problem[0]}: {problem[1]}")
    return CodeBody(source, line)


def _typed_run(check: Checker, run: Located, key: str) -> Body:
    """`run: {type: expression, value: ..., output_key: ...}` or `{type: prolog, code: ...}`; Lua is not
    run by this tea."""
    kind = run.get("type")
    if kind in UNSUPPORTED_LANGUAGES:
        return UnsupportedBody(UNSUPPORTED_LANGUAGES[kind])
    if kind == "prolog":
        return _typed_prolog(check, run, key)
    if kind != "expression" or not isinstance(run.get("value"), str):
        raise check.fail(run, "type", f"'{key}' as a mapping needs type: expression and a value, "
                                      "or type: prolog and code")
    check.unknown_keys(run, {"type", "value", "output_key"}, f"'{key}'")
    problem = syntax_error(run["value"], str(check.path), run.where("value")[0])
    if problem:
        raise check.fail(run, "value", f"Python syntax error: {problem[1]}")
    return ExpressionBody(run["value"], str(run.get("output_key") or "result"))


def _typed_prolog(check: Checker, run: Located, key: str) -> PrologBody:
    code = run.get("code")
    if not isinstance(code, str) or not code.strip():
        raise check.fail(run, "code", f"'{key}' with type: prolog needs its Prolog code in 'code'")
    check.unknown_keys(run, {"type", "code"}, f"'{key}'")
    return PrologBody(code, _first_line(run, "code", code))


def _action(check: Checker, item: Located, key: str, what: str) -> ActionBody:
    action = check.typed(item, key, str, "node")
    params_key = check.one_of(item, ("with", "params"), what) or "with"
    params = item.get(params_key) or {}
    if not isinstance(params, dict):
        raise check.fail(item, params_key, f"'{params_key}' must be a mapping")
    spec = action_specs().get(action)
    if spec is None:
        check.warn(item, key, f"{what}: action '{action}' is not available in this tea; the node fails if it runs")
        return ActionBody(action, dict(params))
    for name in sorted(set(params) - spec.params if spec.params is not None else ()):
        check.warn(params, name, f"{action}: unknown parameter '{name}' is ignored")
    missing = spec.required - set(params)
    if missing:
        raise check.fail(item, params_key, f"{action}: missing parameter '{min(missing)}'")
    return ActionBody(action, dict(params))


def _steps(check: Checker, item: Located, key: str, what: str) -> tuple[Step, ...]:
    raw = item.get(key)
    if not isinstance(raw, list) or not raw:
        raise check.fail(item, key, f"{what}: '{key}' must be a non-empty list")
    steps = []
    for number, entry in enumerate(raw, 1):
        entry = check.mapping(entry, item, key, f"{what}: each of '{key}'")
        name = str(entry.get("name") or f"step_{number}")
        steps.append(_step(check, entry, STEP_KEYS, f"{what}, step '{name}'", name))
    return tuple(steps)


def _loop(check: Checker, item: Located, what: str) -> LoopBody:
    condition = check.condition(item, "condition", item.get("condition"))
    limit = check.typed(item, "max_iterations", int, "while_loop")
    if not isinstance(condition, str) or limit is None or not 1 <= limit <= MAX_LOOP_ITERATIONS:
        raise check.fail(item, "type", f"{what}: a while_loop needs a 'condition' and "
                                       f"'max_iterations' from 1 to {MAX_LOOP_ITERATIONS}")
    body = _steps(check, item, "body", what)
    if any(isinstance(step.body, LoopBody) for step in body):
        raise check.fail(item, "body", f"{what}: while loops cannot be nested")
    return LoopBody(condition, limit, body)


def _goto(check: Checker, item: Located) -> tuple[GotoRule, ...]:
    raw = item.get("goto")
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (GotoRule(raw),)
    if not isinstance(raw, list):
        raise check.fail(item, "goto", "'goto' must be a node name or a list of {if, to}")
    rules = []
    for rule in raw:
        rule = check.mapping(rule, item, "goto", "a goto rule")
        check.unknown_keys(rule, {"if", "to"}, "a goto rule")
        target = check.typed(rule, "to", str, "goto")
        if not target:
            raise check.fail(rule, None, "a goto rule needs 'to'")
        rules.append(GotoRule(target, check.condition(rule, "if", rule.get("if"))))
    return tuple(rules)
