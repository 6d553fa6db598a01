"""Validate an agent document and build the immutable `Agent`; every error names file:line:column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .actions import action_specs
from .agent import END, START, Agent, Edge, GotoRule, LlmSettings, Node
from .errors import AgentError
from .yaml_loader import Located, load_yaml_file

TOP_KEYS = {"name", "description", "version", "variables", "state_schema", "initial_state", "settings",
            "nodes", "edges"}
NODE_KEYS = {"name", "description", "action", "uses", "params", "with", "output", "goto"}
EDGE_KEYS = {"from", "to", "when"}
GOTO_KEYS = {"to", "if"}
LLM_KEYS = {"backend": str, "model_path": str, "n_ctx": int, "n_threads": int, "n_gpu_layers": int,
            "api_base": str, "model": str}
STATE_TYPES = {"str", "int", "float", "bool", "list", "dict", "any"}


class _Checker:
    """Raises AgentErrors located in the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, mapping: Any, key: str | None, message: str) -> AgentError:
        line, column = mapping.where(key) if isinstance(mapping, Located) else (0, 0)
        return AgentError(f"{self.path}:{line}:{column}: {message}")

    def keys(self, mapping: Any, allowed: set[str], what: str) -> Located:
        if not isinstance(mapping, Located):
            raise self.fail(mapping, None, f"{what} must be a mapping")
        for key in mapping:
            if key not in allowed:
                raise self.fail(mapping, key, f"unknown key '{key}' in {what} (allowed: {', '.join(sorted(allowed))})")
        return mapping

    def typed(self, mapping: Located, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = mapping.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int):
            raise self.fail(mapping, key, f"{what}.{key} has the wrong type ({type(value).__name__})")
        return value


def load_agent(path: Path) -> Agent:
    """Read and validate `path`."""
    return parse_agent(load_yaml_file(path), path)


def parse_agent(document: Located, path: Path) -> Agent:
    check = _Checker(path)
    check.keys(document, TOP_KEYS, "the agent")
    nodes = _nodes(check, document)
    names = {node.name for node in nodes}
    return Agent(
        path=path,
        name=str(document.get("name") or path.stem),
        nodes=nodes,
        edges=_edges(check, document, names),
        state_schema=_state_schema(check, document),
        initial_state=dict(check.typed(document, "initial_state", dict, "agent") or {}),
        variables=dict(check.typed(document, "variables", dict, "agent") or {}),
        llm=_llm_settings(check, document),
    )


def _nodes(check: _Checker, document: Located) -> tuple[Node, ...]:
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


def _one_of(check: _Checker, item: Located, first: str, second: str, required: bool) -> Any:
    if first in item and second in item:
        raise check.fail(item, second, f"use either '{first}' or '{second}', not both")
    if required and first not in item and second not in item:
        raise check.fail(item, None, f"node needs '{first}' (or '{second}')")
    return item.get(first, item.get(second))


def _node(check: _Checker, item: Any) -> Node:
    check.keys(item, NODE_KEYS, "a node")
    name = check.typed(item, "name", str, "node")
    if not name or name in (START, END):
        raise check.fail(item, "name", "every node needs a 'name' (not __start__/__end__)")
    action = _one_of(check, item, "uses", "action", required=True)
    specs = action_specs()
    if action not in specs:
        raise check.fail(item, "uses" if "uses" in item else "action",
                         f"unknown action '{action}' (known: {', '.join(sorted(specs))})")
    params = _one_of(check, item, "with", "params", required=False) or {}
    _check_params(check, item, action, params)
    output = check.typed(item, "output", (str, dict), "node")
    return Node(name, action, dict(params), output, _goto(check, item), item.mark[0])


def _check_params(check: _Checker, item: Located, action: str, params: Any) -> None:
    key = "with" if "with" in item else "params"
    if not isinstance(params, dict):
        raise check.fail(item, key, f"'{key}' must be a mapping")
    spec = action_specs()[action]
    unknown = set(params) - spec.params if spec.params is not None else set()
    missing = spec.required - set(params)
    if unknown or missing:
        problem = f"unknown parameter '{min(unknown)}'" if unknown else f"missing parameter '{min(missing)}'"
        raise check.fail(item, key, f"{action}: {problem}")


def _goto(check: _Checker, item: Located) -> tuple[GotoRule, ...]:
    raw = item.get("goto")
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (GotoRule(raw),)
    if not isinstance(raw, list):
        raise check.fail(item, "goto", "'goto' must be a node name or a list of {if, to}")
    rules = []
    for rule in raw:
        check.keys(rule, GOTO_KEYS, "a goto rule")
        rules.append(GotoRule(check.typed(rule, "to", str, "goto") or "", check.typed(rule, "if", (str, bool), "goto")))
    return tuple(rules)


def _edges(check: _Checker, document: Located, names: set[str]) -> tuple[Edge, ...]:
    raw = document.get("edges") or []
    if not isinstance(raw, list):
        raise check.fail(document, "edges", "'edges' must be a list")
    edges = []
    for item in raw:
        check.keys(item, EDGE_KEYS, "an edge")
        source, target = check.typed(item, "from", str, "edge"), check.typed(item, "to", str, "edge")
        if source not in names | {START}:
            raise check.fail(item, "from", f"edge from unknown node '{source}'")
        if target not in names | {END}:
            raise check.fail(item, "to", f"edge to unknown node '{target}'")
        edges.append(Edge(source, target, check.typed(item, "when", (str, bool), "edge")))
    return tuple(edges)


def _state_schema(check: _Checker, document: Located) -> dict[str, str]:
    schema = check.typed(document, "state_schema", dict, "agent") or {}
    for key, kind in schema.items():
        if kind not in STATE_TYPES:
            raise check.fail(schema, key, f"state_schema.{key}: unknown type '{kind}' "
                                          f"(use one of: {', '.join(sorted(STATE_TYPES))})")
    return dict(schema)


def _llm_settings(check: _Checker, document: Located) -> LlmSettings:
    settings = check.keys(document.get("settings", Located()), {"llm"}, "settings")
    llm = check.keys(settings.get("llm", Located()), set(LLM_KEYS), "settings.llm")
    values = {key: check.typed(llm, key, kind, "settings.llm")
              for key, kind in LLM_KEYS.items() if llm.get(key) is not None}
    if values.get("backend", "auto") not in ("auto", "local", "api", "openai"):
        raise check.fail(llm, "backend", "settings.llm.backend must be auto, local, api or openai")
    return LlmSettings(**values)
