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
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path

from .errors import LlmError

VARIANT_GLOB = "libggml-cpu-*.so"
ENV_OVERRIDE = "TEA_GGML_BACKEND_DIR"
_LIBGGML = re.compile(r"/libggml\.so(\.\d+)*$")
_loaded_from: list[Path] = []


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


def load_cpu_variants(llama_package: Path) -> Path | None:
    """Register the CPU variants once per process; returns the directory used, None if not needed."""
    if _loaded_from:
        return _loaded_from[0]
    libggml = loaded_libggml()
    directory = find_variant_dir(llama_package, libggml)
    if directory is None:
        return None
    if libggml is None:
        raise LlmError(f"found CPU backends in {directory} but no libggml is loaded to register them")
    library = ctypes.CDLL(str(libggml))
    library.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    library.ggml_backend_load_all_from_path.restype = None
    library.ggml_backend_load_all_from_path(os.fsencode(directory))
    _loaded_from.append(directory)
    return directory
