"""Validate an agent document and build the immutable `Agent`; every error names file:line:column.

Keys that upstream documents but this tea does not implement (`config`, `imports`, `settings.auth`,
...) load with one warning each (see `schema_check`); nodes are parsed in `schema_nodes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .agent import END, START, Agent, Edge, LlmSettings
from .conditions import literal
from .schema_check import Checker
from .schema_nodes import parse_nodes
from .yaml_loader import Located, load_yaml_file

TOP_KEYS = {"name", "description", "version", "variables", "state_schema", "initial_state", "settings",
            "nodes", "edges"}
EDGE_KEYS = {"from", "to", "when", "condition", "type", "parallel", "fan_in"}
EDGE_TYPES = ("normal", "parallel", "entry", "finish")
LLM_KEYS = {"backend": str, "model_path": str, "n_ctx": int, "n_threads": int, "n_gpu_layers": int,
            "api_base": str, "model": str}
BACKENDS = ("auto", "local", "api", "openai")
STATE_TYPES = {"str", "int", "float", "bool", "list", "dict", "any"}


def load_agent(path: Path) -> Agent:
    """Read and validate `path`."""
    return parse_agent(load_yaml_file(path), path)


def parse_agent(document: Located, path: Path) -> Agent:
    check = Checker(path)
    check.unknown_keys(document, TOP_KEYS, "the agent")
    nodes = parse_nodes(check, document)
    names = {node.name for node in nodes}
    edges = _edges(check, document, names)
    _warn_shadowed_edges(check, document, {node.name for node in nodes if node.goto})
    return Agent(
        path=path,
        name=str(document.get("name") or path.stem),
        nodes=nodes,
        edges=edges,
        state_schema=_state_schema(check, document),
        initial_state=dict(check.typed(document, "initial_state", dict, "agent") or {}),
        variables=dict(check.typed(document, "variables", dict, "agent") or {}),
        llm=_llm_settings(check, document),
        prolog_timeout=_prolog_timeout(check, document),
        settings=dict(document.get("settings") or {}),
        description=str(document.get("description") or ""),
        warnings=tuple(check.warnings),
    )


def _edges(check: Checker, document: Located, names: set[str]) -> tuple[Edge, ...]:
    raw = document.get("edges") or []
    if not isinstance(raw, list):
        raise check.fail(document, "edges", "'edges' must be a list")
    edges = [edge for item in raw for edge in _edge(check, check.mapping(item, document, "edges", "an edge"), names)]
    for edge in edges:
        fan_ins = {other.fan_in for other in edges if other.parallel and other.source == edge.source}
        if edge.parallel and len(fan_ins) > 1:
            raise check.fail(raw[0], None, f"parallel edges from '{edge.source}' must share one fan_in node "
                                           f"(found {', '.join(sorted(fan_ins))})")
    return tuple(edges)


def _edge(check: Checker, item: Located, names: set[str]) -> list[Edge]:
    """One entry; `to:` may list several targets (parallel fan-out)."""
    check.unknown_keys(item, EDGE_KEYS, "an edge")
    kind = item.get("type", "normal")
    if kind not in EDGE_TYPES:
        raise check.fail(item, "type", f"edge type must be one of: {', '.join(EDGE_TYPES)}")
    source = check.typed(item, "from", str, "edge") or (START if kind == "entry" else None)
    targets = item.get("to")
    targets = [targets] if isinstance(targets, str) else targets
    if source not in names | {START}:
        raise check.fail(item, "from", f"edge from unknown node '{source}'")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise check.fail(item, "to", "an edge needs 'to': a node name (or a list of them)")
    for target in targets:
        if target not in names | {END}:
            raise check.fail(item, "to", f"edge to unknown node '{target}'")
    parallel = kind == "parallel" or check.typed(item, "parallel", bool, "edge") is True
    fan_in = check.typed(item, "fan_in", str, "edge")
    if parallel and fan_in not in names:
        raise check.fail(item, "fan_in", "a parallel edge needs 'fan_in:' naming the node that collects the results")
    if len(targets) > 1 and not parallel:
        raise check.fail(item, "to", "only a parallel edge may list several targets")
    when, condition = _edge_condition(check, item)
    return [Edge(source, target, when, condition, parallel, fan_in, item.mark[0]) for target in targets]


def _edge_condition(check: Checker, item: Located) -> tuple[Any, str | None]:
    """(`when`, `condition` expression). With `condition:`, `when` is the truth the condition must have."""
    when = check.condition(item, "when", item.get("when"))
    condition = item.get("condition")
    if condition is None:
        return when, None
    if isinstance(condition, Located):
        check.unknown_keys(condition, {"type", "value"}, "an edge condition")
        if condition.get("type") != "expression" or not isinstance(condition.get("value"), str):
            raise check.fail(item, "condition", "an edge condition needs type: expression and a value")
        condition = condition["value"]
    check.condition(item, "condition", condition)
    truth = literal(when)
    if truth is None:
        raise check.fail(item, "when", "with 'condition:', 'when' must be true or false")
    return truth, condition


def _warn_shadowed_edges(check: Checker, document: Located, with_goto: set[str]) -> None:
    for item in document.get("edges") or []:
        if item.get("from") in with_goto:
            check.warn(item, "from", f"edge from '{item['from']}' is ignored: that node has 'goto'")


def _state_schema(check: Checker, document: Located) -> dict[str, str]:
    schema = check.typed(document, "state_schema", dict, "agent") or {}
    types = {}
    for key, kind in schema.items():
        known = isinstance(kind, str) and kind in STATE_TYPES
        if not known:
            check.warn(schema, key, f"state_schema.{key}: type {kind!r} is not checked "
                                    f"(checked: {', '.join(sorted(STATE_TYPES))})")
        types[key] = kind if known else "any"
    return types


def _llm_settings(check: Checker, document: Located) -> LlmSettings:
    settings = check.mapping(document.get("settings", Located()), document, "settings", "settings")
    check.unknown_keys(settings, {"llm", "prolog"}, "settings")
    llm = check.mapping(settings.get("llm", Located()), settings, "llm", "settings.llm")
    check.unknown_keys(llm, set(LLM_KEYS), "settings.llm")
    values = {key: check.typed(llm, key, kind, "settings.llm")
              for key, kind in LLM_KEYS.items() if llm.get(key) is not None}
    if values.get("backend", "auto") not in BACKENDS:
        raise check.fail(llm, "backend", "settings.llm.backend must be auto, local, api or openai")
    return LlmSettings(**values)


def _prolog_timeout(check: Checker, document: Located) -> float:
    """`settings.prolog.timeout`: seconds, more than zero (default 30, the guide's)."""
    settings = check.mapping(document.get("settings", Located()), document, "settings", "settings")
    prolog = check.mapping(settings.get("prolog", Located()), settings, "prolog", "settings.prolog")
    check.unknown_keys(prolog, {"timeout"}, "settings.prolog")
    timeout = check.typed(prolog, "timeout", (int, float), "settings.prolog")
    if timeout is None:
        return Agent.prolog_timeout
    if timeout <= 0:
        raise check.fail(prolog, "timeout", "settings.prolog.timeout must be a number of seconds above 0")
    return float(timeout)
