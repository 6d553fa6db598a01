"""Run an agent: from `__start__`, execute a node, merge its result into the state, pick the next.

The next node is: the node's `goto` (first rule whose `if` holds), else its outgoing edges (first
whose `when` holds), else the next node in file order, else `__end__`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from .actions import action_specs
from .agent import END, START, Agent, Node
from .context import RunContext
from .errors import ActionError, InputError, TeaError
from .templating import evaluate, render

MAX_STEPS = 1000
PYTHON_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}


def run_agent(agent: Agent, inputs: dict[str, Any], progress: Callable[[str], None] | None = None,
              on_token: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run to `__end__` and return the final state."""
    check_inputs(agent, inputs)
    ctx = RunContext(agent, {**copy.deepcopy(agent.initial_state), **inputs}, on_token=on_token)
    if progress:
        ctx.progress = progress
    current = first_node(agent)
    for step in range(1, MAX_STEPS + 1):
        if current == END:
            return ctx.state
        node = agent.node(current)
        ctx.progress(f"[{step}] {node.name} ({node.action})")
        started = time.perf_counter()
        run_node(node, ctx)
        ctx.progress(f"[{step}] {node.name} done in {time.perf_counter() - started:.2f}s")
        current = next_node(agent, node, ctx)
    raise ActionError(f"agent '{agent.name}' did not reach __end__ after {MAX_STEPS} steps (a goto/edge loop?)")


def check_inputs(agent: Agent, inputs: dict[str, Any]) -> None:
    for key, value in inputs.items():
        expected = PYTHON_TYPES.get(agent.state_schema.get(key, "any"))
        if expected and (not isinstance(value, expected) or isinstance(value, bool) and expected is not bool):
            raise InputError(f"input '{key}' must be {agent.state_schema[key]}, got {type(value).__name__}")


def first_node(agent: Agent) -> str:
    starts = [edge.target for edge in agent.edges if edge.source == START]
    return starts[0] if starts else agent.nodes[0].name


def run_node(node: Node, ctx: RunContext) -> None:
    """Render params, run the action, apply `output`; errors are prefixed with the node's location."""
    template_context = {"state": ctx.state, "variables": ctx.agent.variables}
    try:
        result = action_specs()[node.action].run(render(node.params, template_context), ctx)
        ctx.state.update(_updates(node, result, template_context))
    except TeaError as error:
        if not error.locatable:
            raise
        raise type(error)(f"{ctx.agent.path}:{node.line}: node '{node.name}': {error}") from None


def _updates(node: Node, result: Any, template_context: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node.output, str):
        return {node.output: result}
    if isinstance(node.output, dict):
        return render(node.output, {**template_context, "action_result": result})
    return result if isinstance(result, dict) else {}


def holds(condition: str | bool | None, ctx: RunContext) -> bool:
    """An absent condition holds; `!name` negates; a string is a Jinja2 expression over state keys."""
    if condition is None or isinstance(condition, bool):
        return condition is not False
    expression = condition.strip()
    if expression.startswith("!"):
        expression = f"not ({expression[1:]})"
    names = {**ctx.state, "state": ctx.state, "variables": ctx.agent.variables}
    return bool(evaluate(expression, names))


def next_node(agent: Agent, node: Node, ctx: RunContext) -> str:
    try:
        if node.goto:
            return _first_match([(rule.condition, rule.target) for rule in node.goto], ctx)
        outgoing = [(edge.when, edge.target) for edge in agent.edges if edge.source == node.name]
        if outgoing:
            return _first_match(outgoing, ctx)
    except TeaError as error:
        raise type(error)(f"{agent.path}:{node.line}: after node '{node.name}': {error}") from None
    names = [n.name for n in agent.nodes]
    position = names.index(node.name) + 1
    return names[position] if position < len(names) else END


def _first_match(choices: list[tuple[str | bool | None, str]], ctx: RunContext) -> str:
    for condition, target in choices:
        if holds(condition, ctx):
            return target
    raise ActionError("no goto/edge condition matched")
