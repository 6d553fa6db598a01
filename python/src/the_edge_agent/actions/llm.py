"""`llm.call` and `llm.chat`: pick a backend (local GGUF or OpenAI-compatible API) and complete.

`auto` means: local when llama-cpp-python is importable and a model resolves, otherwise the API
when an endpoint is configured, otherwise a one-line error naming both options.
"""

from __future__ import annotations

import os
from typing import Any

from ..context import RunContext
from ..errors import ActionError, LlmError
from ..models import model_places, resolve_model
from . import ActionSpec
from .generation import GenerationOptions, Message, check_messages

BACKENDS = ("auto", "local", "api")
BACKEND_ALIASES = {"openai": "api"}
NO_BACKEND = ("no LLM backend available: install llama-cpp-python (pip install the_edge_agent[llm-local]) "
              "and provide a GGUF model (TEA_MODEL_PATH), or set settings.llm.api_base or OPENAI_API_BASE "
              "to an OpenAI-compatible endpoint")
SAMPLING = frozenset({"temperature", "max_tokens", "seed", "stop", "model", "model_path", "api_base"})


def llm_call(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    return complete(check_messages(params.get("messages")), params, params.get("provider"), ctx)


def llm_chat(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    if not isinstance(params.get("prompt"), str):
        raise ActionError("llm.chat needs a string 'prompt'")
    system = [{"role": "system", "content": str(params["system"])}] if params.get("system") else []
    return complete(system + [{"role": "user", "content": params["prompt"]}], params, params.get("backend"), ctx)


def complete(messages: list[Message], params: dict[str, Any], requested: str | None,
             ctx: RunContext) -> dict[str, Any]:
    options = GenerationOptions.from_params(params)
    backend = _backend_name(requested or ctx.agent.llm.backend)
    api_base = params.get("api_base") or ctx.agent.llm.api_base or os.environ.get("OPENAI_API_BASE")
    if backend == "local" or (backend == "auto" and _local_ready(params, ctx)):
        return _complete_local(messages, options, params, ctx)
    if backend == "auto" and not api_base:
        raise LlmError(NO_BACKEND)
    if not api_base:
        raise LlmError("backend 'api' needs settings.llm.api_base, the node's api_base or OPENAI_API_BASE")
    from .llm_api import complete_api

    return complete_api(api_base, params.get("model") or ctx.agent.llm.model, messages, options, ctx.on_token)


def _backend_name(requested: str) -> str:
    name = BACKEND_ALIASES.get(requested, requested)
    if name not in BACKENDS:
        raise ActionError(f"unknown LLM backend '{requested}' (use one of: auto, local, api, openai)")
    return name


def _places(params: dict[str, Any], ctx: RunContext):
    return model_places(params.get("model_path"), ctx.agent.llm.model_path, ctx.agent.base_dir)


def _local_ready(params: dict[str, Any], ctx: RunContext) -> bool:
    from .llm_local import llama_available

    return llama_available() and any(place.found for place in _places(params, ctx))


def _complete_local(messages: list[Message], options: GenerationOptions, params: dict[str, Any],
                    ctx: RunContext) -> dict[str, Any]:
    from .llm_local import LlmLocalBackend, import_llama

    import_llama()  # first, so a missing llama-cpp-python is reported before a missing model
    model_path = resolve_model(_places(params, ctx))
    return LlmLocalBackend.for_model(model_path, ctx.agent.llm).complete(messages, options, ctx.on_token)


ACTIONS = {
    "llm.call": ActionSpec(llm_call, SAMPLING | {"messages", "provider"}, frozenset({"messages"})),
    "llm.chat": ActionSpec(llm_chat, SAMPLING | {"prompt", "system", "backend"}, frozenset({"prompt"})),
}
