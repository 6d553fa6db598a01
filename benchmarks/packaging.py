"""Benchmark: building the LLM AppImage from its AppDir vs `cp` of its model (goal: <= 1.5x cp).

    python benchmarks/packaging.py [--appdir DIR] [--runtime FILE] [--model FILE] [--scratch DIR]
                                   [--runs 5] [--explain]

Candidate: the pipeline's one-pass builtin packager (release/package.py AppImageStep): mksquashfs
writes the image behind a gap the size of the runtime, then the runtime is written into the gap
(a missing --runtime is compiled into the scratch dir first).
Baseline: `cp` of the GGUF to the same file system, the least any packager has to do. Outputs are
deleted after every run. The breakdown packs the two halves of the AppDir on their own: the code
(zstd, as in the plain flavor; the LLM flavor stores it uncompressed) and the model (stored
uncompressed); for a multi-GB model the ratio tends to the model part's. `--explain` also times the code part at zstd levels 3/9/15, and both parts with one
mksquashfs processor, without duplicate detection and with 1 MiB blocks: where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import alternate, header, input_flags, load_average, ratio, require, timed

from release import appimage, runtime_build, squashfs

EXPLAIN_LEVELS = (3, 9, 15)
EXPLAIN_OPTIONS = (("-processors", "1"), ("-no-duplicates",), ("-b", "1M"))


def build_appimage(appdir: Path, runtime: Path, out: Path) -> None:
    """Exactly the pipeline's calls, quiet (they log a line each)."""
    with contextlib.redirect_stderr(io.StringIO()):
        image = squashfs.make_squashfs(appdir, out.with_name(f".{out.name}.building"),
                                       offset=runtime.stat().st_size,
                                       uncompressed_globs=squashfs.stored_uncompressed(llm=True))
        appimage.write_runtime_over(runtime, image, out)


def linked_subtree(appdir: Path, target: Path, *, models: bool) -> Path:
    """A hard-linked copy of the AppDir with only its models (models=True) or all but them."""
    def ignore(directory: str, names: list[str]) -> list[str]:
        return [name for name in names if os.path.isfile(os.path.join(directory, name))
                and name.endswith(".gguf") != models]

    shutil.copytree(appdir, target, symlinks=True, copy_function=os.link, ignore=ignore)
    return target


def squashfs_command(tree: Path, out: Path, level: int | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    return squashfs.mksquashfs_command(tree, out, level=level) + list(extra)


def measured(work: Callable[[], object], out: Path) -> Callable[[], dict[str, float]]:
    """A measure for `alternate`: time `work`, note the size of `out`, then delete it."""
    def measure() -> dict[str, float]:
        result = timed(work)
        result["MiB"] = out.stat().st_size / (1 << 20)
        out.unlink()
        return result
    return measure


def run_command(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True)


def variants(args: argparse.Namespace, scratch: Path, runtime: Path) -> dict[str, Callable[[], dict[str, float]]]:
    code, models = (linked_subtree(args.appdir, scratch / name, models=name == "models") for name in ("code", "models"))
    out = scratch / "out"
    chosen = {
        "appimage": measured(lambda: build_appimage(args.appdir, runtime, out), out),
        "cp model": measured(lambda: run_command(["cp", str(args.model), str(out)]), out),
        "code part": measured(lambda: run_command(squashfs_command(code, out)), out),
        "model part": measured(lambda: run_command(squashfs_command(models, out)), out),
    }
    if args.explain:
        for level in EXPLAIN_LEVELS:
            chosen[f"code zstd-{level}"] = measured(lambda level=level: run_command(squashfs_command(code, out, level)), out)
        for extra in EXPLAIN_OPTIONS:
            for name, tree in (("code", code), ("model", models)):
                chosen[f"{name} {' '.join(extra)}"] = measured(
                    lambda tree=tree, extra=extra: run_command(squashfs_command(tree, out, extra=extra)), out)
    return chosen


def report(results: dict[str, dict[str, float]], model_size: int) -> None:
    mib = model_size / (1 << 20)
    for name, result in results.items():
        print(f"{name:24s} {result['wall']:7.2f} s  CPU {result['cpu']:6.2f} s  {result['MiB']:6.1f} MiB")
    cp, model_part = results["cp model"]["wall"], results["model part"]["wall"]
    print(f"model {mib:.0f} MiB: cp {mib / cp:.0f} MiB/s, mksquashfs (stored) {mib / model_part:.0f} MiB/s; "
          f"load average after: {load_average()}")
    ratio("AppImage build / cp of the model", results["appimage"]["wall"] / cp, 1.5, at_most=True)
    ratio("  model part alone / cp (the ratio a multi-GB model tends to)", model_part / cp, 1.5, at_most=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    input_flags(parser, "appdir", "runtime", "model")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()),
                        help="where outputs are written (same file system as the model, ideally)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--explain", action="store_true", help="also time the parts at other settings")
    args = parser.parse_args()
    require(args, "appdir", "model")
    if os.stat(args.scratch).st_dev != os.stat(args.model).st_dev:
        print(f"note: {args.scratch} and {args.model} are on different file systems")
    header("packaging the LLM AppImage vs cp of its model", args.runs)
    with tempfile.TemporaryDirectory(prefix="tea-packaging-bench-", dir=args.scratch) as scratch:
        runtime = args.runtime if args.runtime.exists() else runtime_build.build_runtime(Path(scratch))
        report(alternate(variants(args, Path(scratch), runtime), args.runs, warmup=1), args.model.stat().st_size)


if __name__ == "__main__":
    main()
