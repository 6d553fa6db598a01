"""Content digests of files and trees, for fingerprints and for checking what steps produced.

A tree digest covers every entry's relative path, type, permission bits, symlink target and file
content, so a removed library, a chmod or a retargeted link all change it. Re-reading gigabytes on
every run would make a no-change rerun slow, so a stat cache (inode, size, mtime_ns → sha256)
stands in front of the content hash; any change to those three re-reads the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from .cache import hash_into

MISSING = "missing"


def is_generated(name: str) -> bool:
    """Interpreter caches and build metadata that appear as a side effect of running things."""
    return name == "__pycache__" or name.endswith((".egg-info", ".pyc"))


class Digests:
    """sha256 of files and trees; remembers file digests by stat in `store` (a JSON file) if given.

    The store also memoizes small derived facts by content (`memo`), e.g. the imports of a module.
    """

    def __init__(self, store: Path | None = None) -> None:
        self.store = store
        self._known: dict[str, list] = {}
        self._memo: dict[str, object] = {}
        if store is not None:
            try:
                saved = json.loads(store.read_text())
                self._known, self._memo = saved.get("files", {}), saved.get("memo", {})
            except (OSError, ValueError, AttributeError):
                pass
        self._dirty = False

    def file(self, path: Path | str) -> str:
        """The sha256 of one file's content (from the stat cache when the file is unchanged)."""
        return self._file(os.path.abspath(path), os.stat(path))

    def _file(self, key: str, info: os.stat_result) -> str:
        signature = [info.st_ino, info.st_size, info.st_mtime_ns]
        known = self._known.get(key)
        if known and known[:3] == signature:
            return known[3]
        digest = hashlib.sha256()
        hash_into(digest, Path(key))
        self._known[key] = [*signature, digest.hexdigest()]
        self._dirty = True
        return digest.hexdigest()

    def remember(self, path: Path, sha256: str) -> None:
        """Record a digest computed elsewhere (a download verified while it streamed)."""
        info = os.stat(path)
        self._known[os.path.abspath(path)] = [info.st_ino, info.st_size, info.st_mtime_ns, sha256]
        self._dirty = True

    def memo(self, key: str, compute: Callable[[], object]) -> object:
        """A value derived from content named by `key` (which must include that content's digest)."""
        if key not in self._memo:
            self._memo[key] = compute()
            self._dirty = True
        return self._memo[key]

    def tree(self, root: Path | str) -> str:
        """Digest of every entry under root: path, type, mode, link target, content."""
        digest = hashlib.sha256()
        for line in self._entries(os.path.abspath(root), ""):
            digest.update(line.encode(errors="surrogateescape") + b"\0")
        return digest.hexdigest()

    def _entries(self, directory: str, prefix: str) -> Iterator[str]:
        with os.scandir(directory) as listing:
            entries = sorted((e for e in listing if not is_generated(e.name)), key=lambda e: e.name)
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            relative, mode = prefix + entry.name, stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                yield f"l {relative} {os.readlink(entry.path)}"
            elif stat.S_ISDIR(info.st_mode):
                yield f"d {relative} {mode:o}"
                yield from self._entries(entry.path, relative + "/")
            else:
                yield f"f {relative} {mode:o} {self._file(entry.path, info)}"

    def of(self, path: Path) -> str:
        """File digest, tree digest, or MISSING: what a step's input or output looks like now."""
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            return self.tree(path)
        if path.is_file():
            return self.file(path)
        return MISSING

    def save(self) -> None:
        if self.store is None or not self._dirty:
            return
        self.store.parent.mkdir(parents=True, exist_ok=True)
        temp = self.store.with_name(f".{self.store.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps({"files": self._known, "memo": self._memo}))
        os.replace(temp, self.store)
        self._dirty = False
