"""Fuzzing: every way the AppImage runtime reads its image, under libFuzzer (not run in CI).

    python benchmarks/fuzz_runtime.py [--harness extract|floor|fuse] [--minutes 30] [--workdir DIR]

One harness per entry path, each built with the runtime's own sources (release/runtime/*.c):
  extract  benchmarks/fuzz_runtime.c: image_check, then extraction (all, then with a pattern)
  floor    benchmarks/fuzz_floor.c: image_check, then the glibc floor check (plain run, extract-and-run)
  fuse     benchmarks/fuzz_fuse.c: image_check, then the FUSE server's operations (fs.c) through
           libfuse's dispatch: lookups (absent names too), listings and their continuations,
           getattr, xattrs (absent names sharing a prefix too), reads, readlink
Each is built under clang's libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer, seeded with
squashfs images made the pipeline's way (`release.squashfs.make_squashfs` of a tiny AppDir with a
glibc floor file, a directory large enough to be indexed, and xattrs) and with mksquashfs variants
(every compressor, uncompressed metadata, 4 KiB blocks, no fragments), and run at nice 10 for the
given time. A crash, a sanitizer report, an input slower than --timeout seconds or
a write outside the extraction directory stops libFuzzer; the input is kept under
WORKDIR/artifacts/ and fuzzing resumes from the corpus, until the time is up. Prints execs/s,
total execs and every artifact, replayed once more without nice (on a shared machine a timeout can
be a load spike): each one that reproduces belongs in tests/release/fuzz_crashes/ as a regression
image (tests/release/test_runtime_hostile.py runs them all). Needs clang-14 and libfuzzer-14-dev (apt-get install clang-14 libfuzzer-14-dev).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from release.runtime_build import LIBS, RUNTIME_DIR, SYSTEM_LIBS  # noqa: E402
from release.squashfs import make_squashfs  # noqa: E402

HARNESSES = {name: Path(__file__).with_name(source) for name, source in
             (("extract", "fuzz_runtime.c"), ("floor", "fuzz_floor.c"), ("fuse", "fuzz_fuse.c"))}
CLANG = ("clang-14", "clang")
SANITIZE = "-fsanitize=fuzzer,address,undefined"
VARIANTS = {  # seed name: extra mksquashfs options (on top of -noappend -all-root)
    "gzip": ["-comp", "gzip"], "xz": ["-comp", "xz"], "lz4": ["-comp", "lz4"], "lzo": ["-comp", "lzo"],
    "plain": ["-noI", "-noD", "-noF", "-noX"], "small-blocks": ["-b", "4096", "-noI", "-noD"],
    "no-fragments": ["-no-fragments", "-noI", "-noD"], "no-exports": ["-no-exports", "-noI"],
}


def fail(message: str) -> None:
    sys.exit(f"fuzz_runtime: {message}")


def compile_harness(harness: Path, out: Path) -> Path:
    clang = next((name for name in CLANG if shutil.which(name)), None)
    if clang is None:
        fail("clang not found: apt-get install clang-14 libfuzzer-14-dev")
    sources = [str(p) for p in sorted(RUNTIME_DIR.glob("*.c"))] + [str(harness)]
    command = [clang, "-g", "-O1", SANITIZE, "-fno-sanitize-recover=undefined", "-D_GNU_SOURCE",
               "-D_FILE_OFFSET_BITS=64", "-Dmain=runtime_main", f"-I{RUNTIME_DIR}", "-o", str(out),
               *sources, *(f"-l{lib}" for lib in (*LIBS, *SYSTEM_LIBS))]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"compiling the harness failed: {next((l for l in result.stderr.splitlines() if 'error' in l), result.stderr[-200:])}")
    return out


def tiny_appdir(root: Path) -> Path:
    """What an AppDir holds, in miniature: scripts, nested dirs, symlinks, modes, a hard link,
    a zero-filled (sparse) file and one spanning several blocks, the glibc floor file, a directory
    whose listing spans metadata blocks (an extended inode with an index), and xattrs."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib/python3/site").mkdir(parents=True)
    (root / "AppRun").write_text("#!/bin/sh\nexec \"$APPDIR/usr/bin/tea\" \"$@\"\n")
    (root / "usr/bin/tea").write_text("#!/bin/sh\necho tea\n")
    for path in (root / "AppRun", root / "usr/bin/tea"):
        path.chmod(0o755)
    (root / "usr/bin/link").symlink_to("tea")
    (root / "usr/lib/python3/site/mod.py").write_text("x = 1\n" * 300)
    os.link(root / "usr/lib/python3/site/mod.py", root / "usr/lib/python3/site/hard.py")
    (root / "usr/lib/zeros").write_bytes(bytes(20000))
    (root / "usr/lib/data.gguf").write_bytes(os.urandom(9000) + b"GGUF" * 2000)
    (root / "usr/lib/readonly").write_text("ro\n")
    (root / "usr/lib/readonly").chmod(0o444)
    (root / ".tea").mkdir()
    (root / ".tea/glibc-floor").write_text("tea-demo 2.31\n")
    (root / "usr/lib/python3/many").mkdir()
    for number in range(320):
        (root / f"usr/lib/python3/many/module_{number:04d}_with_a_long_name.py").write_text("")
    os.setxattr(root / "usr/bin/tea", "user.tea.longer-name", b"value")
    os.setxattr(root / "usr/bin/tea", "security.tea", b"s" * 300)
    os.setxattr(root / "usr/lib", "trusted.tea" if os.geteuid() == 0 else "user.dir", b"d")
    return root


def make_seeds(seeds: Path, scratch: Path) -> list[Path]:
    appdir = tiny_appdir(scratch / "AppDir")
    made = [make_squashfs(appdir, seeds / "pipeline-zstd.sqfs")]
    for name, options in VARIANTS.items():
        out = seeds / f"{name}.sqfs"
        subprocess.run(["mksquashfs", str(appdir), str(out), "-noappend", "-all-root", "-quiet", *options],
                       check=True, capture_output=True)
        made.append(out)
    return made


def fuzz_once(binary: Path, corpus: Path, seeds: Path, artifacts: Path, seconds: int, timeout: int,
              log) -> str:
    command = ["nice", "-n", "10", str(binary), str(corpus), str(seeds), f"-max_total_time={seconds}",
               f"-timeout={timeout}", "-rss_limit_mb=2048", "-max_len=262144", "-print_final_stats=1",
               f"-artifact_prefix={artifacts}/"]
    with tempfile.TemporaryDirectory(prefix="tea-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as sandbox:
        env = {**os.environ, "ASAN_OPTIONS": f"detect_leaks=0:log_path={artifacts}/sanitizer",
               "UBSAN_OPTIONS": f"print_stacktrace=1:log_path={artifacts}/sanitizer", "FUZZ_SANDBOX": sandbox}
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                errors="replace", env=env)
    log.write(result.stderr)
    return result.stderr


def executions(output: str) -> int:
    """Inputs run, from the final stats (or the last progress line when a crash cut it short)."""
    final = re.search(r"stat::number_of_executed_units: (\d+)", output)
    progress = re.findall(r"^#(\d+)\s", output, re.MULTILINE)
    return int(final.group(1)) if final else int(progress[-1]) if progress else 0


def triage(binary: Path, artifact: Path, timeout: int) -> str:
    """Replay a finding un-niced: a timeout that runs in milliseconds was the shared machine's load."""
    result = subprocess.run([str(binary), f"-timeout={timeout}", "-runs=3", str(artifact)], capture_output=True,
                            text=True, errors="replace", env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})
    took = re.search(r"Executed .* in (\d+) ms", result.stderr)
    if result.returncode == 0:
        spike = " (a load spike)" if artifact.name.startswith(("timeout-", "slow-unit-")) else ""
        return f"does not reproduce: 3 runs in {took.group(1) if took else '?'} ms{spike}"
    summary = re.search(r"SUMMARY: (.*)|ERROR: libFuzzer: (.*)", result.stderr)
    return f"REPRODUCES: {next(g for g in summary.groups() if g) if summary else 'exit ' + str(result.returncode)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--harness", choices=sorted(HARNESSES), default="extract")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--timeout", type=int, help="seconds one input may take (default 1; fuse, whose inputs "
                        "make up to 300 requests each: 5)")
    parser.add_argument("--workdir", type=Path, help="default: $TMPDIR/tea-fuzz-<harness>")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.gettempdir()) / f"tea-fuzz-{args.harness}"
    args.timeout = args.timeout or (5 if args.harness == "fuse" else 1)
    corpus, seeds, artifacts = work / "corpus", work / "seeds", work / "artifacts"
    for directory in (corpus, seeds, artifacts):
        directory.mkdir(parents=True, exist_ok=True)
    binary = compile_harness(HARNESSES[args.harness], work / f"fuzz_{args.harness}")
    with tempfile.TemporaryDirectory() as scratch:
        print(f"seeds: {', '.join(p.name for p in make_seeds(seeds, Path(scratch)))}")
    started, total, rounds = time.monotonic(), 0, 0
    deadline = started + args.minutes * 60
    with (work / "libfuzzer.log").open("w") as log:
        while (left := int(deadline - time.monotonic())) > 0:
            total += executions(fuzz_once(binary, corpus, seeds, artifacts, left, args.timeout, log))
            rounds += 1
    elapsed = time.monotonic() - started
    found = sorted(p for p in artifacts.iterdir() if re.match(r"(crash|timeout|oom|leak|slow-unit)-", p.name))
    print(f"{args.harness}: fuzzed {elapsed / 60:.1f} min in {rounds} run(s): {total} execs, {total / elapsed:.0f} execs/s, "
          f"{len(found)} finding(s), corpus {len(list(corpus.iterdir()))} inputs; load {os.getloadavg()[0]:.2f}")
    for path in found:
        print(f"  {path}: {triage(binary, path, args.timeout)}")


if __name__ == "__main__":
    main()
