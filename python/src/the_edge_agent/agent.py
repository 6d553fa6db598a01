"""The validated, immutable form of a YAML agent (built by `schema.load_agent`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START = "__start__"
END = "__end__"


@dataclass(frozen=True)
class LlmSettings:
    """`settings.llm`: which backend to use and how to load a local model."""

    backend: str = "auto"
    model_path: str | None = None
    n_ctx: int = 2048
    n_threads: int | None = None
    n_gpu_layers: int = 0
    api_base: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class GotoRule:
    """One `goto` entry: jump to `target` when `condition` (a Jinja2 expression) holds or is absent."""

    target: str
    condition: str | bool | None = None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    when: str | bool | None = None


@dataclass(frozen=True)
class Node:
    name: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    output: str | dict[str, Any] | None = None
    goto: tuple[GotoRule, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Agent:
    path: Path
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...] = ()
    state_schema: dict[str, str] = field(default_factory=dict)
    initial_state: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    llm: LlmSettings = LlmSettings()

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    @property
    def base_dir(self) -> Path:
        """Relative model paths in the agent are relative to the agent file, not the cwd."""
        return self.path.resolve().parent
