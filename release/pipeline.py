"""The release as an ordered list of small steps, run by one runner.

A step's fingerprint is derived, never hand-listed:
- code: the source of the step's module and of every `release` module it imports, transitively;
- inputs: what `inputs()` returns, with every `Path` replaced by the content digest of that file
  or tree (release.digest);
- after: the outcome of each step it depends on, i.e. that step's fingerprint and the digests of
  the artifacts it registered, so a rebuilt AppDir with other content repackages the AppImage.
A step reruns when its fingerprint differs from its stamp, when one of its stamped artifacts is
missing or has another digest now, or when forced. The runner is the only place that logs, times,
skips and stamps, so steps hold only their work.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import log, proc
from .artifacts import Artifact, Kind, Registry
from .config import Settings
from .digest import Digests

PACKAGE = __name__.rpartition(".")[0]
PACKAGE_DIR = Path(__file__).resolve().parent


class Step(Protocol):
    name: str
    after: tuple[str, ...]  # names of earlier steps whose artifacts this one uses

    def inputs(self, ctx: Context) -> dict[str, Any]: ...
    def skip_reason(self, ctx: Context) -> str | None: ...
    def run(self, ctx: Context) -> dict[str, Any] | None: ...


class BaseStep:
    """Defaults for the optional parts of the Step protocol."""

    name = ""
    after: tuple[str, ...] = ()

    def inputs(self, ctx: Context) -> dict[str, Any]:
        return {}

    def skip_reason(self, ctx: Context) -> str | None:
        return None


@dataclass
class Context:
    """Shared state of one run: settings, the artifact registry, what each finished step recorded."""

    settings: Settings
    force: frozenset[str] = frozenset()
    host: Any = None  # the run's build host (release.hosts.select), chosen once by the caller
    artifacts: Registry = field(default_factory=Registry)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    produced: dict[str, list[Artifact]] = field(default_factory=dict)  # step name -> its artifacts
    running: str = ""  # the step whose run() is under way: it owns what gets registered
    digests: Digests = field(init=False)

    def __post_init__(self) -> None:
        self.digests = Digests(self.stamp_dir / "digests.json")

    @property
    def stamp_dir(self) -> Path:
        return self.settings.arch_dir / "stamps"

    @property
    def log_dir(self) -> Path:
        return self.settings.arch_dir / "logs"

    def register(self, kind: Kind, path: Path, *, flavor: str | None = None, digest: str | None = None,
                 **extra: Any) -> Artifact:
        """Record what the running step produced; `digest` when the caller already knows it."""
        path = Path(path)
        if digest is not None and path.is_file():
            self.digests.remember(path, digest)
        artifact = Artifact(kind, path, digest or self.digests.of(path), flavor, extra)
        self.artifacts.add(artifact)
        self.produced.setdefault(self.running, []).append(artifact)
        return artifact


# --- code: the import closure of a step's module --------------------------------------------------

def _source_of(module: str) -> Path | None:
    """The .py file of a `release` module (None for anything outside the package)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    relative = Path(*module.split(".")[1:])
    candidates = [PACKAGE_DIR / relative / "__init__.py"]
    if relative.parts:
        candidates.insert(0, PACKAGE_DIR / relative.with_suffix(".py"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _imported(module: str, source: Path) -> set[str]:
    """Modules of the package that `source` imports (`from . import x` names modules too)."""
    package = module if source.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if _source_of(name)}


def code_files(module: str, digests: Digests | None = None) -> tuple[Path, ...]:
    """The module's own file (wherever it lives) and every package module it reaches by imports.

    Parsing is memoized by file content in `digests`' store, so a no-change rerun parses nothing.
    """
    digests = digests or Digests()
    own = _source_of(module) or Path(sys.modules[module].__file__ or "")
    seen, todo = {module: own}, [module]
    while todo:
        current = todo.pop()
        key = f"imports {current} {digests.file(seen[current])}"
        for name in digests.memo(key, lambda: sorted(_imported(current, seen[current]))):
            if name not in seen:
                seen[name] = _source_of(name)
                todo.append(name)
    return tuple(sorted(set(seen.values())))


def _display(path: Path) -> str:
    return path.relative_to(PACKAGE_DIR.parent).as_posix() if path.is_relative_to(PACKAGE_DIR.parent) else path.name


def code_digests(step: Step, digests: Digests) -> dict[str, str]:
    return {_display(path): digests.file(path) for path in code_files(type(step).__module__, digests)}


# --- fingerprints and stamps -------------------------------------------------------------------

def input_digests(step: Step, ctx: Context) -> dict[str, str]:
    """Each input as a short digest: paths by content, everything else by its JSON form."""
    def digest(value: Any) -> str:
        if isinstance(value, Path):
            return ctx.digests.of(value)
        return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    return {key: digest(value) for key, value in step.inputs(ctx).items()}


def material(step: Step, ctx: Context) -> dict[str, Any]:
    return {"code": code_digests(step, ctx.digests), "inputs": input_digests(step, ctx),
            "after": {name: ctx.outcomes.get(name, "") for name in step.after}, "arch": ctx.settings.arch}


def fingerprint_of(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def outcome(fingerprint: str, artifacts: list[Artifact]) -> str:
    """What dependants see of a step: its fingerprint and the content of what it produced."""
    produced = sorted((a.kind.value, a.flavor or "", a.digest) for a in artifacts)
    return fingerprint_of({"fingerprint": fingerprint, "artifacts": produced})


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


def why_stale(step: Step, ctx: Context, parts: dict[str, Any], stamp: dict[str, Any] | None) -> str | None:
    """None when the stamp still holds; otherwise the reason, naming what changed."""
    if step.name in ctx.force:
        return "forced"
    if stamp is None or "material" not in stamp:
        return "never built here"
    old = stamp["material"]
    for section in ("code", "inputs", "after"):
        changed = sorted(k for k in {*old.get(section, {}), *parts[section]}
                         if old.get(section, {}).get(k) != parts[section].get(k))
        if changed:
            return f"{section} changed: {', '.join(changed)}"
    if old.get("arch") != parts["arch"]:
        return "arch changed"
    for artifact in map(Artifact.from_json, stamp.get("artifacts", [])):
        if ctx.digests.of(artifact.path) != artifact.digest:
            return f"{artifact.path} was modified or removed"
    return None


def record(ctx: Context, step: Step, fingerprint: str, result: dict[str, Any], artifacts: list[Artifact],
           seconds: float) -> None:
    ctx.results[step.name] = result
    ctx.timings[step.name] = seconds
    ctx.outcomes[step.name] = outcome(fingerprint, artifacts)


def run_step(step: Step, ctx: Context) -> None:
    """Run one step unless it is skipped or up to date; record its artifacts either way."""
    reason = step.skip_reason(ctx)
    if reason:
        log.info(f"{step.name}: skipped ({reason})")
        ctx.results[step.name] = {"skipped": reason}
        ctx.outcomes[step.name] = fingerprint_of({"skipped": reason})
        return
    stamp_path = ctx.stamp_dir / f"{step.name}.json"
    parts, stamp = material(step, ctx), _read_stamp(stamp_path)
    fingerprint = fingerprint_of(parts)
    stale = why_stale(step, ctx, parts, stamp)
    if stale is None:
        artifacts = [ctx.artifacts.add(Artifact.from_json(a)) for a in stamp.get("artifacts", [])]
        ctx.produced[step.name] = artifacts
        log.info(f"{step.name}: up to date")
        record(ctx, step, fingerprint, stamp["result"], artifacts, stamp.get("seconds", 0.0))
        return
    log.info(f"{step.name}: running ({stale})")
    started = time.monotonic()
    stamp_path.unlink(missing_ok=True)
    ctx.running, ctx.produced[step.name] = step.name, []
    with proc.logging_to(ctx.log_dir / f"{step.name}.log"):
        result = step.run(ctx) or {}
    artifacts = ctx.produced[step.name]
    record(ctx, step, fingerprint, result, artifacts, round(time.monotonic() - started, 2))
    _write_stamp(stamp_path, {"material": parts, "result": result, "seconds": ctx.timings[step.name],
                              "artifacts": [a.to_json() for a in artifacts]})
    ctx.digests.save()
    log.info(f"{step.name}: done in {ctx.timings[step.name]:.1f} s")


def run(steps: list[Step], ctx: Context) -> Context:
    try:
        for step in steps:
            run_step(step, ctx)
    finally:
        ctx.digests.save()
    return ctx


def dry_run(steps: list[Step], ctx: Context) -> list[tuple[str, str | None]]:
    """(step, reason it would run or None) for each step, without running anything. A step after
    one that would run is reported stale too: what the earlier one will produce is unknown."""
    report: list[tuple[str, str | None]] = []
    rerun: set[str] = set()
    for step in steps:
        if step.skip_reason(ctx):
            ctx.outcomes[step.name] = fingerprint_of({"skipped": step.skip_reason(ctx)})
            continue
        waits_for = [name for name in step.after if name in rerun]
        stamp = _read_stamp(ctx.stamp_dir / f"{step.name}.json")
        reason = f"after {', '.join(waits_for)}" if waits_for else None
        if reason is None:
            parts = material(step, ctx)
            reason = why_stale(step, ctx, parts, stamp)
            if reason is None:
                artifacts = [Artifact.from_json(a) for a in stamp.get("artifacts", [])]
                ctx.outcomes[step.name] = outcome(fingerprint_of(parts), artifacts)
        if reason:
            rerun.add(step.name)
        report.append((step.name, reason))
    ctx.digests.save()
    return report
