"""Split an artifact that is too big for one release asset into numbered parts.

GitHub refuses any asset of 2 GiB or more, and the Gemma 3n AppImage is ~4.6 GB, so anything at or
above the cap is also written as `<name>.part01`, `.part02`, … each strictly under the cap; plain
`cat` of the parts in order gives the file back. Parts that already hold the right bytes are kept,
so re-running a release does not rewrite gigabytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from .download import sha256_file
from .errors import ConfigError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class Part:
    name: str
    size: int
    sha256: str

    def to_json(self) -> dict:
        return asdict(self)


def part_names(name: str, count: int) -> list[str]:
    width = max(2, len(str(count)))
    return [f"{name}.part{index:0{width}d}" for index in range(1, count + 1)]


def _copy_range(source: BinaryIO, size: int, sink: BinaryIO | None) -> str:
    """sha256 of the next `size` bytes of source, also written to sink when one is given."""
    digest = hashlib.sha256()
    while size:
        block = source.read(min(_BLOCK, size))
        if not block:
            raise ConfigError(f"{source.name} shrank while being split: rebuild it")
        digest.update(block)
        if sink is not None:
            sink.write(block)
        size -= len(block)
    return digest.hexdigest()


def _write_part(source: BinaryIO, target: Path, size: int) -> str:
    """Reuse target if it already holds these bytes, else write them atomically."""
    start = source.tell()
    if target.is_file() and target.stat().st_size == size:
        existing = sha256_file(target)
        if _copy_range(source, size, None) == existing:
            return existing
        source.seek(start)
    tmp = target.with_name(f".{target.name}.tmp")
    with tmp.open("wb") as sink:
        sha = _copy_range(source, size, sink)
    os.replace(tmp, target)
    return sha


def _remove_stale_parts(path: Path, keep: set[str]) -> None:
    pattern = re.compile(re.escape(path.name) + r"\.part\d+")
    for old in path.parent.iterdir():
        if pattern.fullmatch(old.name) and old.name not in keep:
            old.unlink()


def part_sizes(total: int, cap: int) -> list[int]:
    """As few parts as fit strictly under cap, of near-equal size (no 3-byte tail part)."""
    count = 0 if total < cap else -(-total // (cap - 1))
    if not count:
        return []
    base, extra = divmod(total, count)
    return [base + 1] * extra + [base] * (count - extra)


def split_if_needed(path: Path, cap: int) -> list[Part]:
    """Parts of path when its size is at or above cap (each part < cap), else []."""
    path = Path(path)
    if cap < 2:
        raise ConfigError(f"asset size cap must be at least 2 bytes, got {cap}")
    sizes = part_sizes(path.stat().st_size, cap)
    names = part_names(path.name, len(sizes))
    _remove_stale_parts(path, set(names))
    with path.open("rb") as source:
        return [Part(name, size, _write_part(source, path.with_name(name), size)) for name, size in zip(names, sizes)]
