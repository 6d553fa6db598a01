"""`tea inspect`: an agent's structure as text, JSON (the document itself, as upstream prints it) or
Graphviz DOT. Text and DOT show the flow this tea will follow: goto rules, edges, implicit chaining
and parallel fan-out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .agent import END, START, Agent, Condition, Node
from .engine import describe

FORMATS = ("text", "json", "dot")


def transitions(agent: Agent) -> Iterator[tuple[str, str, Condition, str]]:
    """(from, to, condition, kind) for every way control can move; kind: goto|edge|next|parallel."""
    for edge in agent.edges:
        if edge.source == START:
            yield START, edge.target, edge.condition or edge.when, "edge"
    if not any(edge.source == START for edge in agent.edges):
        yield START, agent.nodes[0].name, None, "next"
    for position, node in enumerate(agent.nodes):
        yield from _from_node(agent, node, position)


def _from_node(agent: Agent, node: Node, position: int) -> Iterator[tuple[str, str, Condition, str]]:
    if node.goto:
        for rule in node.goto:
            yield node.name, rule.target, rule.condition, "goto"
        return
    edges = [edge for edge in agent.edges if edge.source == node.name]
    for edge in edges:
        if edge.parallel:
            yield node.name, edge.target, f"fan-in {edge.fan_in}", "parallel"
        else:
            condition = edge.condition if edge.condition is None or edge.when else f"not ({edge.condition})"
            yield node.name, edge.target, condition or edge.when, "edge"
    if any(edge.parallel for edge in edges):
        yield node.name, next(edge.fan_in for edge in edges if edge.parallel) or END, "after the branches", "next"
    elif not edges:
        following = agent.nodes[position + 1].name if position + 1 < len(agent.nodes) else END
        yield node.name, following, None, "next"


def as_text(agent: Agent) -> str:
    lines = [f"Agent: {agent.name}"] + ([f"Description: {agent.description}"] if agent.description else [])
    lines.append(f"Nodes ({len(agent.nodes)}):")
    lines += [f"  {node.name} [{describe(node)}]" + (" (fan-in)" if node.fan_in else "") for node in agent.nodes]
    moves = list(transitions(agent))
    lines.append(f"Flow ({len(moves)}):")
    for source, target, condition, kind in moves:
        arrow = "=>" if kind == "parallel" else "->"
        note = f" [{kind}: {condition}]" if condition not in (None, True) else f" [{kind}]"
        lines.append(f"  {source} {arrow} {target}{note}")
    if agent.variables:
        lines.append("Variables:")
        lines += [f"  {key}: {value}" for key, value in agent.variables.items()]
    return "\n".join(lines)


def as_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)


def _quoted(text: Any) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def as_dot(agent: Agent) -> str:
    lines = [f"digraph {_quoted(agent.name)} {{", "  rankdir=TB;", "  node [shape=box];",
             f'  {_quoted(START)} [label="START", shape=ellipse];', f'  {_quoted(END)} [label="END", shape=ellipse];']
    lines += [f"  {_quoted(node.name)} [label={_quoted(f'{node.name} [{describe(node)}]')}];" for node in agent.nodes]
    for source, target, condition, kind in transitions(agent):
        attributes = ["style=dashed"] if kind == "parallel" else []
        if condition not in (None, True):
            attributes.append(f"label={_quoted(condition)}")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"  {_quoted(source)} -> {_quoted(target)}{suffix};")
    lines.append("}")
    return "\n".join(lines)
