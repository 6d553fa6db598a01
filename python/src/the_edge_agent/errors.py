"""Errors the user can fix: the CLI prints the message as one line and exits with `exit_code`."""

from __future__ import annotations


class TeaError(Exception):
    """Base of every user-facing failure; the message must be one actionable line."""

    exit_code = 1
    #: Whether the engine may prefix the message with the failing node's file:line.
    locatable = True


class AgentError(TeaError):
    """The agent file is missing, not YAML, or does not follow the schema."""

    exit_code = 2


class InputError(TeaError):
    """`--input` is unreadable, not JSON, or not an object."""

    exit_code = 2


class ActionError(TeaError):
    """A node failed while running: bad template, bad parameters, failing action."""


class LlmError(TeaError):
    """No usable LLM backend, no model, or a model that cannot be loaded."""


class LlmRequestError(LlmError):
    """A call to a working backend failed (HTTP error, no answer, generation error): the action returns
    upstream's `{success: false, error}` instead of stopping the run."""


class LlamaNotInstalled(LlmError):
    """Printed verbatim (AC-13): packaging tests compare this exact line."""

    locatable = False


class PrologError(TeaError):
    """A Prolog node failed: a syntax error, a failed query, a Prolog error or its time limit."""


class PrologNotInstalled(PrologError):
    """No janus-swi (SWI-Prolog's Python binding) in this installation: the message is the install hint."""


class UpdateError(TeaError):
    """`tea self-update` cannot update: no update information, an unreachable or inconsistent
    release, a failed check. The installed AppImage is left as it was."""

    exit_code = 3
    locatable = False
