"""Parallel edges: fan out from a node to several branches, run them at once, join at the fan-in node.

Each branch runs on its own copy of the state, from its first node until it reaches the fan-in node
(or the end). The fan-in node then runs once, on the state of the fork plus `parallel_results`: one
`BranchResult` per branch, in the order the edges are written.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from .agent import Edge
from .context import RunContext

#: walk(first node, branch context, stop before this node)
Walk = Callable[[str, RunContext, str], None]


class BranchResult(dict):
    """`{branch, success, state, error, timing_ms}`, upstream's shape. Reading a key it does not have
    reads the branch's final state, so `result["answer"]`, `result.get("answer")` and, in templates,
    `result.answer` all work."""

    def __missing__(self, key: Any) -> Any:
        state = dict.get(self, "state") or {}
        if key in state:
            return state[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in (dict.get(self, "state") or {})

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default


def _run_branch(edge: Edge, ctx: RunContext, walk: Walk) -> BranchResult:
    label = f"[{edge.target}] "
    branch = replace(ctx, state=copy.deepcopy(ctx.state), progress=lambda line: ctx.progress(label + line))
    started = time.perf_counter()
    walk(edge.target, branch, edge.fan_in or "")
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    return BranchResult(branch=edge.target, success=True, state=branch.state, error=None, timing_ms=elapsed_ms)


def run_branches(edges: Sequence[Edge], ctx: RunContext, walk: Walk) -> list[BranchResult]:
    """All branches at once, in threads; the first failing branch (in edge order) fails the run."""
    with ThreadPoolExecutor(max_workers=len(edges), thread_name_prefix="tea-branch") as pool:
        futures = [pool.submit(_run_branch, edge, ctx, walk) for edge in edges]
        return [future.result() for future in futures]
