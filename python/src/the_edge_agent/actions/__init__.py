"""The action registry: every name a node may `uses:`/`action:`, with the parameters it accepts.

Importing this package must stay cheap (no llama_cpp, no requests): `tea validate` uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..context import RunContext


@dataclass(frozen=True)
class ActionSpec:
    """`run(params, ctx)`; `params` None means any keys are accepted."""

    run: Callable[[dict[str, Any], RunContext], Any]
    params: frozenset[str] | None = None
    required: frozenset[str] = frozenset()


def action_specs() -> dict[str, ActionSpec]:
    from . import builtin, llm

    return {**builtin.ACTIONS, **llm.ACTIONS}
