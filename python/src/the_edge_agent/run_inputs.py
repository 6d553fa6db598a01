"""What `tea run` reads besides the agent: `--input` (the initial state) and `--secrets`/`--secrets-env`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import InputError

YAML_SUFFIXES = (".yaml", ".yml")


def read_mapping(value: str, option: str) -> dict[str, Any]:
    """A JSON object given inline, or `@file` holding JSON (YAML when the file ends in .yaml/.yml)."""
    source, is_yaml = value, False
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InputError(f"{option} {value}: cannot read: {error.strerror}") from None
        is_yaml = path.suffix.lower() in YAML_SUFFIXES
    data = _parse_yaml(source, option) if is_yaml else _parse_json(source, option)
    if not isinstance(data, dict):
        raise InputError(f"{option} must be a JSON object, got {type(data).__name__}")
    return data


def _parse_json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{option} is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None


def _parse_yaml(text: str, option: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise InputError(f"{option} is not YAML{where}: {getattr(error, 'problem', None) or error}") from None


def read_secrets(value: str | None, env_prefix: str | None,
                 environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """`--secrets` (JSON or @file), then every `PREFIX*` variable as a lower-cased key without the prefix."""
    secrets = read_mapping(value, "--secrets") if value else {}
    if env_prefix:
        secrets.update({key[len(env_prefix):].lower(): item for key, item in environ.items()
                        if key.startswith(env_prefix) and len(key) > len(env_prefix)})
    return secrets


def gguf_path(value: str) -> str:
    """`--gguf`: ~ and $VARIABLES expanded, relative to the current directory, and it must exist."""
    path = Path(os.path.expandvars(value)).expanduser().absolute()
    if not path.is_file():
        raise InputError(f"--gguf {value}: no such file")
    return str(path)
