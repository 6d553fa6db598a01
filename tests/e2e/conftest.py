"""Inputs of the end-to-end tests: the release `invoke test` has just built with the 270M model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def prepared(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set: end-to-end tests run through `invoke test`, after a real release")
    return Path(value)


@pytest.fixture(scope="session")
def dist() -> Path:
    return prepared("TEA_TEST_DIST")


@pytest.fixture(scope="session")
def build_dir() -> Path:
    return prepared("TEA_TEST_BUILD")


@pytest.fixture(scope="session")
def release_cache() -> Path:
    """The real tea-release cache (venvs, wheel, model, rootfs), only read by these tests."""
    return prepared("TEA_TEST_CACHE")


@pytest.fixture(scope="session")
def llm_appimage(dist) -> Path:
    return next(dist.glob("tea-python-llm-*-x86_64.AppImage"))


@pytest.fixture(scope="session")
def plain_appimage(dist) -> Path:
    return next(p for p in dist.glob("tea-python-*-x86_64.AppImage") if "-llm-" not in p.name)


@pytest.fixture(scope="session")
def invoke(release_cache):
    """Run an invoke task of this repo against the real cache; returns the CompletedProcess."""

    def run(*args: str, cwd: Path = REPO, timeout: float = 1800, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        env = {**os.environ, "TEA_RELEASE_CACHE": str(release_cache), **(env or {})}
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)

    return run
