"""Benchmark: release build time in the Debian build root (the default) versus `--base host`.

    python benchmarks/buildroot.py [--runs 3] [--cold] [--scratch DIR]

- warm: `invoke release --flavor all --model gemma-3-270m --packager builtin` without the checks,
  into a fresh build and dist dir with the shared cache (build root, CPython, llama wheel and
  venvs already made): the per-build work, freeze to manifest. Root and host alternate.
- rerun: the same command again in the same dirs, nothing changed: goal <= 1 s.
- cold (--cold; about an hour on 2 cores): the same with an empty tea-release cache: the root
  pays debootstrap, CPython and llama.cpp, the host llama.cpp. One run each, caches deleted after.
Goal: the warm build in the root within 1.25x of the host build (the price of chroot).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import REPO, MODEL, alternate, header, load_average, ratio, timed_run

BASES = {"build root": "bullseye", "host": "host"}
ARGS = ["release", "--arch", "x86_64", "--flavor", "all", "--model", MODEL, "--packager", "builtin",
        "--skip", "smoke,functional,systems"]


def release(base: str, work: Path, cache: Path | None) -> dict[str, float]:
    """One `invoke release` into `work`; wall/CPU seconds plus the steps' own seconds."""
    env = {**os.environ, **({"TEA_RELEASE_CACHE": str(cache)} if cache else {})}
    times, _ = timed_run([sys.executable, "-m", "invoke", *ARGS, "--base", base, "--build-dir", str(work / "build"),
                          "--out", str(work / "dist")], env=env)
    steps = json.loads((work / "dist" / "manifest.json").read_text())["step_seconds"]
    return {**times, "freeze": sum(v for k, v in steps.items() if k.startswith("freeze-"))}


def fresh_then_rerun(base: str, scratch: Path, cache: Path | None = None) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(dir=scratch, prefix=f"bench-{base}-"))
    try:
        first = release(base, work, cache)
        again = release(base, work, cache)
        return {**first, "rerun": again["wall"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cold(base: str, scratch: Path) -> dict[str, float]:
    cache = Path(tempfile.mkdtemp(dir=scratch, prefix=f"bench-cache-{base}-"))
    try:
        return fresh_then_rerun(base, scratch, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def report(results: dict[str, dict[str, float]]) -> None:
    for name, result in results.items():
        print(f"{name:11s} build {result['wall']:7.1f} s (CPU {result['cpu']:7.1f} s, freeze {result['freeze']:5.1f} s)"
              f"   no-change rerun {result['rerun']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also measure each from an empty cache (~1 h)")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    os.chdir(REPO)
    args.scratch.mkdir(parents=True, exist_ok=True)
    header("warm release build (freeze .. manifest, both flavors)", args.runs)
    warm = alternate({name: lambda base=base: fresh_then_rerun(base, args.scratch) for name, base in BASES.items()},
                     args.runs, warmup=1)
    report(warm)
    if args.cold:
        print("cold release build (empty tea-release cache), one run each:", flush=True)
        report({name: cold(base, args.scratch) for name, base in BASES.items()})
    print(f"load average after: {load_average()}")
    ratio("warm build root / host", warm["build root"]["wall"] / warm["host"]["wall"], 1.25, at_most=True)
    ratio("no-change rerun in the build root (seconds, as a ratio to 1 s)", warm["build root"]["rerun"], 1.0,
          at_most=True)


if __name__ == "__main__":
    main()
