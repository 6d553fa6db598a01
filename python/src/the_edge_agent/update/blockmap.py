"""The block map of a release file: what `tea self-update` compares the installed AppImage with.

The file is cut into BLOCK_SIZE blocks at fixed offsets (the last one shorter); each block is
named by the first DIGEST_BYTES of its sha256. An updater hashes the blocks of the file it has,
reuses every one whose digest the new file lists (wherever it is) and fetches only the others.
The release packs its AppImages so that this aligned comparison finds an unchanged model: the
runtime is padded to a multiple of BLOCK_SIZE and the model comes first in the squashfs, so its
bytes keep their offset modulo BLOCK_SIZE from one release to the next (release/delta.py).

The map also carries the whole file's size and sha256 (the final check), and, for a file
published in parts, the parts' names and sizes, so whole-file byte ranges can be mapped onto
them. It is JSON, published as `<name>.blockmap` and listed in SHA256SUMS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

FORMAT = "tea-blockmap"
VERSION = 1
SUFFIX = ".blockmap"
BLOCK_SIZE = 1 << 16
DIGEST = "sha256/16"  # the first 16 bytes of each block's sha256
DIGEST_BYTES = 16
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # stays inside the directory it is joined to


class BlockMapError(ValueError):
    """A block map that is malformed or does not describe a consistent file."""


def block_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:DIGEST_BYTES]


def read_blocks(handle: BinaryIO, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """The file's blocks from the handle's position, in order."""
    while block := handle.read(block_size):
        yield block


@dataclass(frozen=True)
class Part:
    name: str
    size: int


@dataclass(frozen=True)
class BlockMap:
    name: str
    size: int
    sha256: str
    digests: bytes  # DIGEST_BYTES per block, in file order
    parts: tuple[Part, ...] = ()
    block_size: int = BLOCK_SIZE

    @property
    def blocks(self) -> int:
        return -(-self.size // self.block_size)

    def digest(self, index: int) -> bytes:
        return self.digests[index * DIGEST_BYTES:(index + 1) * DIGEST_BYTES]

    def span(self, index: int) -> tuple[int, int]:
        """(offset, length) of block `index` in the file."""
        start = index * self.block_size
        return start, min(self.block_size, self.size - start)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, "name": self.name, "size": self.size,
                           "sha256": self.sha256, "block_size": self.block_size, "digest": DIGEST,
                           "blocks": base64.b64encode(self.digests).decode(),
                           "parts": [{"name": part.name, "size": part.size} for part in self.parts]},
                          indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> BlockMap:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT or data.get("version") != VERSION or data.get("digest") != DIGEST:
                raise BlockMapError(f"not a {FORMAT} version {VERSION} with {DIGEST} digests")
            parts = tuple(Part(str(p["name"]), int(p["size"])) for p in data.get("parts") or ())
            found = cls(str(data["name"]), int(data["size"]), str(data["sha256"]),
                        base64.b64decode(data["blocks"], validate=True), parts, int(data["block_size"]))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            raise BlockMapError(f"malformed block map ({error})") from None
        found.check()
        return found

    def check(self) -> None:
        """Refuse a map whose numbers do not add up, or that names a file outside its directory."""
        problems = [
            (not PLAIN_NAME.fullmatch(self.name), f"bad file name {self.name!r}"),
            (not re.fullmatch(r"[0-9a-f]{64}", self.sha256), "bad sha256"),
            (self.block_size <= 0 or self.size < 0, "bad sizes"),
            (self.block_size > 0 and len(self.digests) != self.blocks * DIGEST_BYTES,
             "digest count does not match the size"),
            (bool(self.parts) and sum(p.size for p in self.parts) != self.size, "parts do not add up to the size"),
            (any(not PLAIN_NAME.fullmatch(p.name) or p.size <= 0 for p in self.parts), "bad part name or size"),
        ]
        wrong = [text for bad, text in problems if bad]
        if wrong:
            raise BlockMapError(f"block map of {self.name!r}: {wrong[0]}")


def build(path: Path, parts: tuple[Part, ...] = (), block_size: int = BLOCK_SIZE) -> BlockMap:
    """The block map of `path` (one read)."""
    whole, digests = hashlib.sha256(), bytearray()
    with Path(path).open("rb") as handle:
        for block in read_blocks(handle, block_size):
            whole.update(block)
            digests += block_digest(block)
    found = BlockMap(Path(path).name, Path(path).stat().st_size, whole.hexdigest(), bytes(digests), parts,
                     block_size)
    found.check()
    return found
