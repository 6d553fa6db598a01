"""Which node runs next.

Precedence, as upstream documents it: the node's `goto` (first rule whose `if` holds), else its
edges in `edges:` (first that holds, in file order), else the next node in the list, else the end.
A node with parallel edges forks instead (see `parallel`); the run goes on at their fan-in node.
Inside a parallel branch, a node with neither goto nor edges leads to the fan-in node, not into the
node written after it (which is usually another branch's).
"""

from __future__ import annotations

from typing import Any

from .agent import END, START, Agent, Condition, Edge, Node
from .conditions import holds_or_warn
from .context import RunContext
from .errors import ActionError, TeaError


def _edge_holds(edge: Edge, scope: dict[str, Any], ctx: RunContext) -> bool:
    if edge.condition is None:
        return holds_or_warn(edge.when, scope, ctx.warn)
    return holds_or_warn(edge.condition, scope, ctx.warn) == edge.when


def _first(choices: list[tuple[Condition, str]], scope: dict[str, Any], ctx: RunContext, what: str) -> str:
    for condition, target in choices:
        if holds_or_warn(condition, scope, ctx.warn):
            return target
    raise ActionError(f"no {what} matched (add one without a condition as the default)")


def first_node(agent: Agent, ctx: RunContext) -> str:
    """The target of the first `__start__` edge that holds, else the first node."""
    starts = [edge for edge in agent.edges if edge.source == START]
    if not starts:
        return agent.nodes[0].name
    scope = ctx.scope()
    for edge in starts:
        if _edge_holds(edge, scope, ctx):
            return edge.target
    raise ActionError(f"{agent.path}: no edge from __start__ matched")


def parallel_edges(agent: Agent, node: Node) -> list[Edge]:
    return [edge for edge in agent.edges if edge.source == node.name and edge.parallel and not node.goto]


def next_node(agent: Agent, node: Node, ctx: RunContext, result: dict[str, Any], fan_in: str | None = None) -> str:
    """`result` is what the node returned: goto conditions may read it as `result`; `fan_in` is set
    inside a parallel branch."""
    try:
        if node.goto:
            rules = [(rule.condition, rule.target) for rule in node.goto]
            return _first(rules, ctx.scope(result=result), ctx, "goto rule")
        outgoing = [edge for edge in agent.edges if edge.source == node.name and not edge.parallel]
        if outgoing:
            scope = ctx.scope()
            for edge in outgoing:
                if _edge_holds(edge, scope, ctx):
                    return edge.target
            raise ActionError("no edge matched (add one without a condition as the default)")
    except TeaError as error:
        raise type(error)(f"{agent.path}:{node.line}: after node '{node.name}': {error}") from None
    if fan_in:
        return fan_in
    names = [n.name for n in agent.nodes]
    position = names.index(node.name) + 1
    return names[position] if position < len(names) else END
