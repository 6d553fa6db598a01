"""The validated, immutable form of a YAML agent (built by `schema.load_agent`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

START = "__start__"
END = "__end__"

#: A condition as written: a Jinja2 expression/template, a bare state key, `!key`, or a boolean.
Condition = Union[str, bool, None]


@dataclass(frozen=True)
class LlmSettings:
    """`settings.llm` (and the `--backend`/`--gguf` overrides): which backend, which local model."""

    backend: str = "auto"
    model_path: str | None = None
    n_ctx: int = 2048
    n_threads: int | None = None
    n_gpu_layers: int = 0
    api_base: str | None = None
    model: str | None = None
    #: `tea run --gguf PATH`: ahead of every other place a model is looked for.
    gguf: str | None = None


@dataclass(frozen=True)
class GotoRule:
    """One `goto` entry: jump to `target` when `condition` holds or is absent."""

    target: str
    condition: Condition = None


@dataclass(frozen=True)
class Edge:
    """An `edges:` entry. With `condition:`, the edge is taken when the condition's truth equals `when`."""

    source: str
    target: str
    when: Condition = None
    condition: str | None = None
    parallel: bool = False
    fan_in: str | None = None
    line: int = 0


@dataclass(frozen=True)
class ActionBody:
    """`uses:`/`action:` with `with:`/`params:`."""

    action: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CodeBody:
    """`run:`/`script:` inline code; `line` is where the code starts in the agent file."""

    source: str
    line: int = 0


@dataclass(frozen=True)
class PrologBody:
    """Prolog code (`language: prolog`, a `% prolog` first line, or `run: {type: prolog, code: ...}`);
    `line` is where the code starts in the agent file."""

    source: str
    line: int = 0


@dataclass(frozen=True)
class ExpressionBody:
    """`run: {type: expression, value: ..., output_key: ...}`: a Python expression's value."""

    expression: str
    output_key: str = "result"


@dataclass(frozen=True)
class StepsBody:
    """`steps:`: several bodies in sequence, each seeing what the previous ones returned."""

    steps: tuple[Step, ...]


@dataclass(frozen=True)
class LoopBody:
    """`type: while_loop`: run `body` while `condition` holds, at most `max_iterations` times."""

    condition: str
    max_iterations: int
    body: tuple[Step, ...]


@dataclass(frozen=True)
class UnsupportedBody:
    """A node kind this tea does not implement: loading works, running the node fails saying `what`."""

    what: str


Body = Union[ActionBody, CodeBody, PrologBody, ExpressionBody, StepsBody, LoopBody, UnsupportedBody, None]


@dataclass(frozen=True)
class Step:
    """Something that runs and returns state updates: a node's or a step's body and its `output`."""

    name: str
    body: Body = None
    output: str | dict[str, Any] | None = None
    line: int = 0


@dataclass(frozen=True)
class Node(Step):
    goto: tuple[GotoRule, ...] = ()
    fan_in: bool = False


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
    #: `settings.prolog.timeout`: the most seconds one Prolog node may run (the guide's default).
    prolog_timeout: float = 30.0
    #: The `settings:` mapping as written, for templates (`{{ settings.llm.model }}`).
    settings: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: One line each, `file:line:column: warning: ...`: what was ignored while loading.
    warnings: tuple[str, ...] = ()

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    @property
    def base_dir(self) -> Path:
        """Relative model paths in the agent are relative to the agent file, not the cwd."""
        return self.path.resolve().parent
