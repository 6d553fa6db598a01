"""Copy a GGUF file with one string added to its metadata (e.g. a `tokenizer.chat_template`).

GGUF: a header (magic, version, tensor count, key count), the key/value pairs, the tensor infos, then
the tensor data at the next multiple of the alignment. Tensor offsets are relative to the data start,
so only the padding before it changes.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import BinaryIO

FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY, UINT32 = 8, 9, 4
DEFAULT_ALIGNMENT = 32


class _Reader:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.handle.read(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (length,) = self.unpack("Q")
        return self.handle.read(length).decode("utf-8")

    def skip_value(self, kind: int) -> object:
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            item_kind, count = self.unpack("IQ")
            if item_kind in FIXED_SIZES:
                self.handle.seek(FIXED_SIZES[item_kind] * count, 1)
            else:
                for _ in range(count):
                    self.skip_value(item_kind)
            return None
        data = self.handle.read(FIXED_SIZES[kind])
        return struct.unpack("<I", data)[0] if kind == UINT32 else None


def _encoded_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def add_string(source: Path, target: Path, key: str, value: str) -> None:
    with source.open("rb") as handle:
        reader = _Reader(handle)
        magic, version, tensor_count, key_count = reader.unpack("4sIQQ")
        header_end = handle.tell()
        alignment = DEFAULT_ALIGNMENT
        for _ in range(key_count):
            name = reader.string()
            (kind,) = reader.unpack("I")
            found = reader.skip_value(kind)
            if name == "general.alignment":
                alignment = found
        keys_end = handle.tell()
        for _ in range(tensor_count):
            reader.string()
            (dimensions,) = reader.unpack("I")
            handle.seek(8 * dimensions + 4 + 8, 1)
        infos_end = handle.tell()
        data_start = -(-infos_end // alignment) * alignment
        handle.seek(header_end)
        keys = handle.read(keys_end - header_end)
        infos = handle.read(infos_end - keys_end)
        with target.open("wb") as out:
            out.write(struct.pack("<4sIQQ", magic, version, tensor_count, key_count + 1))
            out.write(keys + _encoded_string(key) + struct.pack("<I", STRING) + _encoded_string(value) + infos)
            out.write(b"\0" * (-out.tell() % alignment))
            handle.seek(data_start)
            shutil.copyfileobj(handle, out, 1 << 20)
