"""The application tests' modules (tests/app), imported from their files by the end-to-end tests that run
the same cases through the AppImages (tests/ is not a package, and tests/app has two `cases` modules)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

APP_TESTS = Path(__file__).resolve().parents[1] / "app"


def load(path: Path):
    """Import `path` under a unique name, with its own directory and tests/app importable meanwhile."""
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    sys.path[:0] = [str(path.parent), str(APP_TESTS)]
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.path[:2]
    return module
