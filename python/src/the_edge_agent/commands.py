"""The `tea` subcommands: run, validate, models. Every TeaError becomes one stderr line and its exit code."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .errors import InputError, TeaError


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tea", description="The Edge Agent: run YAML agents.")
    root.add_argument("--version", action="store_true", help="print 'tea X.Y.Z' and exit")
    root.add_argument("--impl", action="store_true", help="print the implementation ('python') and exit")
    commands = root.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run an agent; final state as JSON on stdout")
    run.add_argument("agent", type=Path)
    run.add_argument("--input", default="{}", help="initial state: a JSON object, or @file.json")
    run.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    run.add_argument("--stream", action="store_true", help="print LLM tokens to stderr as they arrive")
    run.set_defaults(handler=command_run)
    validate = commands.add_parser("validate", help="check an agent file against the schema")
    validate.add_argument("agent", type=Path)
    validate.set_defaults(handler=command_validate)
    models = commands.add_parser("models", help="show where the local model is looked for")
    models.add_argument("agent", type=Path, nargs="?", help="also consider this agent's settings.llm")
    models.set_defaults(handler=command_models)
    return root


def dispatch(argv: list[str]) -> int:
    root = parser()
    args = root.parse_args(argv)
    if not getattr(args, "handler", None):
        root.print_usage(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except TeaError as error:
        print(error, file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


def read_input(value: str) -> dict[str, Any]:
    """`--input` as a JSON object, given inline or as @file."""
    import json  # here, not at the top: `validate` and `models` need no JSON

    if value.startswith("@"):
        try:
            value = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise InputError(f"--input {value}: cannot read: {error.strerror}") from None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as error:
        raise InputError(f"--input is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    if not isinstance(data, dict):
        raise InputError(f"--input must be a JSON object, got {type(data).__name__}")
    return data


class StderrOutput:
    """Progress lines and streamed tokens share stderr: a line after tokens starts on a new line."""

    def __init__(self) -> None:
        self.mid_line = False

    def line(self, text: str) -> None:
        self.end_tokens()
        print(f"tea: {text}", file=sys.stderr, flush=True)

    def token(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()
        self.mid_line = not text.endswith("\n")

    def end_tokens(self) -> None:
        if self.mid_line:
            sys.stderr.write("\n")
            self.mid_line = False


def command_run(args: argparse.Namespace) -> int:
    import json

    from .engine import run_agent
    from .schema import load_agent

    inputs = read_input(args.input)
    agent = load_agent(args.agent)
    output = StderrOutput()
    progress = None if args.quiet else output.line
    started = time.perf_counter()
    state = run_agent(agent, inputs, progress=progress, on_token=output.token if args.stream else None)
    output.end_tokens()
    if progress:
        progress(f"agent '{agent.name}' finished in {time.perf_counter() - started:.2f}s")
    print(json.dumps(state, indent=2, ensure_ascii=False, default=str))
    return 0


def command_validate(args: argparse.Namespace) -> int:
    from .schema import load_agent

    agent = load_agent(args.agent)
    print(f"{args.agent}: ok ({len(agent.nodes)} nodes, {len(agent.edges)} edges)")
    return 0


def command_models(args: argparse.Namespace) -> int:
    from .models import model_places

    settings_path, base_dir = None, Path.cwd()
    if args.agent:
        from .schema import load_agent

        agent = load_agent(args.agent)
        settings_path, base_dir = agent.llm.model_path, agent.base_dir
    places = model_places(settings_path=settings_path, base_dir=base_dir)
    for number, place in enumerate(places, 1):
        print(f"{number}. {place.describe()}")
    chosen = next((place.found for place in places if place.found), None)
    print(f"model: {chosen or 'none found'}")
    for line in _llama_status():
        print(line)
    return 0


def _llama_status() -> list[str]:
    """Whether llama-cpp-python loads, and where its CPU backend variants were registered from."""
    from .actions.llm_local import import_llama, llama_available
    from .ggml_backends import load_cpu_variants

    if not llama_available():
        return ["llama-cpp-python: not installed (pip install the_edge_agent[llm-local])"]
    try:
        llama_cpp = import_llama()
    except TeaError as error:
        return [f"llama-cpp-python: {error}"]
    variants = load_cpu_variants(Path(llama_cpp.__file__).parent)
    return [f"llama-cpp-python: importable ({getattr(llama_cpp, '__version__', 'unknown version')})",
            f"ggml CPU variants: {variants or 'none found (CPU backend built in)'}"]
