"""Reproducible squashfs images of an AppDir with `mksquashfs` (squashfs-tools 4.5+).

The GGUF model is stored uncompressed through mksquashfs's `uncompressed` action: it compresses
by ~6% at 10-50x the time, and uncompressed blocks are also the fastest to read through FUSE
(the runtime splices them straight from the AppImage file, release/runtime/fs.c). In the LLM
flavor the code is stored uncompressed too (stored_uncompressed): the model makes up ~98% of that
AppImage, so compressing the code saves ~1.5% of it (71 MiB of 4.6 GB), while decompressing it
made a first `tea --version` ~70 ms slower (368 vs 296 ms median, onedir 173 ms, at load 5 on
2 cores). Elsewhere code is compressed with zstd level 3, measured against gzip and other zstd
levels on a 47 MB Python tree (2 cores): zstd-3 0.3 s/13.2 MB, zstd-9 1.2 s/12.1 MB, zstd-15
(default) 8.2 s/11.4 MB, gzip-6 2.0 s/12.7 MB, gzip-9 5.2 s/12.6 MB, xz 19 s/10.6 MB
(benchmarks/packaging.py --explain).

File data is written in the order `priorities` gives (mksquashfs `-sort`, highest first; anything
unlisted in between, at 0): the release puts the model first and tea's own code last, so a new
release of tea leaves every byte before that code where it was (release/delta.py).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from . import log, proc
from .errors import BuildError

DEFAULT_LEVELS = {"zstd": 3, "gzip": 9, "xz": None, "lz4": None, "lzo": None}
MODELS = ("*.gguf",)


def stored_uncompressed(llm: bool) -> tuple[str, ...]:
    """The names mksquashfs stores uncompressed: the models, and in the LLM flavor everything."""
    return ("*",) if llm else MODELS


EARLIEST_TIME = 1  # SWI-Prolog takes a library file dated 0 for one never loaded and reloads it forever


def source_date_epoch() -> int:
    """The fixed timestamp for every file and the image: SOURCE_DATE_EPOCH, else (and never below)
    1970-01-01 00:00:01."""
    try:
        return max(int(os.environ.get("SOURCE_DATE_EPOCH", EARLIEST_TIME)), EARLIEST_TIME)
    except ValueError:
        raise BuildError("SOURCE_DATE_EPOCH must be an integer (seconds since 1970)") from None


def mksquashfs_command(appdir: Path, out: Path, *, compression: str = "zstd",
                       level: int | None = None, uncompressed_globs=MODELS,
                       offset: int = 0, sort_file: Path | None = None) -> list[str]:
    """The mksquashfs invocation: deterministic (fixed times, root ownership, no host xattrs)."""
    if compression not in DEFAULT_LEVELS:
        raise BuildError(f"unknown squashfs compression '{compression}': use one of "
                         f"{'|'.join(DEFAULT_LEVELS)}")
    level = level if level is not None else DEFAULT_LEVELS[compression]
    epoch = str(source_date_epoch())
    command = ["mksquashfs", str(appdir), str(out), "-noappend", "-quiet", "-no-progress",
               "-comp", compression, "-reproducible", "-all-root", "-no-xattrs",
               "-mkfs-time", epoch, "-all-time", epoch]
    if level is not None:
        command += ["-Xcompression-level", str(level)]
    if offset:
        command += ["-offset", str(offset)]
    if sort_file is not None:
        command += ["-sort", str(sort_file)]
    for glob in uncompressed_globs:
        command += ["-action", f"uncompressed@name({glob})"]
    return command


def sort_lines(tree: Path, priorities: Sequence[tuple[str, int]]) -> list[str]:
    """`-sort` lines for the paths of `tree` that match a pattern (fnmatch on the path relative to
    the tree), with the first matching pattern's priority. A matched directory is one line: its
    files inherit its priority. Paths with white space are left out (the sort file cannot name them)."""
    lines = []
    for directory, subdirectories, files in os.walk(tree):
        subdirectories.sort()
        for name in sorted(subdirectories + files):
            relative = (Path(directory) / name).relative_to(tree).as_posix()
            priority = next((value for pattern, value in priorities if fnmatchcase(relative, pattern)), None)
            if priority is None or any(character.isspace() for character in relative):
                continue
            lines.append(f"{relative} {priority}")
            if name in subdirectories:
                subdirectories.remove(name)
    return lines


def make_squashfs(appdir: Path, out: Path, *, compression: str = "zstd", level: int | None = None,
                  uncompressed_globs=MODELS, offset: int = 0,
                  priorities: Sequence[tuple[str, int]] = ()) -> Path:
    """Deterministic image of `appdir` at `out` (after `offset` reserved bytes, if given), its
    files' data in the order of `priorities` ((fnmatch pattern, -32768..32767), highest first)."""
    if shutil.which("mksquashfs") is None:
        raise BuildError("mksquashfs not found: apt-get install squashfs-tools")
    if not appdir.is_dir():
        raise BuildError(f"AppDir {appdir} does not exist")
    partial = out.with_name(f".{out.name}.partial")
    sort_file = out.with_name(f".{out.name}.sort")
    lines = sort_lines(appdir, priorities)
    sort_file.write_text("".join(f"{line}\n" for line in lines))
    command = mksquashfs_command(appdir, partial, compression=compression, level=level,
                                 uncompressed_globs=uncompressed_globs, offset=offset,
                                 sort_file=sort_file if lines else None)
    started = time.monotonic()
    # mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times: ours already honour it.
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    try:
        proc.run(command, what=f"mksquashfs of {appdir}", env=env, clean_env=True)
    except BuildError:
        partial.unlink(missing_ok=True)
        raise
    finally:
        sort_file.unlink(missing_ok=True)
    os.replace(partial, out)
    log.info(f"squashfs {out.name}: {log.human_bytes(out.stat().st_size - offset)} "
             f"({compression}) in {time.monotonic() - started:.1f} s")
    return out
