"""Benchmark: `tea --version` through the AppImage vs the onedir run directly vs a PyInstaller onefile.

    python benchmarks/startup.py [--appimage FILE] [--onedir-tea FILE] [--venv DIR] [--app-dir DIR]
                                 [--onefile-dir DIR] [--baseline-appimage FILE] [--runs 20]

Goals: the AppImage (runtime + FUSE mount + AppRun + the onedir) within 1.3x of the onedir, and a
onefile build (which unpacks itself to /tmp on every start) at least 5x slower than the AppImage.
The AppImage is timed as a first run (it mounts the image itself, nothing of it cached) and
back-to-back (right after another run, whose lingering shared mount it joins).
The onefile is built once with the LLM build venv's PyInstaller, on the release's build host (the
build root), with the pipeline's own arguments (release/freeze.py) except `--onefile`, and kept in
--onefile-dir, keyed by what went into it.
"AppRun in a held mount" runs the mounted AppImage's AppRun while one mount stays up (its files
cached): the floor for any run through FUSE. --baseline-appimage adds another AppImage (e.g. an
older release's) for before/after in one run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

from _common import (alternate, first_and_back_to_back, header, input_flags, load_average, mounted, ratio,
                     require, scratch_dir, timed_run)

from release import config, freeze, hosts
from release.config import Flavor
from release.digest import Digests

LLM = Flavor("python-llm", "", llm=True)


def onefile_args(work: Path, venv: Path, host: hosts.BuildHost) -> list[str]:
    return ["--onefile" if arg == "--onedir" else arg for arg in freeze.pyinstaller_args(LLM, work, venv, host.inside)]


def ensure_onefile(root: Path, venv: Path, app_dir: Path) -> Path:
    """The cached onefile `tea` for this venv and app, built (~30 s) when missing."""
    host = hosts.select(config.resolve(flavor=LLM.name, build_dir=root))
    args = onefile_args(root, venv, host)
    key = hashlib.sha256(f"{venv}\0{Digests().tree(app_dir)}\0{args}".encode()).hexdigest()[:16]
    work = root / key
    tea = work / "dist" / "tea"
    if tea.exists():
        return tea
    work.mkdir(parents=True, exist_ok=True)
    entry = freeze.write_entry_scripts(work)
    print(f"building the onefile tea in {work} on the {host.kind} (once)", flush=True)
    host.run([host.inside(venv / "bin" / "pyinstaller"), *onefile_args(work, venv, host), "--log-level", "WARN",
              str(entry)], what="PyInstaller --onefile",
             env={"PYTHONPATH": str(app_dir), "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "0"})
    return tea


def version_runner(command: Path, extra_env: dict[str, str] | None = None):
    env = {**os.environ, **(extra_env or {})}
    return lambda: timed_run([str(command), "--version"], env=env)[0]


def variants(args: argparse.Namespace, onefile: Path, scratch: Path, held: Path) -> dict:
    chosen = first_and_back_to_back(scratch, "AppImage", lambda env: version_runner(args.appimage, env))
    chosen |= {"onedir": version_runner(args.onedir_tea), "onefile": version_runner(onefile),
               "AppRun in a held mount": version_runner(held / "AppRun")}
    if args.baseline_appimage:
        chosen |= first_and_back_to_back(scratch, "baseline AppImage",
                                         lambda env: version_runner(args.baseline_appimage, env))
    return chosen


def report(results: dict[str, dict[str, float]]) -> None:
    for name, result in results.items():
        print(f"{name:32s} {result['wall'] * 1000:7.1f} ms  CPU {result['cpu'] * 1000:7.1f} ms")
    print(f"load average after: {load_average()}")
    onedir, onefile = results["onedir"]["wall"], results["onefile"]["wall"]
    for name in [name for name in results if "AppImage" in name]:
        ratio(f"{name} / onedir", results[name]["wall"] / onedir, 1.3, at_most=True)
        ratio(f"onefile / {name}", onefile / results[name]["wall"], 5.0, at_most=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    input_flags(parser, "appimage", "onedir_tea", "venv", "app_dir")
    parser.add_argument("--onefile-dir", type=Path, default=Path("/tmp/tea-bench-onefile"))
    parser.add_argument("--baseline-appimage", type=Path, help="also time this AppImage")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    require(args, "appimage", "onedir_tea", "venv", "app_dir")
    onefile = ensure_onefile(args.onefile_dir, args.venv, args.app_dir)
    header("tea --version", args.runs)
    with scratch_dir("tea-startup-bench-") as scratch, mounted(args.appimage) as held:
        report(alternate(variants(args, onefile, scratch, held), args.runs, warmup=1))


if __name__ == "__main__":
    main()
