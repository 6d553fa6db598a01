"""Load the CPU backend variants of a portable llama.cpp build (GGML_BACKEND_DL).

A portable build ships one `libggml-cpu-<variant>.so` per CPU generation and picks the best at run
time, but only once someone calls `ggml_backend_load_all_from_path(dir)`; until then loading a model
fails with "no backends are loaded". The call must go through the very `libggml` that libllama
linked against: wheels hold no symlinks, so `libggml.so`, `.so.0` and `.so.0.x` are separate copies
and calling another one fills a second, unused registry. We therefore take the copy already mapped
into this process (after `import llama_cpp`) from /proc/self/maps.

The variant directory is searched in this order (first one holding `libggml-cpu-*.so` wins):
`$TEA_GGML_BACKEND_DIR`; in a frozen (PyInstaller) app `<_MEIPASS>/bin`, `<_MEIPASS>/llama_cpp/lib`,
`<_MEIPASS>`, the executable's directory and its `bin/`; the directory of the loaded libggml; then
`<site-packages>/bin` and `<site-packages>/llama_cpp/lib` (where pip puts them).
A build without variant libraries (CPU backend linked in) needs none of this and is left alone.

Instead of `ggml_backend_load_all_from_path` (which loads the best-scoring variant, unchecked) we
score the variants ourselves, the way ggml does — each library's `ggml_backend_score()`, 0 when
the CPU lacks an instruction set the variant was compiled for — and register exactly one with
`ggml_backend_load(path)`: which one is `variant_guard`'s decision.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import LlmError

VARIANT_PREFIX, VARIANT_SUFFIX = "libggml-cpu-", ".so"
VARIANT_GLOB = f"{VARIANT_PREFIX}*{VARIANT_SUFFIX}"
ENV_OVERRIDE = "TEA_GGML_BACKEND_DIR"
_LIBGGML = re.compile(r"/libggml\.so(\.\d+)*$")


def loaded_libggml(maps: Path = Path("/proc/self/maps")) -> Path | None:
    """Path of the libggml mapped into this process (the one libllama uses), if any."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and _LIBGGML.search(fields[5]):
            return Path(fields[5])
    return None


def candidate_dirs(llama_package: Path, libggml: Path | None) -> list[Path]:
    """Every directory that may hold the variants, in search order (see module docstring)."""
    dirs = []
    if getattr(sys, "frozen", False):
        bundle = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
        executable_dir = Path(sys.executable).resolve().parent
        dirs += [bundle / "bin", bundle / "llama_cpp" / "lib", bundle, executable_dir, executable_dir / "bin"]
    if libggml:
        dirs.append(libggml.parent)
    dirs += [llama_package.parent / "bin", llama_package / "lib"]
    return dirs


def has_variants(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob(VARIANT_GLOB))


def find_variant_dir(llama_package: Path, libggml: Path | None) -> Path | None:
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        if not has_variants(Path(override)):
            raise LlmError(f"{ENV_OVERRIDE}={override} holds no {VARIANT_GLOB}")
        return Path(override)
    return next((d for d in candidate_dirs(llama_package, libggml) if has_variants(d)), None)


@dataclass(frozen=True)
class Variant:
    """One CPU backend library and its ggml score on this CPU (0: not runnable here)."""

    name: str
    path: Path
    score: int

    @property
    def runnable(self) -> bool:
        return self.score > 0


def variant_name(path: Path) -> str:
    return path.name[len(VARIANT_PREFIX):-len(VARIANT_SUFFIX)]


def score_library(path: Path) -> int:
    """`ggml_backend_score()` of a variant library, as ggml computes it (CPUID only; that code is
    built without the variant's instruction-set flags, so calling it is safe on any CPU).
    Needs libggml-base already loaded (import llama_cpp first). 0 if it cannot be loaded."""
    try:
        library = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL)
    except OSError:
        return 0
    try:
        score = getattr(library, "ggml_backend_score", None)
        if score is None:
            return 0
        score.restype, score.argtypes = ctypes.c_int, []
        return int(score())
    finally:
        _ctypes.dlclose(library._handle)


def scan_variants(directory: Path) -> list[Variant]:
    """Every variant in `directory`, in ggml's order of preference (highest score first)."""
    variants = [Variant(variant_name(path), path, score_library(path)) for path in directory.glob(VARIANT_GLOB)]
    return sorted(variants, key=lambda variant: (-variant.score, variant.name))


def register_variant(libggml: Path, variant: Variant) -> None:
    """Register this one variant as ggml's CPU backend, through the libggml that libllama uses."""
    library = ctypes.CDLL(str(libggml))
    library.ggml_backend_load.argtypes = [ctypes.c_char_p]
    library.ggml_backend_load.restype = ctypes.c_void_p
    if not library.ggml_backend_load(os.fsencode(variant.path)):
        raise LlmError(f"ggml could not load the CPU backend {variant.path}")
