"""The release as an ordered list of small steps, run by one runner.

Each step declares what it depends on (`inputs`) and what it produces (`outputs`); the runner
hashes the inputs — plus the step's own source code and the fingerprints of the steps it comes
after — and skips a step whose fingerprint and outputs are unchanged since its last success.
The runner is the only place that logs, times, skips and stamps, so steps hold only their work.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from . import log
from .config import Settings


class Step(Protocol):
    name: str
    after: tuple[str, ...]  # names of earlier steps whose results this one uses

    def inputs(self, ctx: "Context") -> dict[str, Any]: ...
    def outputs(self, ctx: "Context") -> list[Path]: ...
    def skip_reason(self, ctx: "Context") -> str | None: ...
    def run(self, ctx: "Context") -> dict[str, Any]: ...


class BaseStep:
    """Defaults for the optional parts of the Step protocol."""

    name = ""
    after: tuple[str, ...] = ()

    def inputs(self, ctx: "Context") -> dict[str, Any]:
        return {}

    def outputs(self, ctx: "Context") -> list[Path]:
        return []

    def skip_reason(self, ctx: "Context") -> str | None:
        return None


@dataclass
class Context:
    """Shared state of one run: settings, and what each finished step recorded."""

    settings: Settings
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    force: frozenset[str] = frozenset()

    @property
    def stamp_dir(self) -> Path:
        return self.settings.arch_dir / "stamps"


def _is_generated(path: Path) -> bool:
    return any(part == "__pycache__" or part.endswith(".egg-info") for part in path.parts)


def hash_tree(root: Path, pattern: str = "**/*") -> str:
    """A digest of file names and contents under root (ignores caches), for fingerprints."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.glob(pattern) if p.is_file() and not _is_generated(p)):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_of(*modules: ModuleType) -> str:
    """A digest of the modules a step calls into, so changing them reruns the step."""
    return hash_files([Path(inspect.getsourcefile(module)) for module in modules])


def fingerprint(step: Step, ctx: Context) -> str:
    material = {
        "inputs": step.inputs(ctx),
        "code": hashlib.sha256(Path(inspect.getsourcefile(type(step))).read_bytes()).hexdigest(),
        "after": {name: ctx.fingerprints.get(name, "") for name in step.after},
        "arch": ctx.settings.arch,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_stamp(path: Path, stamp: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def record(ctx: Context, name: str, current: str, result: dict[str, Any], seconds: float) -> None:
    """Later steps are fingerprinted on what this one produced (e.g. the AppImage's path and
    sha256), not only on its inputs: a rebuilt artifact is checked again."""
    ctx.results[name] = result
    ctx.timings[name] = seconds
    outcome = json.dumps([current, result], sort_keys=True, default=str)
    ctx.fingerprints[name] = hashlib.sha256(outcome.encode()).hexdigest()


def run_step(step: Step, ctx: Context) -> None:
    """Run one step unless it is skipped or already up to date; record its result either way."""
    reason = step.skip_reason(ctx)
    if reason:
        log.info(f"{step.name}: skipped ({reason})")
        ctx.results[step.name] = {"skipped": reason}
        return
    stamp_path = ctx.stamp_dir / f"{step.name}.json"
    current = fingerprint(step, ctx)
    stamp = _read_stamp(stamp_path)
    up_to_date = (stamp is not None and stamp.get("fingerprint") == current
                  and step.name not in ctx.force and all(p.exists() for p in step.outputs(ctx)))
    if up_to_date:
        log.info(f"{step.name}: up to date")
        record(ctx, step.name, current, stamp["result"], stamp.get("seconds", 0.0))
        return
    log.info(f"{step.name}: running")
    started = time.monotonic()
    stamp_path.unlink(missing_ok=True)
    result = step.run(ctx) or {}
    record(ctx, step.name, current, result, round(time.monotonic() - started, 2))
    _write_stamp(stamp_path, {"fingerprint": current, "result": result, "seconds": ctx.timings[step.name]})
    log.info(f"{step.name}: done in {ctx.timings[step.name]:.1f} s")


def run(steps: list[Step], ctx: Context) -> Context:
    for step in steps:
        run_step(step, ctx)
    return ctx
