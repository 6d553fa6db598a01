"""What an action sees while it runs: the agent, the live state, the run's values and its output sinks."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .agent import Agent


def _silent(_: str) -> None:
    """Default sink for progress lines, warnings and tokens."""


@dataclass
class RunContext:
    agent: Agent
    state: dict[str, Any]
    progress: Callable[[str], None] = _silent
    #: Where streamed LLM tokens go (None: nowhere); `stream_all` streams every LLM call (`--stream`),
    #: otherwise only `llm.stream` does.
    on_token: Callable[[str], None] | None = None
    stream_all: bool = False
    #: Problems that do not stop the run (a condition that cannot be evaluated, a failed LLM call).
    warn: Callable[[str], None] = _silent
    #: The agent's `variables`, shared by every node of the run: inline code may change them.
    variables: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)

    def scope(self, **extra: Any) -> dict[str, Any]:
        """The names a template sees; `extra` adds e.g. a node's `result`."""
        return {"state": self.state, "variables": self.variables, "secrets": self.secrets, "env": os.environ,
                "settings": self.agent.settings, **extra}
