"""Benchmark: a delta update from release N to N+1 with only tea's code changed, over loopback
(goal: at most 5% of the LLM AppImage's bytes transferred).

    python benchmarks/delta.py [--runs 3] [--mbit 100] [--scratch DIR] [--keep | --reuse DIR]

Both releases are built from fresh clones of this repository's HEAD (`git clone`); N+1 changes one
line of tea's code (a string `tea --help` prints). Each is the LLM flavor with the 270M model and
the builtin packager, checks skipped (`--skip smoke,functional,variants,systems`: the releases are built,
not judged), the download cache shared (nothing is compiled again). N+1 is split into parts
(`--asset-size-cap` a third of its size), so one loopback server (tests/release_server.py) over
its dist/ serves both clients: Debian's `zsync` fetches ranges of the whole file its .zsync names,
`tea self-update` — N's own, on a hard-linked copy of N — maps its ranges onto the parts
SHA256SUMS lists (over HTTPS, with --allow-unsigned: the releases are unsigned, and zsync speaks
plain HTTP only, so the same directory is served both ways). Reported: the layout (aligned 64 KiB blocks of N+1 that N holds, at the same
offset and anywhere on the grid), then for each client the bytes the server sent / the size of
N+1 and the wall time, against a full download of N+1 (`curl`) from the same server: at loopback
speed, then once with the server paced to `--mbit` (a home connection; 0: skip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, alternate, header, load_average, timed_run

from release.download import sha256_file
from tests.release_server import ReleaseServer, self_signed
from the_edge_agent.update.blockmap import BLOCK_SIZE, block_digest, read_blocks

EDITED = "python/src/the_edge_agent/commands.py"
EDIT = ('"The Edge Agent: run YAML agents."', '"The Edge Agent: run YAML agents (release N+1)."')
BUILD = ("--arch", "x86_64", "--flavor", "python-llm", "--model", "gemma-3-270m", "--packager", "builtin",
         "--skip", "smoke,functional,variants,systems")
GOAL = 0.05


def clone(target: Path, edit: bool) -> Path:
    if target.is_dir():  # --reuse: the release in it is rebuilt incrementally (nothing, if nothing changed)
        return target
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    if edit:
        path = target / EDITED
        text = path.read_text()
        if EDIT[0] not in text:
            raise SystemExit(f"{EDITED} no longer holds {EDIT[0]}: update EDIT in {__file__}")
        path.write_text(text.replace(EDIT[0], EDIT[1], 1))
    return target


def release(checkout: Path, *extra: str) -> Path:
    """`invoke release` in the checkout; the LLM AppImage it made."""
    done = subprocess.run([sys.executable, "-m", "invoke", "release", *BUILD, *extra], cwd=checkout,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"invoke release in {checkout} failed: {done.stderr.strip()[-500:]}")
    return next((checkout / "dist").glob("tea-python-llm-*-x86_64.AppImage"))


def digests(path: Path) -> list[bytes]:
    with path.open("rb") as handle:
        return [block_digest(block) for block in read_blocks(handle, BLOCK_SIZE)]


def layout_report(old: Path, new: Path) -> None:
    before, after = digests(old), digests(new)
    same = sum(1 for index, digest in enumerate(after) if index < len(before) and before[index] == digest)
    known = set(before)
    anywhere = sum(1 for digest in after if digest in known)
    print(f"layout: N+1 has {len(after)} blocks of 64 KiB; {same} identical at the same offset in N "
          f"({same / len(after):.1%}), {anywhere} found on N's grid ({anywhere / len(after):.1%})")


def clients(old: Path, new: Path, server: ReleaseServer, secure: ReleaseServer, scratch: Path) -> dict:
    """One measure per client: wall and CPU seconds, bytes the server sent (`secure`: the HTTPS one)."""
    def sent(command: list[str], through: ReleaseServer = server) -> dict[str, float]:
        through.sent.clear()
        times, _ = timed_run(command, env={**os.environ, "SSL_CERT_FILE": str(secure.tls)})
        return {**times, "bytes": through.bytes_sent}

    def full() -> dict[str, float]:
        out = scratch / "full.AppImage"
        out.unlink(missing_ok=True)
        return sent(["curl", "-s", "-f", "-o", str(out), server.url + new.name])

    def zsync() -> dict[str, float]:
        out = scratch / "zsync" / new.name
        shutil.rmtree(out.parent, ignore_errors=True)
        out.parent.mkdir()
        found = sent(["zsync", "-q", "-i", str(old), "-o", str(out), server.url + new.name + ".zsync"])
        return {**found, "same": float(sha256_file(out) == sha256_file(new))}

    def self_update() -> dict[str, float]:
        copy = scratch / "installed" / old.name
        shutil.rmtree(copy.parent, ignore_errors=True)
        copy.parent.mkdir()
        os.link(old, copy)
        found = sent([str(copy), "self-update", "--release", secure.url, "--allow-unsigned"], secure)
        return {**found, "same": float(sha256_file(copy) == sha256_file(new))}

    return {"full download (curl)": full, "zsync (whole file)": zsync, "tea self-update (parts)": self_update}


def report(results: dict[str, dict[str, float]], size: int) -> None:
    full = results["full download (curl)"]
    for name, result in results.items():
        same = "" if "same" not in result else ("  result identical" if result["same"] else "  RESULT DIFFERS")
        print(f"  {name:26s} {result['bytes'] / 1e6:9.2f} MB sent ({result['bytes'] / size:7.2%})  "
              f"{result['wall']:7.2f} s wall ({result['wall'] / full['wall']:5.2f}x the full download)  "
              f"{result['cpu']:6.2f} s CPU{same}")
    for name in ("zsync (whole file)", "tea self-update (parts)"):
        share = results[name]["bytes"] / size
        print(f"  {name}: {share:.2%} of the artifact transferred (goal <= {GOAL:.0%}: "
              f"{'met' if share <= GOAL else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mbit", type=float, default=100, help="also measure with the server paced to this (0: skip)")
    parser.add_argument("--scratch", type=Path, help="where the clones and builds go (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the clones and their releases")
    parser.add_argument("--reuse", type=Path, metavar="DIR", help="the clones a --keep run kept (not deleted)")
    args = parser.parse_args()
    scratch = args.reuse or Path(tempfile.mkdtemp(prefix="tea-delta-bench-", dir=args.scratch))
    try:
        run(scratch, args.runs, args.mbit)
    finally:
        if args.keep or args.reuse:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def run(scratch: Path, runs: int, mbit: float) -> None:
    print(f"building N and N+1 from clones of {REPO} (load average {load_average()})", flush=True)
    old = release(clone(scratch / "N", edit=False))
    newer = clone(scratch / "N+1", edit=True)
    new = release(newer)
    size = new.stat().st_size
    new = release(newer, "--asset-size-cap", str(size // 3 + 1))
    print(f"N: {old.name} {old.stat().st_size / 1e6:.1f} MB; N+1: {size / 1e6:.1f} MB, "
          f"published as {len(list(new.parent.glob(new.name + '.part*')))} parts")
    layout_report(old, new)
    with ReleaseServer(new.parent) as server, ReleaseServer(new.parent, tls=self_signed(scratch)) as secure:
        header("update N -> N+1 over loopback", runs)
        report(alternate(clients(old, new, server, secure, scratch), runs), size)
        if mbit:
            server.rate = secure.rate = mbit * 1e6 / 8
            print(f"update N -> N+1 with the server paced to {mbit:g} Mbit/s: one run each", flush=True)
            report(alternate(clients(old, new, server, secure, scratch), 1), size)


if __name__ == "__main__":
    main()
