"""What an action sees while it runs: the agent, the live state and the output callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .agent import Agent


def _silent(_: str) -> None:
    """Default sink for progress lines and tokens."""


@dataclass
class RunContext:
    agent: Agent
    state: dict[str, Any]
    progress: Callable[[str], None] = _silent
    on_token: Callable[[str], None] | None = None
