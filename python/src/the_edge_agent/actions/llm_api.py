"""An OpenAI-compatible chat completions endpoint (`/chat/completions`), via `requests` (extra `full`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..errors import LlmError, LlmRequestError
from .generation import GenerationOptions, Message

REQUESTS_HINT = "requests not installed. Install with: pip install the_edge_agent[full]"
TIMEOUT_SECONDS = 300


def complete_api(api_base: str, model: str | None, messages: list[Message], options: GenerationOptions,
                 on_token: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One non-streaming request; the whole answer is passed to `on_token` when streaming is asked."""
    try:
        import requests
    except ImportError:
        raise LlmError(REQUESTS_HINT) from None
    url = api_base.rstrip("/") + "/chat/completions"
    body = {"model": model or "default", "messages": messages, "temperature": options.temperature,
            "max_tokens": options.max_tokens, "seed": options.seed, "stop": options.stop}
    key = os.environ.get("OPENAI_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = requests.post(url, json=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise LlmRequestError(f"{url}: request failed: {error.__class__.__name__}") from None
    if response.status_code != 200:
        raise LlmRequestError(f"{url}: HTTP {response.status_code}: {response.text[:200]!r}")
    return _result(url, response, on_token)


def _result(url: str, response: Any, on_token: Callable[[str], None] | None) -> dict[str, Any]:
    try:
        payload = response.json()
        content = payload["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        raise LlmRequestError(f"{url}: not an OpenAI-compatible chat completion response") from None
    if on_token:
        on_token(content)
    return {"content": content, "usage": payload.get("usage", {}), "model": payload.get("model", ""),
            "backend": "api"}
