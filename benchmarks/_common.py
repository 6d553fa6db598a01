"""Shared by the benchmarks: where the release inputs are, alternating runs, medians and ratios.

Benchmarks report, they do not assert: a missed goal is printed, the exit code stays 0. A missing
input is a user mistake and ends the run with one line (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from release import config, freeze, hosts, model, venv  # noqa: E402
from release.appdir import appdir_path  # noqa: E402

FLAVOR = "python-llm"
MODEL = "gemma-3-270m"


@dataclass(frozen=True)
class Defaults:
    """Where a finished `invoke release --model gemma-3-270m` left each input of the benchmarks."""

    appimage: Path
    appdir: Path
    onedir_tea: Path
    app_dir: Path
    venv: Path
    model: Path
    runtime: Path


def defaults() -> Defaults:
    settings = config.resolve(flavor=FLAVOR, model=MODEL, build_dir=REPO / "build", out=REPO / "dist")
    flavor = settings.flavors[0]
    return Defaults(appimage=settings.appimage_path(flavor), appdir=appdir_path(settings, flavor),
                    onedir_tea=freeze.onedir(settings, flavor) / "tea", app_dir=freeze.app_dir(settings, flavor),
                    venv=venv.venv_dir(settings, hosts.select(settings), flavor), model=model.cached_model_path(settings),
                    runtime=settings.arch_dir / "runtime" / f"runtime-{settings.arch}")


INPUTS = {"appimage": "the LLM AppImage", "appdir": "the LLM AppDir", "onedir_tea": "the onedir tea",
          "app_dir": "the_edge_agent as installed for the build", "venv": "the LLM build venv",
          "model": "the plain GGUF model", "runtime": "the AppImage runtime"}


def input_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """One `--name PATH` flag per input, defaulting to where the release build left it."""
    found = defaults()
    for name in names:
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, default=getattr(found, name),
                            help=f"{INPUTS[name]}, default %(default)s")


def require(args: argparse.Namespace, *names: str) -> None:
    """Exit with one line naming the flag when an input is missing."""
    for name in names:
        path = getattr(args, name)
        if path is None or not path.exists():
            raise SystemExit(f"{INPUTS[name]} not found at {path}: build it with "
                             f"`invoke release --model {MODEL}`, or pass --{name.replace('_', '-')}")


def alternate(variants: dict[str, Callable[[], dict[str, float]]], runs: int,
              warmup: int = 0) -> dict[str, dict[str, float]]:
    """Run the variants in turn (A, B, A, B ...), `warmup` unrecorded rounds first, so drift in
    load, page cache or CPU clock hits all alike; return each variant's median of every measure."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for round_number in range(warmup + runs):
        for name, measure in variants.items():
            result = measure()
            if round_number >= warmup:
                samples[name].append(result)
    return {name: {key: statistics.median(run[key] for run in runs_) for key in runs_[0]}
            for name, runs_ in samples.items()}


def timed(work: Callable[[], object]) -> dict[str, float]:
    """Wall seconds of `work()` and the CPU seconds (user+sys) of the child processes it ran."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    work()
    return {"wall": time.perf_counter() - started, "cpu": _children_cpu() - cpu_before}


def timed_run(command: list[str], env: dict[str, str] | None = None) -> tuple[dict[str, float], subprocess.CompletedProcess]:
    """`timed` for one command that must succeed (`env` replaces the environment); also returns its output."""
    done: list[subprocess.CompletedProcess] = []
    times = timed(lambda: done.append(subprocess.run(command, env=env, capture_output=True, text=True)))
    if done[0].returncode != 0:
        raise SystemExit(f"{command[0]} failed (exit {done[0].returncode}): {done[0].stderr.strip()[-300:]}")
    return times, done[0]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def mounted(appimage: Path) -> Iterator[Path]:
    """The AppImage mounted by its own runtime (`--appimage-mount`) for the duration of the block."""
    runtime = subprocess.Popen([str(appimage), "--appimage-mount"], stdout=subprocess.PIPE, text=True)
    try:
        mountpoint = runtime.stdout.readline().strip()
        if not mountpoint:
            raise SystemExit(f"{appimage} --appimage-mount printed no mount point")
        yield Path(mountpoint)
    finally:
        runtime.terminate()
        runtime.wait()


def first_and_back_to_back(scratch: Path, label: str, make: Callable[[dict[str, str]], Callable[[], dict[str, float]]]
                           ) -> dict[str, Callable[[], dict[str, float]]]:
    """The two ways a run of an AppImage starts, as measures for `alternate`, named "<label>, ...":
    - first run: it mounts the image itself (APPIMAGE_MOUNT_LINGER=0: the mount goes with the run),
      so nothing of the image's files is in the kernel's cache of that mount;
    - back-to-back: right after another run, whose shared mount it joins, files still cached.
    Each has a TMPDIR of its own under scratch/label, so no run joins another's mount (a baseline
    left to the default linger would be timed warm). make(env) returns a timed run with env added
    to the environment (a runtime without shared mounts ignores both)."""
    first, again = scratch / label / "first-run", scratch / label / "back-to-back"
    for directory in (first, again):
        directory.mkdir(parents=True, exist_ok=True)
    cold = make({"TMPDIR": str(first), "APPIMAGE_MOUNT_LINGER": "0"})
    before, timed_again = (make({"TMPDIR": str(again), "APPIMAGE_MOUNT_LINGER": "2"}) for _ in range(2))
    return {f"{label}, first run": cold, f"{label}, back-to-back": lambda: (before(), timed_again())[1]}


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory that is removed only once no shared mount lingers in it any more."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        try:
            yield Path(scratch)
        finally:
            deadline = time.monotonic() + 30
            while scratch in Path("/proc/mounts").read_text() and time.monotonic() < deadline:
                time.sleep(0.1)


def header(title: str, runs: int) -> None:
    print(f"{title}: median of {runs} alternating runs each; load average before: {load_average()}", flush=True)


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg()) + f" on {os.cpu_count()} cores"


def ratio(label: str, value: float, goal: float, *, at_most: bool) -> None:
    """One line: the ratio, the goal, and whether it was met."""
    met = value <= goal if at_most else value >= goal
    print(f"{label}: {value:.2f}x  (goal {'<=' if at_most else '>='} {goal:.2f}x: {'met' if met else 'MISSED'})")
