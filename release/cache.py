"""The content-addressed download cache: where verified files live, partial files, and the lock.

Layout under `<cache_dir>/downloads/`:
    sha256/<hex>/<filename>   verified files only, moved in atomically after size and sha256 matched
    partial/<key>.part        bytes received so far; `<key>.part.json` holds the URL and validators
                              (ETag/Last-Modified) that make resuming them safe
    locks/<key>.lock          flock'd while one process fetches <key>; never deleted (that would race)
    resolved/<key>.json       sha256/size learned for an unpinned file, so later runs and offline
                              mode can find it without the network
A file at a final path is complete by construction, so a cache hit needs no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from . import log

BLOCK = 1 << 20  # 1 MiB: large enough that per-block Python overhead is noise


def downloads_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "downloads"


def cache_path(cache_dir: Path, sha256: str, filename: str) -> Path:
    return downloads_dir(cache_dir) / "sha256" / sha256 / filename


def partial_path(cache_dir: Path, key: str) -> Path:
    return downloads_dir(cache_dir) / "partial" / f"{key}.part"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    hash_into(digest, Path(path))
    return digest.hexdigest()


def hash_into(digest: "hashlib._Hash", path: Path) -> int:
    """Feed a file to `digest` in 1 MiB blocks (never whole into memory); return its size."""
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
    return size


def write_json(path: Path, data: dict) -> None:
    """Small metadata files are replaced atomically too: a crash never leaves half a JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, sort_keys=True))
    os.replace(temp, path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def resolved_path(cache_dir: Path, key: str) -> Path:
    return downloads_dir(cache_dir) / "resolved" / f"{key}.json"


def _hash_queue(digest: "hashlib._Hash", pending: queue.Queue) -> None:
    while (chunk := pending.get()) is not None:
        digest.update(chunk)


@contextlib.contextmanager
def locked(cache_dir: Path, key: str, what: str) -> Iterator[None]:
    """Hold an exclusive lock for `key`; a second process waits here, then finds the cache hit."""
    path = downloads_dir(cache_dir) / "locks" / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"waiting for another process that is fetching {what}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the handle releases the lock


class Partial:
    """The bytes of one file received so far, hashed as they were written, and how to resume them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sidecar = path.with_name(path.name + ".json")
        self.digest = hashlib.sha256()
        self.validators = read_json(self.sidecar)
        # Hash what an earlier run left, once, so resuming re-downloads nothing.
        self.size = hash_into(self.digest, path) if path.exists() else 0

    def reset(self, validators: dict) -> None:
        """Start over from byte 0 for a response described by `validators`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self.digest, self.size = hashlib.sha256(), 0
        self.remember(validators)

    def remember(self, validators: dict) -> None:
        self.validators = validators
        write_json(self.sidecar, validators)

    def append(self, chunks: Iterable[bytes], on_chunk: Callable[[int], None]) -> None:
        """Write each chunk, then count and hash it, so size and digest describe what is on disk.

        Hashing runs in a second thread (hashlib releases the GIL), overlapping receive+write.
        """
        pending: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        hasher = threading.Thread(target=_hash_queue, args=(self.digest, pending), daemon=True)
        hasher.start()
        try:
            with self.path.open("ab") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    pending.put(chunk)
                    self.size += len(chunk)
                    on_chunk(len(chunk))
        finally:
            pending.put(None)
            hasher.join()

    def hexdigest(self) -> str:
        return self.digest.hexdigest()

    def discard(self) -> None:
        """Forget every byte (on disk and counted): the next attempt, maybe another mirror, starts at 0."""
        self.path.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)
        self.digest, self.size, self.validators = hashlib.sha256(), 0, {}

    def finish(self, dest: Path) -> Path:
        """Move the verified bytes to `dest` in one step: `dest` never holds a partial file."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, dest)
        self.sidecar.unlink(missing_ok=True)
        return dest
