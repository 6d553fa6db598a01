"""Benchmark: `tea --version` through the AppImage vs the onedir run directly vs a PyInstaller onefile.

    python benchmarks/startup.py [--appimage FILE] [--onedir-tea FILE] [--venv DIR] [--app-dir DIR]
                                 [--onefile-dir DIR] [--runs 20]

Goals: the AppImage (runtime + FUSE mount + AppRun + the onedir) within 1.3x of the onedir, and a
onefile build (which unpacks itself to /tmp on every start) at least 5x slower than the AppImage.
The onefile is built once with the LLM build venv's PyInstaller, on the release's build host (the
build root), with the pipeline's own arguments (release/freeze.py) except `--onefile`, and kept in
--onefile-dir, keyed by what went into it.
"AppRun in a held mount" runs the mounted AppImage's AppRun while one mount stays up: the
difference to "AppImage" is the runtime's own cost (open, mount, unmount, cold FUSE cache).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from _common import alternate, header, input_flags, load_average, mounted, ratio, require, timed_run

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
    entry = work / "tea_entry.py"
    entry.write_text(freeze.ENTRY_SCRIPT)
    print(f"building the onefile tea in {work} on the {host.kind} (once)", flush=True)
    host.run([host.inside(venv / "bin" / "pyinstaller"), *onefile_args(work, venv, host), "--log-level", "WARN",
              str(entry)], what="PyInstaller --onefile",
             env={"PYTHONPATH": str(app_dir), "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "0"})
    return tea


def version_runner(command: Path):
    return lambda: timed_run([str(command), "--version"])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    input_flags(parser, "appimage", "onedir_tea", "venv", "app_dir")
    parser.add_argument("--onefile-dir", type=Path, default=Path("/tmp/tea-bench-onefile"))
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    require(args, "appimage", "onedir_tea", "venv", "app_dir")
    onefile = ensure_onefile(args.onefile_dir, args.venv, args.app_dir)
    header("tea --version", args.runs)
    with mounted(args.appimage) as mountpoint:
        results = alternate({"AppImage": version_runner(args.appimage), "onedir": version_runner(args.onedir_tea),
                             "onefile": version_runner(onefile),
                             "AppRun in a held mount": version_runner(mountpoint / "AppRun")}, args.runs, warmup=1)
    for name, result in results.items():
        print(f"{name:23s} {result['wall'] * 1000:7.1f} ms  CPU {result['cpu'] * 1000:7.1f} ms")
    print(f"load average after: {load_average()}")
    ratio("AppImage / onedir", results["AppImage"]["wall"] / results["onedir"]["wall"], 1.3, at_most=True)
    ratio("onefile / AppImage", results["onefile"]["wall"] / results["AppImage"]["wall"], 5.0, at_most=False)


if __name__ == "__main__":
    main()
