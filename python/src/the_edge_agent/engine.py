"""Run an agent: from the first node, run a node, merge what it returns into the state, pick the next
(`navigation`), fork at parallel edges (`parallel`), until `__end__`.

What a node returns: a dict is merged; with `output: key` the result is stored under `key`; with an
`output:` mapping each entry is a template over `result` (also `action_result`); any other result
without `output` is stored as `result`, as upstream does.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from .actions import action_specs
from .agent import (END, ActionBody, Agent, CodeBody, ExpressionBody, LoopBody, Node, PrologBody, Step, StepsBody,
                    UnsupportedBody)
from .conditions import holds_or_warn
from .context import RunContext
from .errors import ActionError, InputError, TeaError
from .inline_code import run_code
from .navigation import first_node, next_node, parallel_edges
from .parallel import run_branches
from .templating import render, render_text

MAX_STEPS = 1000
PYTHON_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}


def run_agent(agent: Agent, inputs: dict[str, Any], progress: Callable[[str], None] | None = None,
              on_token: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None,
              secrets: dict[str, Any] | None = None, stream_all: bool = False) -> dict[str, Any]:
    """Run to `__end__` and return the final state."""
    check_inputs(agent, inputs)
    ctx = RunContext(agent, {**copy.deepcopy(agent.initial_state), **inputs}, on_token=on_token,
                     stream_all=stream_all, variables=copy.deepcopy(agent.variables), secrets=dict(secrets or {}))
    ctx.progress = progress or ctx.progress
    ctx.warn = warn or ctx.warn
    walk(first_node(agent, ctx), ctx)
    return ctx.state


def check_inputs(agent: Agent, inputs: dict[str, Any]) -> None:
    for key, value in inputs.items():
        expected = PYTHON_TYPES.get(agent.state_schema.get(key, "any"))
        if expected and (not isinstance(value, expected) or isinstance(value, bool) and expected is not bool):
            raise InputError(f"input '{key}' must be {agent.state_schema[key]}, got {type(value).__name__}")


def walk(current: str, ctx: RunContext, stop_before: str | None = None) -> None:
    """Run nodes from `current` until `__end__` (or, in a parallel branch, its fan-in node)."""
    agent = ctx.agent
    for step in range(1, MAX_STEPS + 1):
        if current in (END, stop_before):
            return
        node = agent.node(current)
        result = run_node(node, ctx, step)
        forks = parallel_edges(agent, node)
        if forks:
            ctx.state["parallel_results"] = run_branches(forks, ctx, walk)
            current = forks[0].fan_in or END
        else:
            current = next_node(agent, node, ctx, result, stop_before)
    raise ActionError(f"agent '{agent.name}' did not reach __end__ after {MAX_STEPS} steps (a goto/edge loop?)")


def run_node(node: Node, ctx: RunContext, step: int) -> dict[str, Any]:
    """Run the node, merge its updates; errors are prefixed with the node's location."""
    ctx.progress(f"[{step}] {node.name} ({describe(node)})")
    started = time.perf_counter()
    try:
        updates = execute(node, ctx)
    except TeaError as error:
        if not error.locatable:
            raise
        raise type(error)(f"{ctx.agent.path}:{node.line}: node '{node.name}': {error}") from None
    ctx.state.update(updates)
    ctx.progress(f"[{step}] {node.name} done in {time.perf_counter() - started:.2f}s")
    return updates


def describe(step: Step) -> str:
    body = step.body
    if isinstance(body, ActionBody):
        return body.action
    return {CodeBody: "run", PrologBody: "prolog", ExpressionBody: "expression", StepsBody: "steps", LoopBody: "while_loop",
            UnsupportedBody: "unsupported"}.get(type(body), "no-op")


def execute(step: Step, ctx: RunContext) -> dict[str, Any]:
    """The state updates of one node or step."""
    result = _RUNNERS[type(step.body)](step.body, ctx) if step.body is not None else {}
    return _updates(step, result, ctx)


def _updates(step: Step, result: Any, ctx: RunContext) -> dict[str, Any]:
    if isinstance(step.output, str):
        return {step.output: result}
    if isinstance(step.output, dict):
        scope = ctx.scope(result=result, action_result=result)
        rendered = {key: render(template, scope) for key, template in step.output.items()}
        return {key: "" if value is None else value for key, value in rendered.items()}
    if result is None:
        return {}
    return result if isinstance(result, dict) else {"result": result}


class ActionTable(Mapping):
    """The `actions` of inline code: `actions["llm.call"](state=state, messages=[...])`."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def __getitem__(self, name: str) -> Callable[..., Any]:
        spec = action_specs()[name]
        return lambda state=None, **params: spec.run(params, self.ctx)

    def __iter__(self) -> Iterator[str]:
        return iter(action_specs())

    def __len__(self) -> int:
        return len(action_specs())


def _run_action(body: ActionBody, ctx: RunContext) -> Any:
    spec = action_specs().get(body.action)
    if spec is None:
        raise ActionError(f"action '{body.action}' is not available in this tea "
                          f"(available: {', '.join(sorted(action_specs()))})")
    return spec.run(render(body.params, ctx.scope()), ctx)


def _code_names(ctx: RunContext) -> dict[str, Any]:
    names = {"state": dict(ctx.state), "variables": ctx.variables, "secrets": ctx.secrets,
             "actions": ActionTable(ctx)}
    if "parallel_results" in ctx.state:
        names["parallel_results"] = ctx.state["parallel_results"]
    return names


def _run_code(body: CodeBody, ctx: RunContext) -> Any:
    source = render_text(body.source, ctx.scope())
    return run_code(source, str(ctx.agent.path), body.line, _code_names(ctx))


def _run_prolog(body: PrologBody, ctx: RunContext) -> dict[str, Any]:
    from .prolog import run_prolog  # janus and SWI-Prolog load only when a Prolog node runs

    return run_prolog(body.source, ctx.state, body.line, ctx.agent.prolog_timeout)


def _run_expression(body: ExpressionBody, ctx: RunContext) -> dict[str, Any]:
    return {body.output_key: run_code(f"return ({body.expression})", str(ctx.agent.path), 1, _code_names(ctx))}


def _run_steps(steps: tuple[Step, ...], ctx: RunContext) -> None:
    for step in steps:
        try:
            ctx.state.update(execute(step, ctx))
        except TeaError as error:
            raise type(error)(f"step '{step.name}': {error}") from None


def _run_steps_body(body: StepsBody, ctx: RunContext) -> dict[str, Any]:
    local = replace(ctx, state=dict(ctx.state))
    _run_steps(body.steps, local)
    return local.state


def _run_loop(body: LoopBody, ctx: RunContext) -> dict[str, Any]:
    """The condition is checked before each pass; the state carries over from pass to pass."""
    local = replace(ctx, state=dict(ctx.state))
    for _ in range(body.max_iterations):
        if not holds_or_warn(body.condition, local.scope(), ctx.warn):
            break
        _run_steps(body.body, local)
    return local.state


def _run_unsupported(body: UnsupportedBody, ctx: RunContext) -> Any:
    raise ActionError(f"{body.what} is not supported by this tea")


_RUNNERS: dict[type, Callable[[Any, RunContext], Any]] = {
    ActionBody: _run_action, CodeBody: _run_code, PrologBody: _run_prolog, ExpressionBody: _run_expression,
    StepsBody: _run_steps_body, LoopBody: _run_loop, UnsupportedBody: _run_unsupported,
}
