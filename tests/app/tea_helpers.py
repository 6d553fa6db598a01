"""Helpers for the application tests: run the installed `tea` console script as a subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TEA = Path(sys.executable).parent / "tea"
INSTALL_HINT = "llama-cpp-python not installed. Install with: pip install the_edge_agent[llm-local]"
PROLOG_INSTALL_HINT = ("Prolog support is not installed (janus-swi and SWI-Prolog 9.1 or newer). "
                       "Install with: pip install the_edge_agent[prolog]")

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed in this environment (pip install './python[llm-local]')",
)


def run_tea(*args: str, tea: Path = TEA, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`tea ARGS` with the test's environment (HOME etc. already isolated) plus `env`."""
    return subprocess.run([str(tea), *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def final_state(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A failing run: non-zero exit, exactly one stderr line (run with --quiet), no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@dataclass(frozen=True)
class AgentCase:
    """One agent of a suite, its input and the part of the final state it promises; a suite's
    subclass says where its agents are (AGENTS)."""

    AGENTS: ClassVar[Path]
    id: str
    agent: str
    inputs: dict[str, Any]
    expected: dict[str, Any]
    absent: tuple[str, ...] = ()
    args: tuple[str, ...] = field(default=())
    #: load warnings the agent is expected to have (ignored edges, an action this tea lacks)
    warnings: int = 0

    @property
    def path(self) -> Path:
        return self.AGENTS / self.agent
