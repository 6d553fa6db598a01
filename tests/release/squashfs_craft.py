"""Crafting hostile squashfs images for the runtime's tests: a real mksquashfs image, then patched.

Images are made with uncompressed metadata (-noI -noD -noF -noX), so directory entries, inodes and
the superblock are plain bytes that a test edits in place: rename an entry (same length), point an
entry at another inode, or set a superblock field. Layout facts used (squashfs 4.0, little endian):
a directory entry is `offset u16, inode_number s16, type u16, name_size u16, name[name_size + 1]`,
and the superblock fields sit at the offsets in SUPERBLOCK.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

SUPERBLOCK = {  # field: (offset, struct format)
    "inodes": (4, "<I"), "block_size": (12, "<I"), "fragments": (16, "<I"), "block_log": (22, "<H"),
    "no_ids": (26, "<H"), "root_inode": (32, "<Q"), "bytes_used": (40, "<Q"), "id_table": (48, "<Q"),
    "xattr_table": (56, "<Q"), "inode_table": (64, "<Q"), "directory_table": (72, "<Q"),
    "fragment_table": (80, "<Q"), "lookup_table": (88, "<Q"),
}
PLAIN = ("-noI", "-noD", "-noF", "-noX")
DIR_TYPE = 1


def mksquashfs(tree: Path, out: Path, *options: str) -> Path:
    subprocess.run(["mksquashfs", str(tree), str(out), "-noappend", "-all-root", "-quiet", *PLAIN, *options],
                   check=True, capture_output=True)
    return out


def field(image: bytes | bytearray, name: str) -> int:
    offset, fmt = SUPERBLOCK[name]
    return struct.unpack_from(fmt, image, offset)[0]


def set_fields(image: bytearray, **values: int) -> bytearray:
    for name, value in values.items():
        offset, fmt = SUPERBLOCK[name]
        struct.pack_into(fmt, image, offset, value)
    return image


def directory_table(image: bytes | bytearray) -> tuple[int, int]:
    return field(image, "directory_table"), field(image, "fragment_table")


def entry_name_at(image: bytes | bytearray, name: bytes) -> int:
    """Offset of a directory entry's name (unique in the directory table)."""
    start, end = directory_table(image)
    found = image.find(name, start, end)
    if found < 0 or image.find(name, found + 1, end) >= 0:
        raise AssertionError(f"{name!r} is not a unique name in the directory table")
    return found


def rename_entry(image: bytearray, old: bytes, new: bytes) -> bytearray:
    """Give an entry another name of the same length (the entry's size field stays right)."""
    assert len(old) == len(new)
    at = entry_name_at(image, old)
    image[at:at + len(old)] = new
    return image


def point_entry(image: bytearray, name: bytes, inode_offset: int, kind: int = DIR_TYPE) -> bytearray:
    """Make entry `name` refer to the inode at inode_offset of its header's metadata block."""
    at = entry_name_at(image, name) - 8
    struct.pack_into("<H", image, at, inode_offset)
    struct.pack_into("<H", image, at + 4, kind)
    return image


def entry_inode_offset(image: bytes | bytearray, name: bytes) -> int:
    return struct.unpack_from("<H", image, entry_name_at(image, name) - 8)[0]


def inode_position(image: bytes | bytearray, start_block: int, offset: int) -> int:
    """Where an inode's bytes are in an image with an uncompressed inode table (no block crossing)."""
    return field(image, "inode_table") + start_block + 2 + offset


def root_inode_position(image: bytes | bytearray) -> int:
    root = field(image, "root_inode")
    return inode_position(image, root >> 16, root & 0xFFFF)


def root_entries(image: bytes | bytearray) -> dict[bytes, int]:
    """Name -> inode position of each entry of the root directory (a basic directory inode)."""
    root = root_inode_position(image)
    start_block, _, size, offset = struct.unpack_from("<IIHH", image, root + 16)
    at, end = field(image, "directory_table") + start_block + 2 + offset, None
    end = at + size - 3
    found = {}
    while at < end:
        count, header_block, _ = struct.unpack_from("<III", image, at)
        at += 12
        for _ in range(count + 1):
            entry_offset, _, _, name_size = struct.unpack_from("<HhHH", image, at)
            found[bytes(image[at + 8:at + 9 + name_size])] = inode_position(image, header_block, entry_offset)
            at += 9 + name_size
    return found


class Table:
    """An uncompressed metadata table of an image (inode or directory table) as one logical byte
    stream: references (block relative to the table's start, offset) map to file positions, and
    fields that straddle two metadata blocks are read and patched right."""

    def __init__(self, image: bytes | bytearray, start: int, end: int):
        self.image, self.start, self.blocks = image, start, {}  # block start (relative) -> payload position
        at = start
        while at < end:
            header = struct.unpack_from("<H", image, at)[0]
            assert header & 0x8000, "the table must be uncompressed (-noI -noD)"
            self.blocks[at - start] = (at + 2, header & 0x7FFF)
            at += 2 + (header & 0x7FFF)
        self.order = sorted(self.blocks)

    def positions(self, block: int, offset: int, size: int) -> list[int]:
        index, found = self.order.index(block), []
        while offset >= self.blocks[self.order[index]][1]:  # a reference past its block's end
            offset -= self.blocks[self.order[index]][1]
            index += 1
        while len(found) < size:
            payload, length = self.blocks[self.order[index]]
            found += range(payload + offset, payload + min(length, offset + size - len(found)))
            index, offset = index + 1, 0
        return found

    def read(self, block: int, offset: int, size: int) -> bytes:
        return bytes(self.image[p] for p in self.positions(block, offset, size))

    def write(self, block: int, offset: int, data: bytes) -> None:
        for position, byte in zip(self.positions(block, offset, len(data)), data):
            self.image[position] = byte


def tables(image: bytes | bytearray) -> tuple[Table, Table]:
    """The inode and directory tables (the directory table ends where the next table's data starts)."""
    inode_start, dir_start = field(image, "inode_table"), field(image, "directory_table")
    following = [field(image, name) for name in ("fragment_table", "lookup_table", "id_table", "xattr_table")]
    first_block = min(struct.unpack_from("<Q", image, at)[0] for at in following if at != 0xFFFFFFFFFFFFFFFF)
    return Table(image, inode_start, dir_start), Table(image, dir_start, min(first_block, *following))


LDIR_TYPE = 8


def directory_inode(image: bytes | bytearray, name: bytes) -> tuple[int, int]:
    """(block, offset) of the inode of the root directory's entry `name` (an extended directory)."""
    inodes, directories = tables(image)
    root = field(image, "root_inode")
    start_block, _, size, offset = struct.unpack_from("<IIHH", inodes.read(root >> 16, root & 0xFFFF, 32), 16)
    listing, at = directories.read(start_block, offset, size - 3), 0
    while at < len(listing):
        count, header_block, _ = struct.unpack_from("<III", listing, at)
        at += 12
        for _ in range(count + 1):
            entry_offset, _, _, name_size = struct.unpack_from("<HhHH", listing, at)
            if listing[at + 8:at + 9 + name_size] == name:
                assert struct.unpack("<H", inodes.read(header_block, entry_offset, 2))[0] == LDIR_TYPE
                return header_block, entry_offset
            at += 9 + name_size
    raise AssertionError(f"no directory {name!r} in the root")


def index_entries(image: bytes | bytearray, block: int, offset: int) -> list[tuple[int, int]]:
    """Where each directory index entry of the extended directory inode at (block, offset) starts,
    as (block, offset) references into the inode table: `index u32, start_block u32, size u32, name`."""
    inodes, _ = tables(image)
    count = struct.unpack("<H", inodes.read(block, offset + 32, 2))[0]
    found, at = [], offset + 40
    for _ in range(count):
        found.append((block, at))  # the offset may pass the block's end: positions() walks on
        at += 12 + struct.unpack("<I", inodes.read(block, at + 8, 4))[0] + 1
    assert found, "the directory has no index: give it more entries"
    return found


def corrupt_index(image: bytearray, directory: bytes, **fields: int) -> bytearray:
    """Set fields (index, start_block, size) of every index entry of the root's extended `directory`."""
    inodes, _ = tables(image)
    block, offset = directory_inode(image, directory)
    layout = {"index": 0, "start_block": 4, "size": 8}
    for entry_block, entry_offset in index_entries(image, block, offset):
        for name, value in fields.items():
            inodes.write(entry_block, entry_offset + layout[name], struct.pack("<I", value))
    return image
