"""Benchmark: reading a 2 GB file stored uncompressed in an AppImage vs reading it from the page cache.

    python benchmarks/fuse_read.py [--runtime FILE] [--baseline-runtime FILE] [--size-mb 2000]
                                   [--scratch DIR] [--runs 5]

What the bundled model costs at every `tea run`: the AppImage's AppRun is `cat "$APPDIR/<file>"
> /dev/null`, so the run reads the whole file through the runtime's FUSE server. Baseline: `cat`
of the same file, already in the page cache (the AppImage file is too, after the warm-up round).
The AppImage is timed as a first run (its own mount: the FUSE file's pages are not cached yet),
back-to-back (a run right after another one, joining its lingering shared mount) and with
extract-and-run (the fallback without FUSE: it copies the image to ~/.cache/appimage first, here
under --scratch, and deletes the copy after; the disk it needs is printed). Goal: at most 1.3x the page-cache read. --baseline-runtime adds an AppImage of the same contents made with
another runtime (e.g. an older release's), for before/after in one run. The data file (random
bytes, GGUF-named so mksquashfs stores it uncompressed) and the AppImages are kept in --scratch,
keyed by the runtime they were made with.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
from pathlib import Path

from _common import alternate, first_and_back_to_back, header, input_flags, load_average, ratio, require, timed_run

from release import appimage, squashfs

APPRUN = '#!/bin/sh\nexec cat "$APPDIR/usr/share/models/bundled.gguf" > /dev/null\n'


def data_dir(scratch: Path, size_mb: int) -> Path:
    """An AppDir holding size_mb MB of random bytes as a GGUF-named file (made once)."""
    root = scratch / f"appdir-{size_mb}MB"
    data = root / "usr/share/models/bundled.gguf"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        partial = data.with_name(".partial")
        with partial.open("wb") as out:
            for _ in range(size_mb):
                out.write(os.urandom(1_000_000))
        partial.rename(data)
        (root / "AppRun").write_text(APPRUN)
        (root / "AppRun").chmod(0o755)
    return root


def appimage_with(runtime: Path, appdir: Path, scratch: Path) -> Path:
    """The AppImage of appdir made with runtime (made once per runtime)."""
    key = hashlib.sha256(runtime.read_bytes()).hexdigest()[:12]
    out = scratch / f"{appdir.name}-{key}.AppImage"
    if not out.exists():
        with contextlib.redirect_stderr(io.StringIO()):
            image = squashfs.make_squashfs(appdir, out.with_name(f".{out.name}.building"), offset=runtime.stat().st_size)
            appimage.write_runtime_over(runtime, image, out)
    return out


def disk_of(tree: Path) -> int:
    return sum(path.stat().st_blocks * 512 for path in tree.rglob("*") if path.is_file())


def run_measure(command: list[str], extra_env: dict[str, str] | None = None):
    env = {**os.environ, **(extra_env or {})}
    return lambda: timed_run(command, env=env)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    input_flags(parser, "runtime")
    parser.add_argument("--baseline-runtime", type=Path, help="also time an AppImage made with this runtime")
    parser.add_argument("--size-mb", type=int, default=2000)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/tea-bench-fuse-read"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    require(args, "runtime")
    appdir = data_dir(args.scratch, args.size_mb)
    data = appdir / "usr/share/models/bundled.gguf"
    ours = appimage_with(args.runtime, appdir, args.scratch)
    variants = {"page cache": run_measure(["sh", "-c", 'exec cat "$0" > /dev/null', str(data)])}
    variants |= first_and_back_to_back(args.scratch / "tmp", "AppImage", lambda env: run_measure([str(ours)], env))
    variants["AppImage, extract-and-run"] = run_measure([str(ours)], {"APPIMAGE_EXTRACT_AND_RUN": "1",
                                                                      "XDG_CACHE_HOME": str(args.scratch / "cache")})
    if args.baseline_runtime:
        theirs = appimage_with(args.baseline_runtime, appdir, args.scratch)
        variants |= first_and_back_to_back(args.scratch / "tmp", "baseline runtime",
                                           lambda env: run_measure([str(theirs)], env))
    header(f"reading a {args.size_mb} MB file stored uncompressed in an AppImage", args.runs)
    results = alternate(variants, args.runs, warmup=1)
    for name, result in results.items():
        print(f"{name:32s} {result['wall']:6.2f} s  CPU {result['cpu']:6.2f} s  "
              f"{args.size_mb / result['wall']:6.0f} MB/s")
    print(f"extract-and-run needs {disk_of(appdir) / 1e6:.0f} MB in ~/.cache/appimage during each run; "
          f"load average after: {load_average()}")
    page_cache = results["page cache"]["wall"]
    for name in results:
        if name != "page cache":
            ratio(f"{name} / page cache", results[name]["wall"] / page_cache, 1.3, at_most=True)


if __name__ == "__main__":
    main()
