"""The sampling options shared by every LLM backend, validated once from node parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ActionError

Message = dict[str, str]
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class GenerationOptions:
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    seed: int | None = None
    stop: list[str] | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> GenerationOptions:
        try:
            stop = params.get("stop")
            return cls(
                temperature=float(params.get("temperature", DEFAULT_TEMPERATURE)),
                max_tokens=int(params.get("max_tokens", DEFAULT_MAX_TOKENS)),
                seed=None if params.get("seed") is None else int(params["seed"]),
                stop=[stop] if isinstance(stop, str) else stop,
            )
        except (TypeError, ValueError) as error:
            raise ActionError(f"invalid sampling parameter: {error}") from None


def check_messages(messages: Any) -> list[Message]:
    """`messages` must be a list of {role, content}; a number or a missing value as content (a template
    over a state key) becomes text, as it would in a prompt."""
    valid = isinstance(messages, list) and messages and all(
        isinstance(m, dict) and isinstance(m.get("role"), str)
        and (m.get("content") is None or isinstance(m.get("content"), (str, int, float, bool)))
        for m in messages)
    if not valid:
        raise ActionError("messages must be a non-empty list of {role: ..., content: ...} strings")
    return [{"role": m["role"], "content": "" if m.get("content") is None else str(m["content"])} for m in messages]
