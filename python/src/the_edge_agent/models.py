"""Where a local GGUF model comes from: an ordered list of places, first hit wins.

Order: `tea run --gguf` → TEA_MODEL_PATH → node `params.model_path` → `settings.llm.model_path` →
`$APPDIR/usr/share/models/` → `${XDG_CACHE_HOME:-~/.cache}/tea/models/`. A place may name a file or a
directory; in a directory the default file name wins, else the only `*.gguf` in it.
`tea models` prints every place with what was found there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import LlmError

DEFAULT_MODEL_FILENAME = "gemma-3n-E4B-it-Q4_K_M.gguf"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class Place:
    """One place the resolver looks: `found` is the model there, `note` says why not."""

    source: str
    path: Path | None
    found: Path | None = None
    note: str = ""

    def describe(self) -> str:
        where = f"{self.source}={self.path}" if self.path else self.source
        return f"{where} -> {self.found}" if self.found else f"{where} ({self.note})"


def model_in_directory(directory: Path) -> tuple[Path | None, str]:
    """The default file name, else the single *.gguf; otherwise a note saying what is there."""
    if (directory / DEFAULT_MODEL_FILENAME).is_file():
        return directory / DEFAULT_MODEL_FILENAME, ""
    ggufs = sorted(path for path in directory.glob("*.gguf") if path.is_file())
    if len(ggufs) == 1:
        return ggufs[0], ""
    if not ggufs:
        return None, "no *.gguf"
    return None, f"{len(ggufs)} *.gguf files and none named {DEFAULT_MODEL_FILENAME}"


def inspect_place(source: str, path: Path | None, unset_note: str = "not set") -> Place:
    if path is None:
        return Place(source, None, note=unset_note)
    if path.is_file():
        return Place(source, path, found=path)
    if path.is_dir():
        found, note = model_in_directory(path)
        return Place(source, path, found=found, note=note)
    return Place(source, path, note="missing")


def _optional_path(value: str | None, base_dir: Path) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def tea_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/tea`: downloaded models, remembered CPU-variant checks."""
    return Path(env.get("XDG_CACHE_HOME") or Path(env.get("HOME", "~")).expanduser() / ".cache") / "tea"


def model_places(
    node_path: str | None = None,
    settings_path: str | None = None,
    base_dir: Path = Path("."),
    env: Mapping[str, str] = os.environ,
    gguf: str | None = None,
) -> list[Place]:
    """Every place, in resolution order (agent-relative paths resolve against `base_dir`)."""
    appdir = env.get("APPDIR")
    return [
        *([inspect_place("--gguf", Path(gguf))] if gguf else []),
        inspect_place("TEA_MODEL_PATH", _optional_path(env.get("TEA_MODEL_PATH"), Path.cwd())),
        inspect_place("params.model_path", _optional_path(node_path, base_dir)),
        inspect_place("settings.llm.model_path", _optional_path(settings_path, base_dir)),
        inspect_place("$APPDIR/usr/share/models",
                      Path(appdir) / "usr/share/models" if appdir else None, "APPDIR not set"),
        inspect_place("cache", tea_cache_dir(env) / "models"),
    ]


def resolve_model(places: list[Place]) -> Path:
    """First model found, checked to be GGUF; otherwise one line listing every place looked."""
    for place in places:
        if place.found:
            check_gguf(place.found)
            return place.found
    looked = "; ".join(place.describe() for place in places)
    raise LlmError(f"no GGUF model found. Looked in: {looked}. Set TEA_MODEL_PATH to a .gguf file")


def check_gguf(path: Path) -> None:
    """Refuse non-GGUF files here: llama.cpp would fail on them with a much less helpful message."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as error:
        raise LlmError(f"{path}: cannot read model: {error.strerror}") from None
    if magic != GGUF_MAGIC:
        raise LlmError(f"{path}: not a GGUF model (file starts with {magic!r}, expected {GGUF_MAGIC!r})")
