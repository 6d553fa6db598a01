"""Fixtures of the application tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def write_agent(tmp_path):
    """Write an agent YAML text into tmp_path and return its path."""
    def write(text: str, name: str = "agent.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write
