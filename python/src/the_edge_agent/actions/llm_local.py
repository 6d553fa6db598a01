"""Local inference on a GGUF model through llama-cpp-python.

llama_cpp is imported only when a local call is made, so every other command works without it.
One `Llama` per model file per process, created on first use and closed explicitly at exit (its
`__del__` otherwise prints a TypeError during interpreter shutdown). Before the first model loads,
`variant_guard` registers the CPU backend variant of a portable build (checked once per machine).
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from ..agent import LlmSettings
from ..errors import LlamaNotInstalled, LlmError
from ..variant_guard import select_cpu_backend
from .generation import GenerationOptions, Message

INSTALL_HINT = "llama-cpp-python not installed. Install with: pip install the_edge_agent[llm-local]"
CHAT_FORMAT_BY_FAMILY = {"gemma": "gemma"}
_log_sink: list[Any] = []  # keeps the ctypes callback alive as long as llama.cpp may call it


def llama_available() -> bool:
    """Whether llama_cpp can be found, without paying for importing it."""
    return importlib.util.find_spec("llama_cpp") is not None


def import_llama() -> ModuleType:
    """Import llama_cpp; one-line errors if it is absent or broken."""
    try:
        import llama_cpp
    except (ImportError, OSError) as error:  # OSError: its shared libraries failed to load
        if isinstance(error, ImportError) and error.name == "llama_cpp":
            raise LlamaNotInstalled(INSTALL_HINT) from None
        raise LlmError(f"llama-cpp-python is installed but failed to load: {error}") from None
    _quiet_llama_logs(llama_cpp)
    return llama_cpp


def _quiet_llama_logs(llama_cpp: ModuleType) -> None:
    """Drop llama.cpp's own log lines (it logs notices at ERROR level, and `Llama()` resets the
    Python-side level): failures still reach the user, as our one-line errors."""
    if not _log_sink:
        _log_sink.append(llama_cpp.llama_log_callback(lambda level, text, user_data: None))
        llama_cpp.llama_log_set(_log_sink[0], ctypes.c_void_p(0))


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LlmLocalBackend:
    """A lazily loaded model file; `for_model` hands out one instance per file."""

    _instances: ClassVar[dict[Path, LlmLocalBackend]] = {}

    def __init__(self, model_path: Path, settings: LlmSettings) -> None:
        self.model_path = model_path
        self.settings = settings
        self._llama: Any = None

    @classmethod
    def for_model(cls, model_path: Path, settings: LlmSettings) -> LlmLocalBackend:
        key = model_path.resolve()
        if key not in cls._instances:
            cls._instances[key] = cls(model_path, settings)
        return cls._instances[key]

    @classmethod
    def close_all(cls) -> None:
        for backend in cls._instances.values():
            backend.close()

    def close(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def _model(self) -> Any:
        if self._llama is None:
            self._llama = self._load(import_llama())
        return self._llama

    def _load(self, llama_cpp: ModuleType) -> Any:
        threads = self.settings.n_threads or usable_cores()
        select_cpu_backend(Path(llama_cpp.__file__).parent, self.model_path, threads)
        try:
            llama = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=self.settings.n_ctx,
                n_threads=threads,
                n_gpu_layers=self.settings.n_gpu_layers,
                verbose=False,
            )
        except ValueError as error:
            raise LlmError(f"{self.model_path}: llama.cpp cannot load this model ({error})") from None
        _apply_family_chat_format(llama)
        return llama

    def complete(self, messages: list[Message], options: GenerationOptions,
                 on_token: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Chat completion; returns the llm.call result shape."""
        llama = self._model()
        arguments = dict(messages=messages, temperature=options.temperature,
                         max_tokens=options.max_tokens, seed=options.seed, stop=options.stop)
        if on_token is None:
            response = llama.create_chat_completion(**arguments)
            content, usage = response["choices"][0]["message"]["content"] or "", response.get("usage", {})
        else:
            content, usage = _stream(llama.create_chat_completion(stream=True, **arguments), on_token)
        return {"content": content, "usage": usage, "model": self.model_path.name, "backend": "local"}


def _stream(chunks: Any, on_token: Callable[[str], None]) -> tuple[str, dict[str, int]]:
    parts = []
    for chunk in chunks:
        piece = chunk["choices"][0]["delta"].get("content") or ""
        if piece:
            on_token(piece)
            parts.append(piece)
    return "".join(parts), {"completion_tokens": len(parts)}


def _apply_family_chat_format(llama: Any) -> None:
    """A GGUF without its own chat template (e.g. a base model) gets its family's format."""
    metadata = getattr(llama, "metadata", {}) or {}
    if "tokenizer.chat_template" in metadata:
        return
    architecture = metadata.get("general.architecture", "")
    for family, chat_format in CHAT_FORMAT_BY_FAMILY.items():
        if architecture.startswith(family):
            llama.chat_format = chat_format


atexit.register(LlmLocalBackend.close_all)
