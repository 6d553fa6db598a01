"""The `tea` subcommands: run, validate, models, inspect, doctor, self-update. Every TeaError becomes one stderr line and its exit code."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from .agent import Agent
from .errors import AgentError, InputError, TeaError
from .run_inputs import YAML_SUFFIXES, gguf_path, read_mapping, read_secrets


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tea", description="The Edge Agent: run YAML agents.")
    root.add_argument("--version", action="store_true", help="print 'tea X.Y.Z' and exit")
    root.add_argument("--impl", action="store_true", help="print the implementation ('python') and exit")
    commands = root.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run an agent; final state as JSON on stdout")
    run.add_argument("agent", type=Path)
    run.add_argument("-i", "--input", default="{}",
                     help="initial state: a JSON object, @file.json or @file.yaml")
    run.add_argument("--secrets", help="secrets: a JSON object or @file (as {{ secrets.KEY }})")
    run.add_argument("--secrets-env", metavar="PREFIX",
                     help="also every environment variable PREFIX* as a secret (key lower-cased, prefix removed)")
    run.add_argument("-o", "--output", type=Path, help="write the final state to this JSON file, not stdout")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress lines or warnings on stderr")
    run.add_argument("--stream", action="store_true", help="print LLM tokens to stderr as they arrive")
    run.add_argument("-v", "--verbose", action="count", default=0,
                     help="accepted as upstream's tea does (-v, -vv); progress lines are shown unless -q")
    run.add_argument("--gguf", metavar="PATH",
                     help="local GGUF model, ahead of TEA_MODEL_PATH and the agent's settings (implies --backend local)")
    run.add_argument("--backend", choices=("local", "api", "auto"), help="override settings.llm.backend")
    run.set_defaults(handler=command_run)
    validate = commands.add_parser("validate", help="check an agent file without running it")
    validate.add_argument("agent", type=Path)
    validate.add_argument("--strict", action="store_true", help="warnings (ignored keys, unknown actions) fail too")
    validate.set_defaults(handler=command_validate)
    models = commands.add_parser("models", help="show where the local model is looked for")
    models.add_argument("agent", type=Path, nargs="?", help="also consider this agent's settings.llm")
    models.set_defaults(handler=command_models)
    inspect = commands.add_parser("inspect", help="show an agent's nodes and flow")
    inspect.add_argument("agent", type=Path)
    inspect.add_argument("-f", "--format", choices=("text", "json", "dot"), default="text", help="text (default), json or dot")
    inspect.set_defaults(handler=command_inspect)
    doctor = commands.add_parser("doctor", help="show the CPU, llama.cpp's CPU variants and the one in use")
    doctor.add_argument("agent", type=Path, nargs="?", help="also consider this agent's settings.llm")
    doctor.add_argument("--check", action="store_true",
                        help="check the variant on the model now (in a child process), as a first LLM use does")
    doctor.add_argument("--json", action="store_true", help="the same report as JSON")
    doctor.set_defaults(handler=command_doctor)
    update = commands.add_parser(
        "self-update", help="update this AppImage to its latest release, downloading only what changed",
        description="Update the AppImage tea runs from to its latest release: the blocks it already has are "
                    "reused, only the others are downloaded, and the result is checked against the release's "
                    "SHA256SUMS before it replaces the AppImage.")
    update.add_argument("--check", action="store_true",
                        help="only say whether an update is available: exit 1 if one is, 0 if not")
    update.add_argument("--release", metavar="URL|DIR",
                        help="take the release from this base URL or directory instead of where the AppImage's "
                             "update information points")
    update.add_argument("--keyring", type=Path, metavar="FILE",
                        help="the publisher's public key: SHA256SUMS.asc must verify against it "
                             "(default: the key a signed AppImage carries)")
    update.add_argument("--appimage", type=Path, metavar="PATH",
                        help="the AppImage to update (default: $APPIMAGE, the one running)")
    update.add_argument("--allow-unsigned", action="store_true",
                        help="update an unsigned AppImage without --keyring: SHA256SUMS is then trusted as "
                             "fetched, so only over HTTPS (or from a local directory)")
    update.add_argument("--allow-downgrade", action="store_true",
                        help="take the release even when it is older than this tea")
    update.set_defaults(handler=command_self_update)
    return root


def legacy_form(argv: list[str]) -> list[str]:
    """`tea agent.yaml ...` is upstream's older spelling of `tea run agent.yaml ...`."""
    if argv and argv[0].endswith(YAML_SUFFIXES) and not argv[0].startswith("-"):
        if not {"-q", "--quiet"} & set(argv):
            print(f"tea: note: 'tea {argv[0]}' is the legacy form of 'tea run {argv[0]}'", file=sys.stderr)
        return ["run", *argv]
    return argv


def dispatch(argv: list[str]) -> int:
    root = parser()
    args = root.parse_args(legacy_form(argv))
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


class StderrOutput:
    """Progress lines, warnings and streamed tokens share stderr: a line after tokens starts on a new
    line. `quiet` silences lines and warnings (not errors, not tokens asked for with --stream)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.mid_line = False
        self.lock = threading.Lock()  # parallel branches report at the same time

    def line(self, text: str) -> None:
        if self.quiet:
            return
        with self.lock:
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

    def warning(self, text: str) -> None:
        """Load warnings come as `file:line:col: warning: ...`; run-time ones get the `warning:` here."""
        self.line(text if ": warning: " in text else f"warning: {text}")


def command_run(args: argparse.Namespace) -> int:
    from .engine import run_agent

    inputs = read_mapping(args.input, "--input")
    secrets = read_secrets(args.secrets, args.secrets_env)
    agent = _with_llm_overrides(_load(args.agent), args)
    output = StderrOutput(args.quiet)
    for warning in agent.warnings:
        output.warning(warning)
    started = time.perf_counter()
    state = run_agent(agent, inputs, progress=output.line, warn=output.warning, secrets=secrets,
                      on_token=output.token if args.stream or not args.quiet else None, stream_all=args.stream)
    output.end_tokens()
    output.line(f"agent '{agent.name}' finished in {time.perf_counter() - started:.2f}s")
    text = json.dumps(state, indent=2, ensure_ascii=False, default=str)
    if args.output:
        _write_atomically(args.output, text + "\n")
    else:
        print(text)
    return 0


def _load(path: Path) -> Agent:
    from .schema import load_agent

    return load_agent(path)


def _with_llm_overrides(agent: Agent, args: argparse.Namespace) -> Agent:
    """`--gguf` and `--backend` win over the agent's settings.llm (and `--gguf` over TEA_MODEL_PATH)."""
    if not args.gguf and not args.backend:
        return agent
    gguf = gguf_path(args.gguf) if args.gguf else None
    backend = args.backend or ("local" if gguf else agent.llm.backend)
    return replace(agent, llm=replace(agent.llm, gguf=gguf, backend=backend))


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        raise InputError(f"--output {path}: cannot write: {error.strerror}") from None


def command_validate(args: argparse.Namespace) -> int:
    """Upstream's contract: `OK: FILE (N nodes, M edges)`, or the problems then `FAIL: FILE (...)`, exit 1."""
    try:
        agent = _load(args.agent)
    except AgentError as error:
        print(error, file=sys.stderr)
        print(f"FAIL: {args.agent} (1 error(s))")
        return 1
    for warning in agent.warnings:
        print(warning, file=sys.stderr)
    if args.strict and agent.warnings:
        print(f"FAIL: {args.agent} ({len(agent.warnings)} warning(s), --strict)")
        return 1
    print(f"OK: {args.agent} ({len(agent.nodes)} nodes, {len(agent.edges)} edges)")
    return 0


def command_inspect(args: argparse.Namespace) -> int:
    from .inspection import as_dot, as_json, as_text
    from .schema import parse_agent
    from .yaml_loader import load_yaml_file

    document = load_yaml_file(args.agent)
    agent = parse_agent(document, args.agent)
    if args.format == "json":
        print(as_json(document))
    else:
        print(as_dot(agent) if args.format == "dot" else as_text(agent))
    return 0


def command_self_update(args: argparse.Namespace) -> int:
    from .update.command import self_update

    return self_update(args)


def agent_model_places(agent_path: Path | None):
    """The model places of `tea models`/`tea doctor`, with the agent's settings.llm when one is given."""
    from .models import model_places

    settings_path, base_dir = None, Path.cwd()
    if agent_path:
        from .schema import load_agent

        agent = load_agent(agent_path)
        settings_path, base_dir = agent.llm.model_path, agent.base_dir
    return model_places(settings_path=settings_path, base_dir=base_dir)


def command_models(args: argparse.Namespace) -> int:
    places = agent_model_places(args.agent)
    for number, place in enumerate(places, 1):
        print(f"{number}. {place.describe()}")
    chosen = next((place.found for place in places if place.found), None)
    print(f"model: {chosen or 'none found'}")
    for line in _llama_status():
        print(line)
    return 0


def command_doctor(args: argparse.Namespace) -> int:
    from .doctor import cpu_report, report_lines, variants_report
    from .errors import LlmError

    model = next((place.found for place in agent_model_places(args.agent) if place.found), None)
    if args.check and model is None:
        raise LlmError("tea doctor --check needs a model: set TEA_MODEL_PATH to a .gguf file (see `tea models`)")
    report = {"cpu": cpu_report(), "model": str(model) if model else None, **variants_report(model, args.check)}
    print(json.dumps(report, indent=2) if args.json else "\n".join(report_lines(report)))
    return 0


def _llama_status() -> list[str]:
    """Whether llama-cpp-python loads, and where its CPU backend variants are (`tea doctor` says more)."""
    from .actions.llm_local import import_llama, llama_available
    from .ggml_backends import find_variant_dir, loaded_libggml

    if not llama_available():
        return ["llama-cpp-python: not installed (pip install the_edge_agent[llm-local])"]
    try:
        llama_cpp = import_llama()
        variants = find_variant_dir(Path(llama_cpp.__file__).parent, loaded_libggml())
    except TeaError as error:
        return [f"llama-cpp-python: {error}"]
    return [f"llama-cpp-python: importable ({getattr(llama_cpp, '__version__', 'unknown version')})",
            f"ggml CPU variants: {variants or 'none found (CPU backend built in)'}"]
