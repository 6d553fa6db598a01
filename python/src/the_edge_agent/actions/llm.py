"""`llm.call`, `llm.chat` and `llm.stream`: pick a backend (local GGUF or OpenAI-compatible API) and complete.

Every action takes `messages` or `prompt` (+ `system`). `auto` means: local when llama-cpp-python is
importable and a model resolves, otherwise the API when an endpoint is configured, otherwise a
one-line error naming both options. A backend that is set up but whose call fails returns upstream's
`{"success": false, "error": ...}` (and warns) instead of stopping the run.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..context import RunContext
from ..errors import ActionError, LlmError, LlmRequestError
from ..models import model_places, resolve_model
from . import ActionSpec
from .generation import GenerationOptions, Message, check_messages

BACKENDS = ("auto", "local", "api")
BACKEND_ALIASES = {"openai": "api", "ollama": "api"}
OLLAMA_API_BASE = "http://localhost:11434/v1"
NO_BACKEND = ("no LLM backend available: install llama-cpp-python (pip install the_edge_agent[llm-local]) "
              "and provide a GGUF model (TEA_MODEL_PATH or --gguf), or set settings.llm.api_base or "
              "OPENAI_API_BASE to an OpenAI-compatible endpoint")
PARAMS = frozenset({"messages", "prompt", "system", "backend", "provider", "temperature", "max_tokens", "seed",
                    "stop", "model", "model_path", "api_base"})
#: One llama.cpp context is not safe to use from two parallel branches at once.
_LOCAL_LOCK = threading.Lock()


def conversation(params: dict[str, Any]) -> list[Message]:
    """`messages`, or `prompt` with an optional `system`; one of them is required."""
    if params.get("messages") is not None:
        return check_messages(params["messages"])
    if not isinstance(params.get("prompt"), str):
        raise ActionError("needs 'messages' (a list of {role, content}) or a string 'prompt'")
    system = [{"role": "system", "content": str(params["system"])}] if params.get("system") else []
    return system + [{"role": "user", "content": params["prompt"]}]


def llm_call(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    return _answer(params, ctx, stream=ctx.stream_all)


def llm_stream(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Like llm.call, the tokens shown as they come; adds upstream's `streamed` and `chunk_count`."""
    chunks: list[str] = []

    def count(token: str) -> None:
        chunks.append(token)
        if ctx.on_token:
            ctx.on_token(token)

    result = _answer(params, ctx, stream=True, sink=count)
    return result if result.get("success") is False else {**result, "streamed": True, "chunk_count": len(chunks)}


def _answer(params: dict[str, Any], ctx: RunContext, *, stream: bool, sink: Any = None) -> dict[str, Any]:
    messages = conversation(params)
    try:
        result = complete(messages, params, _requested_backend(params), ctx, (sink or ctx.on_token) if stream else None)
    except LlmRequestError as error:
        ctx.warn(f"LLM call failed: {error}")
        return {"success": False, "error": str(error)}
    usage = result.get("usage") or {}
    total = usage.get("total_tokens", usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
    return {**result, "tokens_used": total}


def _requested_backend(params: dict[str, Any]) -> str | None:
    """A node's `backend`/`provider`; `auto` there expresses no preference, so settings and --backend decide."""
    return next((value for value in (params.get("backend"), params.get("provider")) if value and value != "auto"), None)


def complete(messages: list[Message], params: dict[str, Any], requested: str | None, ctx: RunContext,
             on_token: Any = None) -> dict[str, Any]:
    options = GenerationOptions.from_params(params)
    backend = _backend_name(requested or ctx.agent.llm.backend)
    api_base = (params.get("api_base") or ctx.agent.llm.api_base or os.environ.get("OPENAI_API_BASE")
                or (os.environ.get("OLLAMA_API_BASE", OLLAMA_API_BASE) if requested == "ollama" else None))
    if backend == "local" or (backend == "auto" and _local_ready(params, ctx)):
        return _complete_local(messages, options, params, ctx, on_token)
    if backend == "auto" and not api_base:
        raise LlmError(NO_BACKEND)
    if not api_base:
        raise LlmError("backend 'api' needs settings.llm.api_base, the node's api_base or OPENAI_API_BASE")
    from .llm_api import complete_api

    return complete_api(api_base, params.get("model") or ctx.agent.llm.model, messages, options, on_token)


def _backend_name(requested: str) -> str:
    name = BACKEND_ALIASES.get(requested, requested)
    if name not in BACKENDS:
        raise ActionError(f"unknown LLM backend/provider '{requested}' "
                          "(this tea has: auto, local, api, openai, ollama)")
    return name


def _places(params: dict[str, Any], ctx: RunContext):
    llm = ctx.agent.llm
    return model_places(params.get("model_path"), llm.model_path, ctx.agent.base_dir, gguf=llm.gguf)


def _local_ready(params: dict[str, Any], ctx: RunContext) -> bool:
    from .llm_local import llama_available

    return llama_available() and any(place.found for place in _places(params, ctx))


def _complete_local(messages: list[Message], options: GenerationOptions, params: dict[str, Any],
                    ctx: RunContext, on_token: Any) -> dict[str, Any]:
    from .llm_local import LlmLocalBackend, import_llama

    import_llama()  # first, so a missing llama-cpp-python is reported before a missing model
    model_path = resolve_model(_places(params, ctx))
    backend = LlmLocalBackend.for_model(model_path, ctx.agent.llm)
    with _LOCAL_LOCK:
        try:
            return backend.complete(messages, options, on_token)
        except (ValueError, RuntimeError) as error:  # llama.cpp refused this request, e.g. too long
            raise LlmRequestError(f"local generation failed: {error}") from None


ACTIONS = {
    name: ActionSpec(run, PARAMS)
    for names, run in ((("llm.call", "llm.chat", "llm.local.call", "llm.local.chat", "actions.llm_call"), llm_call),
                       (("llm.stream", "llm.local.stream", "actions.llm_stream"), llm_stream))
    for name in names
}
