"""Turning the installed AppImage into the new release's, fetching only the blocks it lacks.

1. One read of the installed file: the digest of each aligned block. Same size and every block
   equal: it is up to date, and nothing is written.
2. The new file is assembled as `<sha256[:16]>` in `.<name>.update/` beside the AppImage (the
   only place the updater writes): a directory it makes itself, only its user may enter, and that
   it refuses unless it is exactly that (another user could otherwise plant a symlink there and
   have the update write into the victim's files). It is opened by descriptor, the partial with
   O_NOFOLLOW (and O_EXCL when new), and locked against a second updater. A partial left by an
   interrupted run is kept: its blocks that already match the block map are done.
3. Every block the new file shares with the old one (wherever it sits there) is copied from it;
   the rest is fetched in runs of consecutive blocks, mapped onto the release's files (the whole
   AppImage, or its .partNN parts). Each fetched block is checked against the block map before it
   is written: a server's wrong bytes never land.
4. The whole file's sha256 must be the block map's; then it takes the old file's mode and
   replaces it by rename. Until that rename the installed AppImage is untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UpdateError
from .blockmap import BlockMap, block_digest, read_blocks
from .transport import Transport, display


@dataclass(frozen=True)
class SourceFile:
    """A file of the release that holds the bytes [start, start + size) of the new AppImage."""

    location: str
    start: int
    size: int


@dataclass
class Plan:
    """What becomes of each block of the new file."""

    blocks: int
    done: set[int] = field(default_factory=set)        # already right in the partial file
    reuse: dict[int, int] = field(default_factory=dict)  # block → offset of the same bytes in the old file
    fetch: list[int] = field(default_factory=list)

    def fetch_bytes(self, blockmap: BlockMap) -> int:
        """How much of the new file has to be downloaded."""
        return sum(blockmap.span(index)[1] for index in self.fetch)

    def runs(self) -> list[tuple[int, int]]:
        """The blocks to fetch as [first, end) runs of consecutive blocks."""
        found: list[tuple[int, int]] = []
        for index in self.fetch:
            if found and found[-1][1] == index:
                found[-1] = (found[-1][0], index + 1)
            else:
                found.append((index, index + 1))
        return found


class Progress:
    """One self-rewriting line on a TTY (nothing otherwise: the summary line says it all)."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done, self.shown = what, total, 0, 0.0
        self.tty = sys.stderr.isatty() and total > 0

    def add(self, count: int) -> None:
        self.done += count
        if self.tty and (time.monotonic() - self.shown > 0.2 or self.done >= self.total):
            self.shown = time.monotonic()
            print(f"\rtea: {self.what}: {self.done / self.total:4.0%} of {megabytes(self.total)}", end="",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def old_digests(target: Path, blockmap: BlockMap) -> list[bytes]:
    """The digest of each aligned block of the installed file (one read)."""
    progress = Progress(f"reading {target.name}", target.stat().st_size)
    found = []
    with target.open("rb") as handle:
        for block in read_blocks(handle, blockmap.block_size):
            found.append(block_digest(block))
            progress.add(len(block))
    progress.close()
    return found


def up_to_date(target: Path, blockmap: BlockMap, digests: list[bytes]) -> bool:
    return target.stat().st_size == blockmap.size and b"".join(digests) == blockmap.digests


def make_plan(blockmap: BlockMap, digests: list[bytes], done: set[int]) -> Plan:
    where = {}
    for index, digest in enumerate(digests):
        where.setdefault(digest, index * blockmap.block_size)
    plan = Plan(blockmap.blocks, done)
    for index in range(blockmap.blocks):
        if index in done:
            continue
        offset = where.get(blockmap.digest(index))
        if offset is None:
            plan.fetch.append(index)
        else:
            plan.reuse[index] = offset
    return plan


def work_dir(target: Path) -> Path:
    return target.with_name(f".{target.name}.update")


def partial_name(blockmap: BlockMap) -> str:
    return blockmap.sha256[:16]


@contextlib.contextmanager
def private_work_dir(target: Path) -> Iterator[int]:
    """A descriptor of the work directory, locked: made here if missing, and refused unless it is a
    real directory of this user that no one else may write (nothing in it is another user's)."""
    path = work_dir(target)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # a symlink (ELOOP) or not a directory
        raise UpdateError(f"{path} is not a directory the update made: remove it, then run `tea self-update` "
                          f"again") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise UpdateError(f"{path} is not private to you (owner {info.st_uid}, mode "
                              f"{stat.S_IMODE(info.st_mode):o}): remove it, then run `tea self-update` again")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UpdateError(f"another `tea self-update` is updating {target}: wait for it") from None
        try:
            yield fd
        finally:
            with contextlib.suppress(OSError):  # only when empty: an interrupted run's partial stays
                os.rmdir(path)
    finally:
        os.close(fd)


def remove_other_partials(directory: int, keep: str) -> None:
    """Partials of another release of this AppImage are of no use any more."""
    for name in os.listdir(directory):
        if name != keep:
            os.unlink(name, dir_fd=directory)


@contextlib.contextmanager
def opened_partial(directory: int, name: str, size: int, where: Path) -> Iterator[tuple[int, bool]]:
    """(descriptor, whether it holds an earlier run's work) of the partial file `name` in the work
    directory `where` (open as `directory`); never through a symlink."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd, resumed = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=directory), False
        except FileExistsError:
            fd, resumed = os.open(name, flags, dir_fd=directory), True
    except OSError as error:  # ELOOP: a symlink
        raise UpdateError(f"{where / name}: {error.strerror}: remove {where}, then run `tea self-update` again") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UpdateError(f"{where / name} is not a file: remove {where}, then run `tea self-update` again")
        resumed = resumed and os.fstat(fd).st_size == size
        if not resumed:
            os.ftruncate(fd, 0)
            os.ftruncate(fd, size)
        yield fd, resumed
    finally:
        os.close(fd)


def blocks_in_place(fd: int, blockmap: BlockMap) -> set[int]:
    """The blocks an interrupted run already wrote (they match the block map)."""
    progress = Progress("checking the interrupted update", blockmap.size)
    done = set()
    for index in range(blockmap.blocks):
        start, length = blockmap.span(index)
        if block_digest(os.pread(fd, length, start)) == blockmap.digest(index):
            done.add(index)
        progress.add(length)
    progress.close()
    return done


def reuse_runs(blockmap: BlockMap, plan: Plan) -> list[tuple[int, int, int]]:
    """(offset in the new file, offset in the old one, length) of the shared bytes, consecutive
    blocks that are consecutive in the old file too joined into one run."""
    runs: list[tuple[int, int, int]] = []
    for index, offset in sorted(plan.reuse.items()):
        start, length = blockmap.span(index)
        if runs and runs[-1][0] + runs[-1][2] == start and runs[-1][1] + runs[-1][2] == offset:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + length)
        else:
            runs.append((start, offset, length))
    return runs


def copy_reused(old: Path, fd: int, blockmap: BlockMap, plan: Plan) -> None:
    """Copy the shared bytes from the old file (in-kernel; a reflink where the file system can)."""
    with old.open("rb") as source:
        for start, offset, length in reuse_runs(blockmap, plan):
            copied = 0
            while copied < length:
                done = os.copy_file_range(source.fileno(), fd, length - copied, offset + copied, start + copied)
                if done <= 0:
                    raise UpdateError(f"{old} changed while it was being updated: run `tea self-update` again")
                copied += done


def pieces(files: list[SourceFile], start: int, length: int) -> Iterator[tuple[SourceFile, int, int]]:
    """(file, offset in it, length) covering the new file's bytes [start, start + length)."""
    for source in files:
        low, high = max(start, source.start), min(start + length, source.start + source.size)
        if low < high:
            yield source, low - source.start, high - low


def fetch_run(fd: int, blockmap: BlockMap, files: list[SourceFile], run: tuple[int, int], transport: Transport,
              progress: Progress) -> None:
    """Download blocks [first, end), checking and writing each one as soon as it is complete."""
    index, end = run
    start, _ = blockmap.span(index)
    length = min(end * blockmap.block_size, blockmap.size) - start
    pending = bytearray()
    for source, offset, size in pieces(files, start, length):
        for chunk in transport.read(source.location, offset, size):
            pending += chunk
            progress.add(len(chunk))
            while index < end and len(pending) >= blockmap.span(index)[1]:
                index = write_checked(fd, blockmap, index, pending, source)


def write_checked(fd: int, blockmap: BlockMap, index: int, pending: bytearray, source: SourceFile) -> int:
    start, length = blockmap.span(index)
    block = bytes(pending[:length])
    if block_digest(block) != blockmap.digest(index):
        raise UpdateError(f"{display(source.location)} sent bytes for {blockmap.name} [{start}, {start + length}) "
                          f"that do not match its block map: refusing them (the installed AppImage is unchanged)")
    os.pwrite(fd, block, start)
    del pending[:length]
    return index + 1


def whole_digest(fd: int, blockmap: BlockMap) -> str:
    """The sha256 of the partial file (one read)."""
    progress = Progress(f"verifying {blockmap.name}", blockmap.size)
    digest = hashlib.sha256()
    for start in range(0, blockmap.size, 1 << 20):
        block = os.pread(fd, min(1 << 20, blockmap.size - start), start)
        digest.update(block)
        progress.add(len(block))
    progress.close()
    return digest.hexdigest()


def replace(target: Path, directory: int, name: str, fd: int) -> None:
    """The new file takes the old one's mode and place, atomically."""
    os.fchmod(fd, stat.S_IMODE(target.stat().st_mode))
    os.fsync(fd)
    os.replace(name, target, src_dir_fd=directory)
    parent = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(parent)
    finally:
        os.close(parent)


@dataclass
class Outcome:
    updated: bool
    reused: int = 0
    fetched: int = 0  # bytes of the new file that had to be downloaded


def update(target: Path, blockmap: BlockMap, files: list[SourceFile], transport: Transport, *,
           check: bool = False) -> Outcome:
    """Make `target` the file `blockmap` describes (or, with `check`, only say what that would take)."""
    digests = old_digests(target, blockmap)
    if up_to_date(target, blockmap, digests):
        return Outcome(False)
    if check:
        plan = make_plan(blockmap, digests, set())
        return Outcome(True, len(plan.reuse), plan.fetch_bytes(blockmap))
    name = partial_name(blockmap)
    with private_work_dir(target) as directory:
        remove_other_partials(directory, name)
        with opened_partial(directory, name, blockmap.size, work_dir(target)) as (fd, resumed):
            plan = make_plan(blockmap, digests, blocks_in_place(fd, blockmap) if resumed else set())
            copy_reused(target, fd, blockmap, plan)
            fetched = plan.fetch_bytes(blockmap)
            progress = Progress(f"downloading {blockmap.name}", fetched)
            for run in plan.runs():
                fetch_run(fd, blockmap, files, run, transport, progress)
            progress.close()
            digest = whole_digest(fd, blockmap)
            if digest != blockmap.sha256:
                os.unlink(name, dir_fd=directory)
                raise UpdateError(f"the assembled {blockmap.name} has sha256 {digest[:16]}…, the release says "
                                  f"{blockmap.sha256[:16]}…: discarded it (the installed AppImage is unchanged)")
            replace(target, directory, name, fd)
    return Outcome(True, len(plan.reuse), fetched)
